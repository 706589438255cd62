import { FILTERS, type HostFilter } from './filters.js';
import type { HostView, PlacementRequest, ScheduleResult } from './types.js';
import { type HostWeigher, WEIGHERS } from './weighers.js';

export * from './types.js';

/**
 * Chooses hosts for one server: every filter must pass, then the weighed
 * candidates are ranked best first (ties by name, so the result is
 * deterministic). Pure: the store's claim (compute/placement.ts) makes the
 * choice stick atomically.
 */
export function schedule(
  hosts: readonly HostView[],
  req: PlacementRequest,
  filters: readonly HostFilter[] = FILTERS,
  weighers: readonly HostWeigher[] = WEIGHERS,
): ScheduleResult {
  const membersOn = new Map<string, number>();
  for (const h of req.group?.memberHosts ?? []) membersOn.set(h, (membersOn.get(h) ?? 0) + 1);
  const rejected: Record<string, number> = {};
  const passed: HostView[] = [];
  for (const h of hosts) {
    const on = membersOn.get(h.name) ?? 0;
    const failed = filters.find((f) => !f.passes(h, req, on));
    if (failed) rejected[failed.name] = (rejected[failed.name] ?? 0) + 1;
    else passed.push(h);
  }
  if (passed.length === 0) return { ok: false, rejected };
  // Scores in a flat array (this runs per placement over every host: bench/scheduler.ts).
  const score = new Float64Array(passed.length);
  const raw = new Float64Array(passed.length);
  for (const w of weighers) {
    let lo = Number.POSITIVE_INFINITY;
    let hi = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < passed.length; i++) {
      const h = passed[i] as HostView;
      const v = w.weigh(h, req, membersOn.get(h.name) ?? 0);
      raw[i] = v;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    const span = hi - lo;
    if (span === 0) continue;
    for (let i = 0; i < passed.length; i++)
      score[i] = (score[i] as number) + (w.multiplier * ((raw[i] as number) - lo)) / span;
  }
  const order = Array.from(passed.keys()).sort(
    (a, b) =>
      (score[b] as number) - (score[a] as number) ||
      ((passed[a] as HostView).name < (passed[b] as HostView).name ? -1 : 1),
  );
  return { ok: true, ranked: order.map((i) => (passed[i] as HostView).name) };
}
