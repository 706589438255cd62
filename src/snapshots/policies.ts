import type { Selectable } from 'kysely';
import { badRequest } from '../errors.js';
import type { AuthContext } from '../policy/context.js';
import type { Store } from '../store/database.js';
import type { SnapshotPoliciesTable } from '../store/schema.js';
import { nowIso } from '../util/ids.js';
import { effectivePolicy, type LifecyclePolicy } from './lifecycle.js';

export type PolicyScope = 'project' | 'server' | 'volume';
type PolicyRow = Selectable<SnapshotPoliciesTable>;

export interface PolicyInput {
  maxCount?: number | null | undefined;
  maxAgeDays?: number | null | undefined;
  pruneOldest?: boolean | undefined;
}

const MAX_COUNT = 1000;
const MAX_AGE_DAYS = 3650;

const toPolicy = (r: PolicyRow | undefined): LifecyclePolicy | null =>
  r ? { maxCount: r.max_count, maxAgeDays: r.max_age_days, pruneOldest: r.prune_oldest === 1 } : null;

/**
 * Snapshot lifecycle policies, stored per project and per server or volume
 * (lifecycle.ts says how they combine). Who may set which is the policy
 * table's (project: cloud admins; a server's or volume's: its members); the
 * caller has already resolved the resource in its own project.
 */
export class SnapshotPolicyService {
  constructor(private readonly store: Store) {}

  private row(scope: PolicyScope, targetId: string) {
    return this.store.db
      .selectFrom('snapshot_policies')
      .selectAll()
      .where('scope', '=', scope)
      .where('target_id', '=', targetId)
      .executeTakeFirst();
  }

  /** The project's policy, the resource's own, and what applies to the resource. */
  async show(projectId: string, scope: PolicyScope, targetId: string) {
    const project = toPolicy(await this.row('project', projectId));
    const resource = scope === 'project' ? null : toPolicy(await this.row(scope, targetId));
    return { project, resource, effective: effectivePolicy(project, resource) };
  }

  async effective(
    projectId: string,
    kind: 'server' | 'volume',
    resourceId: string,
  ): Promise<LifecyclePolicy> {
    return (await this.show(projectId, kind, resourceId)).effective;
  }

  async set(auth: AuthContext, scope: PolicyScope, targetId: string, projectId: string, input: PolicyInput) {
    const old = toPolicy(await this.row(scope, targetId));
    const next: LifecyclePolicy = {
      maxCount: input.maxCount === undefined ? (old?.maxCount ?? null) : input.maxCount,
      maxAgeDays: input.maxAgeDays === undefined ? (old?.maxAgeDays ?? null) : input.maxAgeDays,
      pruneOldest: input.pruneOldest ?? old?.pruneOldest ?? false,
    };
    if (
      next.maxCount !== null &&
      (!Number.isSafeInteger(next.maxCount) || next.maxCount < 1 || next.maxCount > MAX_COUNT)
    )
      throw badRequest(`max_count must be a whole number from 1 to ${MAX_COUNT} (or null for no limit).`);
    if (
      next.maxAgeDays !== null &&
      (!Number.isSafeInteger(next.maxAgeDays) || next.maxAgeDays < 1 || next.maxAgeDays > MAX_AGE_DAYS)
    )
      throw badRequest(
        `max_age_days must be a whole number from 1 to ${MAX_AGE_DAYS} (or null for no limit).`,
      );
    const row: PolicyRow = {
      scope,
      target_id: targetId,
      project_id: projectId,
      max_count: next.maxCount,
      max_age_days: next.maxAgeDays,
      prune_oldest: next.pruneOldest ? 1 : 0,
      updated_by: auth.userId,
      updated_at: nowIso(),
    };
    await this.store.db.transaction().execute(async (tx) => {
      await tx
        .deleteFrom('snapshot_policies')
        .where('scope', '=', scope)
        .where('target_id', '=', targetId)
        .execute();
      await tx.insertInto('snapshot_policies').values(row).execute();
    });
    return this.show(projectId, scope, targetId);
  }

  async unset(scope: PolicyScope, targetId: string): Promise<void> {
    await this.store.db
      .deleteFrom('snapshot_policies')
      .where('scope', '=', scope)
      .where('target_id', '=', targetId)
      .execute();
  }
}
