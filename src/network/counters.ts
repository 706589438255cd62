import { GLOBAL_COUNTERS, portCounterNames } from './compile.js';

/** One named counter as read back from nftables (structurally `host/net/nft.ts#CounterReading`). */
export interface CounterValue {
  family: string;
  name: string;
  packets: number;
  bytes: number;
}

/** Dropped packets of one port by cause. */
export interface PortDrops {
  ingress: number;
  egress: number;
  spoof: number;
  zone: number;
  arp: number;
}

/**
 * Folds counter readings into per-port drop counts, for the "firewall drop
 * spike" alert and the port's status. Ports without counters (not on this
 * host) are absent from the result.
 */
export function portDrops(
  readings: readonly CounterValue[],
  portIds: readonly string[],
): Map<string, PortDrops> {
  const byName = new Map<string, number>();
  for (const r of readings) byName.set(`${r.family}|${r.name}`, r.packets);
  const out = new Map<string, PortDrops>();
  for (const id of portIds) {
    const n = portCounterNames(id);
    const get = (family: string, name: string) => byName.get(`${family}|${name}`);
    const ingress = get('inet', n.ingress);
    if (ingress === undefined) continue;
    out.set(id, {
      ingress,
      egress: get('inet', n.egress) ?? 0,
      spoof: get('inet', n.spoof) ?? 0,
      zone: get('inet', n.zone) ?? 0,
      arp: get('arp', n.arp) ?? 0,
    });
  }
  return out;
}

/** Host-wide drops: quarantined devices, unknown tap-like devices, guest traffic to the host itself. */
export function hostDrops(readings: readonly CounterValue[]): {
  quarantine: number;
  unknownDevice: number;
  hostInput: number;
} {
  const sum = (name: string) => readings.filter((r) => r.name === name).reduce((a, r) => a + r.packets, 0);
  return {
    quarantine: sum(GLOBAL_COUNTERS.quarantine),
    unknownDevice: sum(GLOBAL_COUNTERS.unknownDevice),
    hostInput: sum(GLOBAL_COUNTERS.hostInput),
  };
}

/**
 * Growth between two readings of a monotonic counter. A smaller value means
 * the counter was recreated (table deleted by hand, host restarted): the new
 * value is then all growth, as Prometheus treats counter resets.
 */
export const counterDelta = (previous: number, current: number): number =>
  current >= previous ? current - previous : current;
