import type { HostView, PlacementRequest, Resources } from './types.js';

/** A hard constraint: a host either can take the request or it cannot. */
export interface HostFilter {
  name: string;
  passes(host: HostView, req: PlacementRequest, membersOn: number): boolean;
}

const fits = (host: HostView, key: keyof Resources, want: number) =>
  host.used[key] + want <= host.capacity[key] * host.ratios[key];

/** Nova's filters, in the order that rejects cheaply first. `membersOn`: group members already on the host. */
export const FILTERS: readonly HostFilter[] = [
  { name: 'ComputeFilter', passes: (h) => h.state === 'up' },
  {
    name: 'AvailabilityZoneFilter',
    passes: (h, r) => r.zone === undefined || r.zone === h.zone,
  },
  {
    name: 'AggregateInstanceExtraSpecsFilter',
    passes: (h, r) => (r.aggregates ?? []).every((a) => h.aggregates.includes(a)),
  },
  {
    name: 'FeatureFilter',
    passes: (h, r) => (r.features ?? []).every((f) => h.features.includes(f)),
  },
  { name: 'RamFilter', passes: (h, r) => fits(h, 'ramMiB', r.resources.ramMiB) },
  { name: 'CoreFilter', passes: (h, r) => fits(h, 'vcpus', r.resources.vcpus) },
  { name: 'DiskFilter', passes: (h, r) => fits(h, 'diskGiB', r.resources.diskGiB) },
  {
    // Hard affinity: once a member is placed, every other member goes to its host.
    name: 'ServerGroupAffinityFilter',
    passes: (_h, r, on) => r.group?.policy !== 'affinity' || r.group.memberHosts.length === 0 || on > 0,
  },
  {
    // Hard anti-affinity: at most max_server_per_host members per host (1 unless the rule says more).
    name: 'ServerGroupAntiAffinityFilter',
    passes: (_h, r, on) => r.group?.policy !== 'anti-affinity' || on < (r.group.maxServerPerHost ?? 1),
  },
];
