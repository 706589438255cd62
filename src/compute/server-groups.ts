import type { Kysely, Selectable } from 'kysely';
import { badRequest, forbidden, notFound } from '../errors.js';
import type { AuthContext } from '../policy/context.js';
import type { QuotaGate } from '../quotas/service.js';
import type { Store } from '../store/database.js';
import type { Schema, ServerGroupsTable } from '../store/schema.js';
import { nowIso, uuid } from '../util/ids.js';
import { GROUP_POLICIES, type GroupPolicy } from './scheduler/index.js';

export type ServerGroup = Selectable<ServerGroupsTable> & { members: string[] };

/** Nova's defaults for server groups (quota classes `server_groups`, `server_group_members`). */
export const GROUP_QUOTA = { groups: 10, members: 10 } as const;

export interface GroupRules {
  max_server_per_host?: number;
}

/**
 * Nova server groups (docs/multi-host.md): a policy fixed at creation, plus
 * `max_server_per_host` for anti-affinity (microversion 2.64). Members join
 * in the transaction that creates the server, under the group row's lock
 * (compute/placement.ts), so concurrent creates see each other.
 */
export class ServerGroupService {
  constructor(private readonly store: Store) {}

  /** Project-wide lock for the group count (src/quotas); null: groups are created without one. */
  quotas: QuotaGate | null = null;

  private get db() {
    return this.store.db;
  }

  async create(
    auth: AuthContext,
    input: { name: string; policy: string; rules?: Record<string, unknown> },
  ): Promise<ServerGroup> {
    if (!auth.projectId) throw badRequest('A project-scoped token is needed to create a server group.');
    if (!(GROUP_POLICIES as readonly string[]).includes(input.policy))
      throw badRequest(`Invalid policy '${input.policy}': use one of ${GROUP_POLICIES.join(', ')}.`);
    const rules = checkRules(input.policy as GroupPolicy, input.rules ?? {});
    const projectId = auth.projectId;
    const row: Selectable<ServerGroupsTable> = {
      id: uuid(),
      name: input.name,
      project_id: projectId,
      user_id: auth.userId,
      policy: input.policy,
      rules: JSON.stringify(rules),
      created_at: nowIso(),
    };
    const insert = async (tx: Kysely<Schema>) => {
      const n = await tx
        .selectFrom('server_groups')
        .select((eb) => eb.fn.countAll<number | string>().as('n'))
        .where('project_id', '=', projectId)
        .executeTakeFirst();
      if (Number(n?.n ?? 0) >= GROUP_QUOTA.groups) throw forbidden('Quota exceeded, too many server groups.');
      await tx.insertInto('server_groups').values(row).execute();
    };
    // The project's quota lock serialises concurrent creates, so the count cannot be raced past.
    if (this.quotas) await this.quotas.within({ projectId }, {}, 'nova', insert);
    else await this.db.transaction().execute(insert);
    return { ...row, members: [] };
  }

  async get(auth: AuthContext, id: string, db: Kysely<Schema> = this.db): Promise<ServerGroup> {
    let q = db.selectFrom('server_groups').selectAll().where('id', '=', id);
    if (!auth.isAdmin) q = q.where('project_id', '=', auth.projectId ?? '');
    const g = await q.executeTakeFirst();
    if (!g) throw notFound('server group', id);
    return { ...g, members: await this.members(g.id, db) };
  }

  async list(auth: AuthContext, opts: { allProjects?: boolean } = {}): Promise<ServerGroup[]> {
    let q = this.db.selectFrom('server_groups').selectAll().orderBy('created_at');
    if (!(auth.isAdmin && opts.allProjects)) q = q.where('project_id', '=', auth.projectId ?? '');
    const groups = await q.execute();
    const members = groups.length
      ? await this.db
          .selectFrom('server_group_members')
          .select(['group_id', 'server_id'])
          .where(
            'group_id',
            'in',
            groups.map((g) => g.id),
          )
          .orderBy('created_at')
          .execute()
      : [];
    return groups.map((g) => ({
      ...g,
      members: members.filter((m) => m.group_id === g.id).map((m) => m.server_id),
    }));
  }

  /** Nova deletes a group even with members; the members stay (they simply leave the group). */
  async delete(auth: AuthContext, id: string): Promise<void> {
    const g = await this.get(auth, id);
    await this.db.transaction().execute(async (tx) => {
      await tx.deleteFrom('server_group_members').where('group_id', '=', g.id).execute();
      await tx.deleteFrom('server_groups').where('id', '=', g.id).execute();
    });
  }

  private async members(groupId: string, db: Kysely<Schema>): Promise<string[]> {
    const rows = await db
      .selectFrom('server_group_members')
      .select('server_id')
      .where('group_id', '=', groupId)
      .orderBy('created_at')
      .execute();
    return rows.map((r) => r.server_id);
  }
}

/** Nova 2.64: rules only with anti-affinity, and only `max_server_per_host`, a positive integer. */
function checkRules(policy: GroupPolicy, rules: Record<string, unknown>): GroupRules {
  const keys = Object.keys(rules);
  if (keys.length === 0) return {};
  if (policy !== 'anti-affinity') throw badRequest('Only anti-affinity policy supports rules.');
  const bad = keys.find((k) => k !== 'max_server_per_host');
  if (bad) throw badRequest(`Invalid rule '${bad}': the only rule is max_server_per_host.`);
  const v = rules.max_server_per_host;
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1)
    throw badRequest(`max_server_per_host must be a positive integer, not ${JSON.stringify(v)}.`);
  return { max_server_per_host: n };
}
