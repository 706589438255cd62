import type { Kysely } from 'kysely';
import { BulwarkError, badRequest } from '../errors.js';
import type { Store } from '../store/database.js';
import type { Schema } from '../store/schema.js';
import { nowIso } from '../util/ids.js';

/**
 * Quotas (docs/quotas.md): per-project limits on what a project may hold,
 * optionally narrowed per user for the compute resources, as Nova does.
 * Enforcement is race-free: the check and the insert of the new resource run
 * in one transaction holding the project's lock (PostgreSQL: `SELECT ... FOR
 * UPDATE` on its `quota_projects` row; SQLite: transactions are serialised).
 */
export const QUOTA_RESOURCES = [
  'instances',
  'cores',
  'ram',
  'volumes',
  'gigabytes',
  'security_groups',
  'security_group_rules',
] as const;
export type QuotaResource = (typeof QUOTA_RESOURCES)[number];
export type QuotaValues = Record<QuotaResource, number>;

/** Generous defaults; -1 means unlimited. */
export const DEFAULT_QUOTAS: Readonly<QuotaValues> = {
  instances: 10,
  cores: 20,
  ram: 51200,
  volumes: 10,
  gigabytes: 1000,
  security_groups: 10,
  security_group_rules: 100,
};

/** Resources a per-user quota may narrow (Nova's per-user quotas; servers record their user). */
export const USER_RESOURCES: readonly QuotaResource[] = ['instances', 'cores', 'ram'];

/** Which service's error the caller gets when over quota (status and wording as that service). */
export type QuotaStyle = 'nova' | 'cinder' | 'neutron';

export type QuotaDeltas = Partial<QuotaValues>;
export interface QuotaScope {
  projectId: string;
  /** The user creating the resource, for per-user limits. */
  userId?: string | null;
}

export type Tx = Kysely<Schema>;

/** What resource services call; null gate: no quotas (the resource is created as before). */
export interface QuotaGate {
  within<T>(
    scope: QuotaScope,
    deltas: QuotaDeltas,
    style: QuotaStyle,
    create: (tx: Tx) => Promise<T>,
    db?: Tx,
  ): Promise<T>;
}

/** Runs `create` under the gate, or directly when there is none. */
export function withQuota<T>(
  gate: QuotaGate | null | undefined,
  db: Tx,
  scope: QuotaScope,
  deltas: QuotaDeltas,
  style: QuotaStyle,
  create: (tx: Tx) => Promise<T>,
): Promise<T> {
  return gate ? gate.within(scope, deltas, style, create, db) : create(db);
}

const NEUTRON_NAME: Partial<Record<QuotaResource, string>> = {
  security_groups: 'security_group',
  security_group_rules: 'security_group_rule',
};

/** The refusal, worded and coded as the service the caller spoke to. */
export function overQuota(
  style: QuotaStyle,
  resource: QuotaResource,
  requested: number,
  used: number,
  limit: number,
): BulwarkError {
  switch (style) {
    case 'cinder':
      // Cinder answers 413 (VolumeLimitExceeded / VolumeSizeExceedsAvailableQuota).
      return resource === 'gigabytes'
        ? new BulwarkError(
            'PayloadTooLarge',
            `VolumeSizeExceedsAvailableQuota: Requested volume or snapshot exceeds allowed gigabytes quota. Requested ${requested}G, quota is ${limit}G and ${used}G has been consumed.`,
          )
        : new BulwarkError(
            'PayloadTooLarge',
            `VolumeLimitExceeded: Maximum number of volumes allowed (${limit}) exceeded for quota '${resource}'.`,
          );
    case 'neutron':
      // Neutron answers 409 OverQuota.
      return new BulwarkError(
        'Conflict',
        `Quota exceeded for resources: ['${NEUTRON_NAME[resource] ?? resource}'].`,
        { auditReason: `Quota exceeded for ${resource}: requested ${requested}, used ${used} of ${limit}.` },
      );
    default:
      // Nova answers 403 for a server create over quota.
      return new BulwarkError(
        'Forbidden',
        `Quota exceeded for ${resource}: Requested ${requested}, but already used ${used} of ${limit} ${resource}`,
      );
  }
}

export class QuotaService implements QuotaGate {
  constructor(
    private readonly store: Store,
    private readonly defaults: Readonly<QuotaValues> = DEFAULT_QUOTAS,
  ) {}

  private get db() {
    return this.store.db;
  }

  defaultLimits(): QuotaValues {
    return { ...this.defaults };
  }

  /** The project's limits, or with `userId` that user's (the project's unless narrowed). */
  async limits(projectId: string, userId?: string | null, db: Tx = this.db): Promise<QuotaValues> {
    const rows = await db
      .selectFrom('quota_limits')
      .select(['user_id', 'resource', 'hard_limit'])
      .where('project_id', '=', projectId)
      .where('user_id', 'in', userId ? ['', userId] : [''])
      .execute();
    const out = this.defaultLimits();
    for (const r of rows.filter((x) => x.user_id === ''))
      if (isResource(r.resource)) out[r.resource] = Number(r.hard_limit);
    for (const r of rows.filter((x) => x.user_id !== ''))
      if (isResource(r.resource)) out[r.resource] = Number(r.hard_limit);
    return out;
  }

  /** What the project (or one user in it) holds now. */
  async usage(projectId: string, userId?: string | null, db: Tx = this.db): Promise<QuotaValues> {
    let servers = db
      .selectFrom('servers')
      .select('flavor')
      .where('project_id', '=', projectId)
      .where('deleted_at', 'is', null);
    if (userId) servers = servers.where('user_id', '=', userId);
    const used: QuotaValues = {
      instances: 0,
      cores: 0,
      ram: 0,
      volumes: 0,
      gigabytes: 0,
      security_groups: 0,
      security_group_rules: 0,
    };
    for (const s of await servers.execute()) {
      const f = JSON.parse(s.flavor) as { vcpus?: number; ram?: number };
      used.instances += 1;
      used.cores += Number(f.vcpus ?? 0);
      used.ram += Number(f.ram ?? 0);
    }
    if (userId) return used; // per-user limits cover the compute resources only
    const vols = await db
      .selectFrom('volumes')
      .select('size')
      .where('project_id', '=', projectId)
      .where('deleted_at', 'is', null)
      .execute();
    used.volumes = vols.length;
    used.gigabytes = vols.reduce((n, v) => n + Number(v.size), 0);
    const sg = await db
      .selectFrom('security_groups')
      .select((eb) => eb.fn.countAll<number | string>().as('n'))
      .where('project_id', '=', projectId)
      .executeTakeFirst();
    used.security_groups = Number(sg?.n ?? 0);
    const rules = await db
      .selectFrom('security_group_rules')
      .select((eb) => eb.fn.countAll<number | string>().as('n'))
      .where('project_id', '=', projectId)
      .executeTakeFirst();
    used.security_group_rules = Number(rules?.n ?? 0);
    return used;
  }

  /** Takes the project's lock for the rest of the transaction. */
  private async lock(tx: Tx, projectId: string): Promise<void> {
    await tx
      .insertInto('quota_projects')
      .values({ project_id: projectId, updated_at: nowIso() })
      .onConflict((oc) => oc.column('project_id').doNothing())
      .execute();
    await tx
      .selectFrom('quota_projects')
      .select('project_id')
      .where('project_id', '=', projectId)
      .$if(this.store.dialect === 'postgres', (q) => q.forUpdate())
      .execute();
  }

  /**
   * Checks `deltas` against the limits with the project locked, then runs
   * `create` in the same transaction: `db`'s when it is one already (another
   * gate's), else a new one.
   */
  within<T>(
    scope: QuotaScope,
    deltas: QuotaDeltas,
    style: QuotaStyle,
    create: (tx: Tx) => Promise<T>,
    db: Tx = this.db,
  ): Promise<T> {
    const run = async (tx: Tx): Promise<T> => {
      await this.lock(tx, scope.projectId);
      const wanted = QUOTA_RESOURCES.filter((r) => (deltas[r] ?? 0) > 0);
      if (wanted.length > 0) {
        const limits = await this.limits(scope.projectId, null, tx);
        const used = await this.usage(scope.projectId, null, tx);
        this.check(style, wanted, deltas, limits, used);
        const perUser = wanted.filter((r) => USER_RESOURCES.includes(r));
        if (scope.userId && perUser.length > 0) {
          const userLimits = await this.limits(scope.projectId, scope.userId, tx);
          if (perUser.some((r) => userLimits[r] !== limits[r])) {
            const userUsed = await this.usage(scope.projectId, scope.userId, tx);
            this.check(style, perUser, deltas, userLimits, userUsed);
          }
        }
      }
      return create(tx);
    };
    return db.isTransaction ? run(db) : db.transaction().execute(run);
  }

  private check(
    style: QuotaStyle,
    wanted: readonly QuotaResource[],
    deltas: QuotaDeltas,
    limits: QuotaValues,
    used: QuotaValues,
  ): void {
    for (const r of wanted) {
      const want = deltas[r] ?? 0;
      if (limits[r] >= 0 && used[r] + want > limits[r]) throw overQuota(style, r, want, used[r], limits[r]);
    }
  }

  /**
   * Sets limits (admin only; the API checks). With `userId`, only the
   * compute resources. Unless `force`, a limit below what is in use is
   * refused, as Nova does.
   */
  async set(
    projectId: string,
    values: QuotaDeltas,
    opts: { userId?: string | null; force?: boolean } = {},
  ): Promise<QuotaValues> {
    const userId = opts.userId ?? '';
    for (const [r, v] of Object.entries(values)) {
      if (!isResource(r)) throw badRequest(`Unknown quota resource: ${r}.`);
      if (userId && !USER_RESOURCES.includes(r))
        throw badRequest(`Quota for ${r} cannot be set per user; only ${USER_RESOURCES.join(', ')}.`);
      if (!Number.isSafeInteger(v) || (v as number) < -1)
        throw badRequest(`Quota limit for ${r} must be a whole number, -1 (unlimited) or more.`);
    }
    await this.db.transaction().execute(async (tx) => {
      await this.lock(tx, projectId);
      if (!opts.force) {
        const used = await this.usage(projectId, userId || null, tx);
        for (const [r, v] of Object.entries(values) as [QuotaResource, number][]) {
          if (v >= 0 && v < used[r])
            throw badRequest(
              `Quota limit ${v} for ${r} must be greater than or equal to already used and reserved ${used[r]}.`,
            );
        }
      }
      const now = nowIso();
      for (const [r, v] of Object.entries(values) as [QuotaResource, number][]) {
        await tx
          .insertInto('quota_limits')
          .values({ project_id: projectId, user_id: userId, resource: r, hard_limit: v, updated_at: now })
          .onConflict((oc) =>
            oc.columns(['project_id', 'user_id', 'resource']).doUpdateSet({ hard_limit: v, updated_at: now }),
          )
          .execute();
      }
    });
    return this.limits(projectId, userId || null);
  }

  /** Back to the defaults (for one user: back to the project's limits). */
  async reset(
    projectId: string,
    userId?: string | null,
    resources: readonly QuotaResource[] = QUOTA_RESOURCES,
  ): Promise<void> {
    await this.db
      .deleteFrom('quota_limits')
      .where('project_id', '=', projectId)
      .where('resource', 'in', [...resources])
      .$if(Boolean(userId), (q) => q.where('user_id', '=', userId ?? ''))
      .execute();
  }

  async projectExists(projectId: string): Promise<boolean> {
    return (
      (await this.db.selectFrom('projects').select('id').where('id', '=', projectId).executeTakeFirst()) !==
      undefined
    );
  }
}

export const isResource = (r: string): r is QuotaResource =>
  (QUOTA_RESOURCES as readonly string[]).includes(r);
