import type { HostView, PlacementRequest } from './types.js';

/** A preference: higher is better. Each weigher's values are normalised to 0..1 across the candidates. */
export interface HostWeigher {
  name: string;
  multiplier: number;
  weigh(host: HostView, req: PlacementRequest, membersOn: number): number;
}

const free = (h: HostView, key: 'ramMiB' | 'vcpus' | 'diskGiB') =>
  h.capacity[key] * h.ratios[key] - h.used[key];

/**
 * Nova's default weighers: spread by free RAM (then vCPUs and disk), and the
 * soft group policies, which outweigh spreading so they win whenever they can.
 */
export const WEIGHERS: readonly HostWeigher[] = [
  { name: 'RAMWeigher', multiplier: 1, weigh: (h) => free(h, 'ramMiB') },
  { name: 'CPUWeigher', multiplier: 1, weigh: (h) => free(h, 'vcpus') },
  { name: 'DiskWeigher', multiplier: 0.5, weigh: (h) => free(h, 'diskGiB') },
  {
    name: 'ServerGroupSoftAffinityWeigher',
    multiplier: 10,
    weigh: (_h, r, on) => (r.group?.policy === 'soft-affinity' ? on : 0),
  },
  {
    name: 'ServerGroupSoftAntiAffinityWeigher',
    multiplier: 10,
    weigh: (_h, r, on) => (r.group?.policy === 'soft-anti-affinity' ? -on : 0),
  },
];
