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
  const score = new Map<string, number>(passed.map((h) => [h.name, 0]));
  for (const w of weighers) {
    const raw = passed.map((h) => w.weigh(h, req, membersOn.get(h.name) ?? 0));
    const lo = Math.min(...raw);
    const span = Math.max(...raw) - lo;
    passed.forEach((h, i) => {
      const norm = span === 0 ? 0 : ((raw[i] as number) - lo) / span;
      score.set(h.name, (score.get(h.name) ?? 0) + w.multiplier * norm);
    });
  }
  const ranked = passed
    .map((h) => h.name)
    .sort((a, b) => (score.get(b) ?? 0) - (score.get(a) ?? 0) || a.localeCompare(b));
  return { ok: true, ranked };
}
