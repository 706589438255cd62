import { FILTERS, type HostFilter, type HostTest } from './filters.js';
import type { HostView, PlacementRequest, ScheduleResult } from './types.js';
import { type HostWeigher, type HostWeight, WEIGHERS } from './weighers.js';

export * from './types.js';

/**
 * Chooses hosts for one server: every filter must pass, then the weighed
 * candidates are ranked best first (ties by name, so the result is
 * deterministic). Pure: the store's claim (compute/placement.ts) makes the
 * choice stick atomically.
 *
 * This runs per placement over every host (bench/scheduler.ts), so the work
 * that depends only on the request (which filters and weighers apply, the
 * group's members per host) is done once, and scores live in flat arrays.
 */
export function schedule(
  hosts: readonly HostView[],
  req: PlacementRequest,
  filters: readonly HostFilter[] = FILTERS,
  weighers: readonly HostWeigher[] = WEIGHERS,
): ScheduleResult {
  const members = req.group?.memberHosts ?? [];
  const membersOn = new Map<string, number>();
  for (const h of members) membersOn.set(h, (membersOn.get(h) ?? 0) + 1);
  const tests: { name: string; test: HostTest }[] = [];
  for (const f of filters) {
    const test = f.forRequest(req);
    if (test) tests.push({ name: f.name, test });
  }
  const rejected: Record<string, number> = {};
  const passed: HostView[] = [];
  const passedOn: number[] = [];
  for (const h of hosts) {
    const on = members.length === 0 ? 0 : (membersOn.get(h.name) ?? 0);
    let failed: string | undefined;
    for (const t of tests)
      if (!t.test(h, on)) {
        failed = t.name;
        break;
      }
    if (failed !== undefined) rejected[failed] = (rejected[failed] ?? 0) + 1;
    else {
      passed.push(h);
      passedOn.push(on);
    }
  }
  if (passed.length === 0) return { ok: false, rejected };
  const n = passed.length;
  const score = new Float64Array(n);
  const raw = new Float64Array(n);
  for (const w of weighers) {
    const weigh: HostWeight | null = w.forRequest(req);
    if (!weigh) continue;
    let lo = Number.POSITIVE_INFINITY;
    let hi = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < n; i++) {
      const v = weigh(passed[i] as HostView, passedOn[i] as number);
      raw[i] = v;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    const span = hi - lo;
    if (span === 0) continue;
    for (let i = 0; i < n; i++)
      score[i] = (score[i] as number) + (w.multiplier * ((raw[i] as number) - lo)) / span;
  }
  // Ties go by name: by position when the hosts come sorted (HostService lists them by name).
  const nameRank = byNameRank(passed);
  const order = Array.from({ length: n }, (_, i) => i).sort(
    (a, b) =>
      (score[b] as number) - (score[a] as number) || (nameRank[a] as number) - (nameRank[b] as number),
  );
  return { ok: true, ranked: order.map((i) => (passed[i] as HostView).name) };
}

/** Each host's position in name order. */
function byNameRank(hosts: readonly HostView[]): Int32Array {
  const rank = new Int32Array(hosts.length);
  let sorted = true;
  for (let i = 0; i < hosts.length; i++) {
    rank[i] = i;
    if (i > 0 && !((hosts[i - 1] as HostView).name < (hosts[i] as HostView).name)) sorted = false;
  }
  if (sorted) return rank;
  const byName = Array.from(rank).sort((a, b) =>
    (hosts[a] as HostView).name < (hosts[b] as HostView).name ? -1 : 1,
  );
  for (let r = 0; r < byName.length; r++) rank[byName[r] as number] = r;
  return rank;
}
