import { describe, expect, it } from 'vitest';
import { type GroupView, type HostView, type PlacementRequest, schedule } from './index.js';

const host = (name: string, over: Partial<HostView> = {}): HostView => ({
  name,
  zone: 'nova',
  aggregates: [],
  features: ['uefi'],
  state: 'up',
  capacity: { vcpus: 8, ramMiB: 8192, diskGiB: 100 },
  used: { vcpus: 0, ramMiB: 0, diskGiB: 0 },
  ratios: { vcpus: 1, ramMiB: 1, diskGiB: 1 },
  ...over,
});
const small: PlacementRequest = { resources: { vcpus: 1, ramMiB: 512, diskGiB: 1 } };
const inGroup = (policy: GroupView['policy'], memberHosts: string[], max?: number): PlacementRequest => ({
  ...small,
  group: { id: 'g', policy, memberHosts, ...(max ? { maxServerPerHost: max } : {}) },
});
const three = [host('a'), host('b'), host('c')];

describe('scheduler filters', () => {
  it('skips hosts that are down or disabled', () => {
    const r = schedule([host('a', { state: 'down' }), host('b', { state: 'disabled' }), host('c')], small);
    expect(r).toEqual({ ok: true, ranked: ['c'] });
  });

  it('refuses a host without the RAM, vCPUs or disk, counting overcommit ratios', () => {
    const full = host('a', { used: { vcpus: 0, ramMiB: 7800, diskGiB: 0 } });
    expect(schedule([full], small)).toEqual({ ok: false, rejected: { RamFilter: 1 } });
    expect(
      schedule([host('a', { ratios: { vcpus: 1, ramMiB: 1.5, diskGiB: 1 }, used: full.used })], small).ok,
    ).toBe(true);
    expect(schedule([host('b')], { resources: { vcpus: 9, ramMiB: 1, diskGiB: 1 } })).toEqual({
      ok: false,
      rejected: { CoreFilter: 1 },
    });
    expect(schedule([host('c')], { resources: { vcpus: 1, ramMiB: 1, diskGiB: 101 } })).toEqual({
      ok: false,
      rejected: { DiskFilter: 1 },
    });
  });

  it('honours zones, aggregates and required features', () => {
    const hosts = [
      host('a', { zone: 'az1', aggregates: ['ssd'] }),
      host('b', { zone: 'az2', aggregates: ['ssd', 'pci'], features: ['tpm', 'secure-boot'] }),
      host('c', { zone: 'az2' }),
    ];
    expect(schedule(hosts, { ...small, zone: 'az2' })).toMatchObject({ ranked: ['b', 'c'] });
    expect(schedule(hosts, { ...small, aggregates: ['ssd'] })).toMatchObject({ ranked: ['a', 'b'] });
    expect(schedule(hosts, { ...small, features: ['tpm'] })).toMatchObject({ ranked: ['b'] });
    expect(schedule(hosts, { ...small, zone: 'az1', features: ['secure-boot'] })).toEqual({
      ok: false,
      rejected: { AvailabilityZoneFilter: 2, FeatureFilter: 1 },
    });
  });
});

describe('server group policies', () => {
  it('anti-affinity: never a host that holds a member; none left is no valid host', () => {
    expect(schedule(three, inGroup('anti-affinity', ['a']))).toMatchObject({ ranked: ['b', 'c'] });
    expect(schedule(three, inGroup('anti-affinity', ['a', 'b', 'c']))).toEqual({
      ok: false,
      rejected: { ServerGroupAntiAffinityFilter: 3 },
    });
  });

  it('anti-affinity with max_server_per_host allows that many per host', () => {
    expect(schedule(three, inGroup('anti-affinity', ['a', 'b', 'c'], 2)).ok).toBe(true);
    expect(schedule(three, inGroup('anti-affinity', ['a', 'a', 'b', 'b', 'c'], 2))).toMatchObject({
      ranked: ['c'],
    });
  });

  it('affinity: the first member goes anywhere, the rest follow it (or fail)', () => {
    expect(schedule(three, inGroup('affinity', []))).toMatchObject({ ok: true });
    expect(schedule(three, inGroup('affinity', ['b']))).toEqual({ ok: true, ranked: ['b'] });
    const full = [host('a'), host('b', { used: { vcpus: 8, ramMiB: 0, diskGiB: 0 } })];
    expect(schedule(full, inGroup('affinity', ['b'])).ok).toBe(false);
  });

  it('soft policies prefer, but do not require', () => {
    expect(schedule(three, inGroup('soft-affinity', ['c']))).toMatchObject({ ranked: ['c', 'a', 'b'] });
    expect(schedule(three, inGroup('soft-anti-affinity', ['a', 'a', 'b']))).toMatchObject({
      ranked: ['c', 'b', 'a'],
    });
    // Only host left holds members: soft anti-affinity still places there.
    expect(schedule([host('a')], inGroup('soft-anti-affinity', ['a']))).toEqual({ ok: true, ranked: ['a'] });
    // Soft affinity's preference outweighs spreading by free RAM.
    const busy = host('c', { used: { vcpus: 4, ramMiB: 6000, diskGiB: 50 } });
    expect(schedule([host('a'), busy], inGroup('soft-affinity', ['c']))).toMatchObject({
      ranked: ['c', 'a'],
    });
  });

  it('spreads by free RAM without a group, deterministically', () => {
    const hosts = [host('a', { used: { vcpus: 1, ramMiB: 4096, diskGiB: 0 } }), host('b'), host('c')];
    expect(schedule(hosts, small)).toMatchObject({ ranked: ['b', 'c', 'a'] });
  });
});
