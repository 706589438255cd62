import type { Selectable } from 'kysely';
import { type AuditWriter, systemEvent } from '../audit/writer.js';
import { BulwarkError, badRequest, conflict, forbidden, notFound } from '../errors.js';
import type { AuthContext } from '../policy/context.js';
import type { Store } from '../store/database.js';
import type { ApprovalsTable } from '../store/schema.js';
import { nowIso, uuid } from '../util/ids.js';

/**
 * Approvals, the two-person rule (docs/approvals.md). A domain service whose
 * request a trigger holds back calls `hold()` (or `submit()`): the request is
 * stored as pending and the caller gets 202 naming the approval. Another cloud
 * admin approves or rejects it with a reason; the requester never decides
 * their own. Approving runs the executor registered for the approval's kind,
 * as the requester (their roles as they are now), with `approvedBy` given to
 * it so the result records who approved it.
 */

export const APPROVAL_STATUSES = ['pending', 'approved', 'executed', 'failed', 'rejected'] as const;
export type ApprovalStatus = (typeof APPROVAL_STATUSES)[number];

/**
 * The configurable triggers and their defaults. `params` are numeric
 * thresholds the trigger's owner reads; an admin changes them with
 * `PUT /bulwark/v1/approval-triggers/{kind}` (`bulwark approval trigger set`).
 */
export const TRIGGERS = {
  'flavor-size': {
    description: 'creating a server whose flavor has more than `vcpus` vCPUs or more than `ram` MiB',
    enabled: true,
    params: { vcpus: 16, ram: 65536 },
  },
  'device-passthrough': {
    description: 'attaching a host PCI or USB device to a server',
    enabled: true,
    params: {},
  },
  'server-clone': { description: 'cloning an existing server', enabled: true, params: {} },
  'restore-in-place': {
    description: "restoring a backup or snapshot over a server's own disk",
    enabled: true,
    params: {},
  },
  'template-version': { description: 'publishing a new template version', enabled: true, params: {} },
  'production-without-ticket': {
    description:
      'a production server without a ticket: held for approval instead of refused by the metadata rule',
    enabled: false,
    params: {},
  },
} as const satisfies Record<
  string,
  { description: string; enabled: boolean; params: Record<string, number> }
>;
export type TriggerKind = keyof typeof TRIGGERS;
export const isTriggerKind = (s: string): s is TriggerKind => Object.hasOwn(TRIGGERS, s);

export interface Trigger {
  kind: TriggerKind;
  description: string;
  enabled: boolean;
  params: Record<string, number>;
  /** Null while the default is in force. */
  updated_by: string | null;
  updated_at: string | null;
}

/** What runs when an approval of its kind is approved; its return value is stored as the result. */
export type Executor = (
  requester: AuthContext,
  payload: unknown,
  approval: { id: string; approvedBy: string },
) => Promise<unknown>;

export interface ApprovalView {
  id: string;
  kind: string;
  status: ApprovalStatus;
  project_id: string;
  requester_id: string;
  requester_name: string;
  summary: string;
  payload: unknown;
  created_at: string;
  decided_by: string | null;
  decided_by_name: string | null;
  decided_at: string | null;
  decision_reason: string | null;
  result: unknown;
  error: string | null;
  finished_at: string | null;
  /** How another admin decides it. */
  approve_with: string;
}

/**
 * Thrown by a domain service when a request is held: the API answers 202
 * with `{approval, message}` (api/error-map.ts), and nothing else happened.
 */
export class ApprovalRequired extends BulwarkError {
  constructor(readonly approval: ApprovalView) {
    super(
      'Accepted',
      `This request needs another administrator's approval (${approval.summary}). ` +
        `It is pending as approval ${approval.id}; an admin other than you runs ` +
        `\`bulwark approval approve ${approval.id} --reason TEXT\` (or reject).`,
      { details: { approval } },
    );
  }
}

/** What approvals need from identity: the requester's context as it is now. */
export interface RequesterSource {
  contextFor(userId: string, projectId: string, via: string): Promise<AuthContext | null>;
}

const parse = (s: string | null): unknown => (s === null ? null : JSON.parse(s));

export const approvalView = (r: Selectable<ApprovalsTable>): ApprovalView => ({
  id: r.id,
  kind: r.kind,
  status: r.status as ApprovalStatus,
  project_id: r.project_id,
  requester_id: r.requester_id,
  requester_name: r.requester_name,
  summary: r.summary,
  payload: parse(r.payload),
  created_at: r.created_at,
  decided_by: r.decided_by,
  decided_by_name: r.decided_by_name,
  decided_at: r.decided_at,
  decision_reason: r.decision_reason,
  result: parse(r.result),
  error: r.error,
  finished_at: r.finished_at,
  approve_with: `bulwark approval approve ${r.id} --reason TEXT`,
});

export class ApprovalService {
  private readonly executors = new Map<string, Executor>();

  constructor(
    private readonly store: Store,
    private readonly audit: AuditWriter,
    private readonly requesters: RequesterSource,
  ) {}

  private get db() {
    return this.store.db;
  }

  /** Registers what runs when an approval of `kind` is approved (one executor per kind). */
  register(kind: string, executor: Executor): void {
    if (this.executors.has(kind)) throw new Error(`approval kind ${kind} is registered twice`);
    this.executors.set(kind, executor);
  }

  // ---- triggers ---------------------------------------------------------------------------------

  async trigger(kind: TriggerKind): Promise<Trigger> {
    const row = await this.db
      .selectFrom('approval_triggers')
      .selectAll()
      .where('kind', '=', kind)
      .executeTakeFirst();
    const d = TRIGGERS[kind];
    return {
      kind,
      description: d.description,
      enabled: row ? row.enabled === 1 : d.enabled,
      params: { ...d.params, ...(row ? (JSON.parse(row.params) as Record<string, number>) : {}) },
      updated_by: row?.updated_by ?? null,
      updated_at: row?.updated_at ?? null,
    };
  }

  async triggers(): Promise<Trigger[]> {
    return Promise.all((Object.keys(TRIGGERS) as TriggerKind[]).map((k) => this.trigger(k)));
  }

  /** Whether a trigger is on: other rooms ask this before running a request the trigger names. */
  async applies(kind: TriggerKind): Promise<boolean> {
    return (await this.trigger(kind)).enabled;
  }

  /** An admin turns a trigger on or off or changes its thresholds (only the ones it has). */
  async setTrigger(
    auth: AuthContext,
    kind: string,
    change: { enabled?: boolean | undefined; params?: Record<string, number> | undefined },
  ): Promise<Trigger> {
    if (!isTriggerKind(kind))
      throw notFound('approval trigger', `${kind} (known: ${Object.keys(TRIGGERS).join(', ')})`);
    const current = await this.trigger(kind);
    const known = Object.keys(TRIGGERS[kind].params);
    for (const [k, v] of Object.entries(change.params ?? {})) {
      if (!known.includes(k))
        throw badRequest(
          `Trigger ${kind} has no parameter ${k}${known.length ? ` (it has: ${known.join(', ')})` : ''}.`,
        );
      if (!Number.isInteger(v) || v < 0)
        throw badRequest(`Trigger parameter ${k} must be a whole number ≥ 0.`);
    }
    const enabled = change.enabled ?? current.enabled;
    const params = { ...current.params, ...change.params };
    const row = {
      enabled: enabled ? 1 : 0,
      params: JSON.stringify(params),
      updated_by: auth.userName,
      updated_at: nowIso(),
    };
    await this.db
      .insertInto('approval_triggers')
      .values({ kind, ...row })
      .onConflict((oc) => oc.column('kind').doUpdateSet(row))
      .execute();
    return this.trigger(kind);
  }

  /** The flavor-size trigger: the reason a flavor needs approval, or null when it does not. */
  async flavorNeedsApproval(flavor: { name: string; vcpus: number; ram: number }): Promise<string | null> {
    const t = await this.trigger('flavor-size');
    if (!t.enabled) return null;
    const { vcpus = Number.POSITIVE_INFINITY, ram = Number.POSITIVE_INFINITY } = t.params;
    if (flavor.vcpus > vcpus) return `flavor ${flavor.name} has ${flavor.vcpus} vCPUs, above ${vcpus}`;
    if (flavor.ram > ram) return `flavor ${flavor.name} has ${flavor.ram} MiB RAM, above ${ram}`;
    return null;
  }

  // ---- requests ---------------------------------------------------------------------------------

  /** Stores a pending approval for `auth`'s request and returns it (audited as approval:submit). */
  async submit(auth: AuthContext, kind: string, payload: unknown, summary: string): Promise<ApprovalView> {
    if (!this.executors.has(kind)) throw new Error(`no executor is registered for approval kind ${kind}`);
    if (!auth.projectId)
      throw badRequest('A project-scoped token is needed for a request that needs approval.');
    const row: Selectable<ApprovalsTable> = {
      id: uuid(),
      kind,
      status: 'pending',
      project_id: auth.projectId,
      requester_id: auth.userId,
      requester_name: auth.userName,
      summary: summary.slice(0, 1000),
      payload: JSON.stringify(payload ?? null),
      created_at: nowIso(),
      decided_by: null,
      decided_by_name: null,
      decided_at: null,
      decision_reason: null,
      result: null,
      error: null,
      finished_at: null,
    };
    await this.db.insertInto('approvals').values(row).execute();
    await this.audit.append(
      systemEvent({
        action: 'approval:submit',
        reason: `${kind}: ${row.summary}`,
        target: { type: 'approval', id: row.id },
        actor: auth,
      }),
    );
    return approvalView(row);
  }

  /** Submits and throws ApprovalRequired: the request stops here, answered 202. */
  async hold(auth: AuthContext, kind: string, payload: unknown, summary: string): Promise<never> {
    throw new ApprovalRequired(await this.submit(auth, kind, payload, summary));
  }

  async list(
    auth: AuthContext,
    filter: { status?: string | undefined; kind?: string | undefined; allProjects?: boolean | undefined },
  ): Promise<ApprovalView[]> {
    let q = this.db.selectFrom('approvals').selectAll().orderBy('created_at', 'desc');
    if (!(auth.isAdmin && filter.allProjects !== false)) q = q.where('project_id', '=', auth.projectId ?? '');
    if (filter.status) q = q.where('status', '=', filter.status);
    if (filter.kind) q = q.where('kind', '=', filter.kind);
    return (await q.execute()).map(approvalView);
  }

  /** Admins see every approval; others only their project's (another project's is 404). */
  async get(auth: AuthContext, id: string): Promise<ApprovalView> {
    let q = this.db.selectFrom('approvals').selectAll().where('id', '=', id);
    if (!auth.isAdmin) q = q.where('project_id', '=', auth.projectId ?? '');
    const row = await q.executeTakeFirst();
    if (!row) throw notFound('approval', id);
    return approvalView(row);
  }

  /** Claims a pending approval for a decision; only one decider can win (check-and-set on status). */
  private async decide(
    auth: AuthContext,
    id: string,
    to: 'approved' | 'rejected',
    reason: string,
  ): Promise<ApprovalView> {
    if (!auth.isAdmin) throw forbidden('Only a cloud administrator may decide approvals.');
    const a = await this.get(auth, id);
    if (a.requester_id === auth.userId)
      throw new BulwarkError(
        'Forbidden',
        `You requested approval ${id} yourself; the two-person rule needs another administrator to decide it.`,
      );
    const now = nowIso();
    const claimed = await this.db
      .updateTable('approvals')
      .set({
        status: to,
        decided_by: auth.userId,
        decided_by_name: auth.userName,
        decided_at: now,
        decision_reason: reason,
        ...(to === 'rejected' ? { finished_at: now } : {}),
      })
      .where('id', '=', id)
      .where('status', '=', 'pending')
      .executeTakeFirst();
    if (Number(claimed.numUpdatedRows) !== 1) {
      const now2 = await this.get(auth, id);
      throw conflict(
        `Approval ${id} is already ${now2.status}${now2.decided_by_name ? ` (by ${now2.decided_by_name})` : ''}; it can be decided only once.`,
      );
    }
    return this.get(auth, id);
  }

  async reject(auth: AuthContext, id: string, reason: string): Promise<ApprovalView> {
    return this.decide(auth, id, 'rejected', reason);
  }

  /**
   * Approves and runs the request as its requester. The answer says whether it
   * ran (executed, with its result) or failed (with the reason); either way the
   * approval is decided and cannot be approved again.
   */
  async approve(auth: AuthContext, id: string, reason: string): Promise<ApprovalView> {
    const a = await this.decide(auth, id, 'approved', reason);
    const executor = this.executors.get(a.kind);
    const requester = await this.requesters.contextFor(a.requester_id, a.project_id, 'approval');
    let outcome: { status: 'executed' | 'failed'; result: string | null; error: string | null };
    try {
      if (!executor) throw new BulwarkError('Internal', `Nothing can run approvals of kind ${a.kind}.`);
      if (!requester)
        throw new BulwarkError(
          'Forbidden',
          `${a.requester_name} no longer holds a role on project ${a.project_id} (or is disabled); the request was not run.`,
        );
      const result = await executor(requester, a.payload, { id: a.id, approvedBy: auth.userName });
      outcome = { status: 'executed', result: JSON.stringify(result ?? null), error: null };
    } catch (err) {
      const message =
        err instanceof BulwarkError && err.kind !== 'Internal'
          ? err.message
          : 'The approved request failed to run; see the daemon log.';
      outcome = { status: 'failed', result: null, error: message };
    }
    await this.db
      .updateTable('approvals')
      .set({ ...outcome, finished_at: nowIso() })
      .where('id', '=', id)
      .where('status', '=', 'approved')
      .execute();
    await this.audit.append(
      systemEvent({
        action: `approval:${outcome.status}`,
        reason: `${a.kind} approved by ${auth.userName} (${reason})${outcome.error ? `: ${outcome.error}` : ''}`,
        target: { type: 'approval', id: a.id },
        outcome: outcome.status === 'executed' ? 'success' : 'failure',
        ...(requester ? { actor: requester } : {}),
      }),
    );
    return this.get(auth, id);
  }
}
