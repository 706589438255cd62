import type { HostView, PlacementRequest } from './types.js';

/** Weighs one host for one request; `membersOn`: group members already on the host. */
export type HostWeight = (host: HostView, membersOn: number) => number;

/**
 * A preference: higher is better. Each weigher's values are normalised to
 * 0..1 across the candidates. `forRequest` returns null when the weigher
 * gives every host the same value for this request (it cannot change the order).
 */
export interface HostWeigher {
  name: string;
  multiplier: number;
  forRequest(req: PlacementRequest): HostWeight | null;
}

// One function per resource, not `h.used[key]`: a keyed load with varying keys is slow in this loop.
const freeRam: HostWeight = (h) => h.capacity.ramMiB * h.ratios.ramMiB - h.used.ramMiB;
const freeCpus: HostWeight = (h) => h.capacity.vcpus * h.ratios.vcpus - h.used.vcpus;
const freeDisk: HostWeight = (h) => h.capacity.diskGiB * h.ratios.diskGiB - h.used.diskGiB;

/**
 * Nova's default weighers: spread by free RAM (then vCPUs and disk), and the
 * soft group policies, which outweigh spreading so they win whenever they can.
 */
export const WEIGHERS: readonly HostWeigher[] = [
  { name: 'RAMWeigher', multiplier: 1, forRequest: () => freeRam },
  { name: 'CPUWeigher', multiplier: 1, forRequest: () => freeCpus },
  { name: 'DiskWeigher', multiplier: 0.5, forRequest: () => freeDisk },
  {
    name: 'ServerGroupSoftAffinityWeigher',
    multiplier: 10,
    forRequest: (r) => (r.group?.policy === 'soft-affinity' ? (_h, on) => on : null),
  },
  {
    name: 'ServerGroupSoftAntiAffinityWeigher',
    multiplier: 10,
    forRequest: (r) => (r.group?.policy === 'soft-anti-affinity' ? (_h, on) => -on : null),
  },
];
