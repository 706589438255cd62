import type { HostView, PlacementRequest, Resources } from './types.js';

/** Tests one host for one request; `membersOn`: group members already on the host. */
export type HostTest = (host: HostView, membersOn: number) => boolean;

/**
 * A hard constraint: a host either can take the request or it cannot.
 * `forRequest` decides once per request what to test per host, or null when
 * the request cannot fail it (no zone asked, not in a group): the scheduler
 * runs over every host per placement (bench/scheduler.ts).
 */
export interface HostFilter {
  name: string;
  forRequest(req: PlacementRequest): HostTest | null;
}

// One closure per resource, not `h.used[key]`: a keyed load with varying keys is slow in this loop.
const fits: { [K in keyof Resources]: (want: number) => HostTest } = {
  ramMiB: (want) => (h) => h.used.ramMiB + want <= h.capacity.ramMiB * h.ratios.ramMiB,
  vcpus: (want) => (h) => h.used.vcpus + want <= h.capacity.vcpus * h.ratios.vcpus,
  diskGiB: (want) => (h) => h.used.diskGiB + want <= h.capacity.diskGiB * h.ratios.diskGiB,
};

const hasAll = (
  want: readonly string[] | undefined,
  of: (h: HostView) => readonly string[],
): HostTest | null => (want && want.length > 0 ? (h) => want.every((x) => of(h).includes(x)) : null);

/** Nova's filters, in the order that rejects cheaply first. */
export const FILTERS: readonly HostFilter[] = [
  { name: 'ComputeFilter', forRequest: () => (h) => h.state === 'up' },
  {
    name: 'AvailabilityZoneFilter',
    forRequest: (r) => (r.zone === undefined ? null : (h) => h.zone === r.zone),
  },
  { name: 'AggregateInstanceExtraSpecsFilter', forRequest: (r) => hasAll(r.aggregates, (h) => h.aggregates) },
  { name: 'FeatureFilter', forRequest: (r) => hasAll(r.features, (h) => h.features) },
  { name: 'RamFilter', forRequest: (r) => fits.ramMiB(r.resources.ramMiB) },
  { name: 'CoreFilter', forRequest: (r) => fits.vcpus(r.resources.vcpus) },
  { name: 'DiskFilter', forRequest: (r) => fits.diskGiB(r.resources.diskGiB) },
  {
    // Hard affinity: once a member is placed, every other member goes to its host.
    name: 'ServerGroupAffinityFilter',
    forRequest: (r) =>
      r.group?.policy === 'affinity' && r.group.memberHosts.length > 0 ? (_h, on) => on > 0 : null,
  },
  {
    // Hard anti-affinity: at most max_server_per_host members per host (1 unless the rule says more).
    name: 'ServerGroupAntiAffinityFilter',
    forRequest: (r) => {
      if (r.group?.policy !== 'anti-affinity') return null;
      const max = r.group.maxServerPerHost ?? 1;
      return (_h, on) => on < max;
    },
  },
];
