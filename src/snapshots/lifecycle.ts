import { conflict } from '../errors.js';

/**
 * Snapshot lifecycle rules (guide 6: maximum count and maximum age), pure.
 *
 * A policy can be set on a project (cloud admins) and on one server or
 * volume (its project's members). The effective policy of a resource is the
 * stricter of the two for each limit, so a resource policy can only tighten
 * what the project allows; pruning the oldest to make room is allowed when
 * either says so (it only ever removes the resource's own oldest snapshots).
 */
export interface LifecyclePolicy {
  /** Most snapshots one server or volume may have; null: no limit. */
  maxCount: number | null;
  /** Snapshots older than this many days are pruned by the scheduler; null: kept. */
  maxAgeDays: number | null;
  /** At the count limit: true, a new snapshot prunes the oldest; false, it is refused. */
  pruneOldest: boolean;
}

export const NO_POLICY: LifecyclePolicy = { maxCount: null, maxAgeDays: null, pruneOldest: false };

const stricter = (a: number | null, b: number | null) => (a === null ? b : b === null ? a : Math.min(a, b));

export function effectivePolicy(
  project: LifecyclePolicy | null,
  resource: LifecyclePolicy | null,
): LifecyclePolicy {
  const p = project ?? NO_POLICY;
  const r = resource ?? NO_POLICY;
  return {
    maxCount: stricter(p.maxCount, r.maxCount),
    maxAgeDays: stricter(p.maxAgeDays, r.maxAgeDays),
    pruneOldest: p.pruneOldest || r.pruneOldest,
  };
}

export interface Existing {
  id: string;
  createdAt: string;
}

const DAY_MS = 86_400_000;
const oldestFirst = (list: readonly Existing[]) =>
  [...list].sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));

/**
 * What creating one more snapshot means under `policy`: the oldest to prune
 * first (only with pruneOldest), and a warning when the resource is then at
 * or one below its limit. Beyond the limit without pruning: refused (409).
 */
export function planCreate(
  existing: readonly Existing[],
  policy: LifecyclePolicy,
  what: string,
): { prune: string[]; warning: string | null } {
  const max = policy.maxCount;
  if (max === null) return { prune: [], warning: null };
  let prune: string[] = [];
  if (existing.length >= max) {
    if (!policy.pruneOldest)
      throw conflict(
        `${what} already has ${existing.length} snapshot(s) and its lifecycle policy allows ${max}; delete an old snapshot first (or have the policy prune the oldest).`,
      );
    prune = oldestFirst(existing)
      .slice(0, existing.length - max + 1)
      .map((s) => s.id);
  }
  const after = existing.length - prune.length + 1;
  const warning =
    after >= max
      ? `${what} now has ${after} of ${max} snapshots its policy allows; the next one ${policy.pruneOldest ? 'prunes the oldest' : 'is refused'}.`
      : after === max - 1
        ? `${what} now has ${after} of ${max} snapshots its policy allows.`
        : null;
  return { prune, warning };
}

/** What the scheduler prunes now: past the maximum age, then the oldest beyond the count. */
export function planPrune(
  existing: readonly Existing[],
  policy: LifecyclePolicy,
  now: Date,
): { expired: string[]; overCount: string[] } {
  const expired =
    policy.maxAgeDays === null
      ? []
      : existing
          .filter((s) => now.getTime() - Date.parse(s.createdAt) >= (policy.maxAgeDays as number) * DAY_MS)
          .map((s) => s.id);
  const left = oldestFirst(existing.filter((s) => !expired.includes(s.id)));
  const overCount =
    policy.maxCount === null
      ? []
      : left.slice(0, Math.max(0, left.length - policy.maxCount)).map((s) => s.id);
  return { expired, overCount };
}
