import { type AuditWriter, systemEvent } from '../audit/writer.js';
import { type CounterValue, counterDelta, type PortDrops, portDrops } from './counters.js';

export interface DropSpike {
  portId: string;
  /** Packets dropped at this port since the previous reading, by cause. */
  delta: PortDrops;
  total: number;
  intervalSeconds: number;
}

const CAUSES = ['ingress', 'egress', 'spoof', 'zone', 'arp'] as const;

/**
 * "Firewall drop spike" (guide §13, unusual network traffic): a port whose
 * drop counters grew by at least `threshold` packets between two readings.
 * Pure and stateful: it keeps the previous reading per port; the first
 * reading of a port only sets its baseline.
 */
export class DropSpikeDetector {
  private previous = new Map<string, PortDrops>();
  private previousAt: number | null = null;

  constructor(private readonly threshold: number) {}

  observe(readings: readonly CounterValue[], portIds: readonly string[], now = Date.now()): DropSpike[] {
    const current = portDrops(readings, portIds);
    const intervalSeconds = this.previousAt === null ? 0 : (now - this.previousAt) / 1000;
    const spikes: DropSpike[] = [];
    for (const [portId, drops] of current) {
      const before = this.previous.get(portId);
      if (!before) continue;
      const d = (c: keyof PortDrops) => counterDelta(before[c], drops[c]);
      const delta = {
        ingress: d('ingress'),
        egress: d('egress'),
        spoof: d('spoof'),
        zone: d('zone'),
        arp: d('arp'),
      };
      const total = CAUSES.reduce((a, c) => a + delta[c], 0);
      if (total >= this.threshold) spikes.push({ portId, delta, total, intervalSeconds });
    }
    this.previous = current;
    this.previousAt = now;
    return spikes;
  }

  /** The last reading per port (for the drops-per-port metric). */
  latest(): ReadonlyMap<string, PortDrops> {
    return this.previous;
  }
}

/** Spike threshold default: packets dropped at one port between two readings. */
export const DEFAULT_DROP_SPIKE_THRESHOLD = 100;

/**
 * Reads the firewall counters on a timer and audits each spike as a
 * `network:drop_spike` security event (forwarded to the SIEM like any audit
 * row). The reader is the host's (`NftDataplane#counters`), injected.
 */
export class DropMonitor {
  readonly detector: DropSpikeDetector;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly read: () => Promise<readonly CounterValue[]>,
    private readonly portIds: () => Promise<readonly string[]>,
    private readonly audit: AuditWriter,
    threshold = DEFAULT_DROP_SPIKE_THRESHOLD,
  ) {
    this.detector = new DropSpikeDetector(threshold);
  }

  /** One reading; returns the spikes it audited. */
  async tick(): Promise<DropSpike[]> {
    const spikes = this.detector.observe(await this.read(), await this.portIds());
    for (const s of spikes) {
      const by = Object.entries(s.delta)
        .filter(([, n]) => n > 0)
        .map(([cause, n]) => `${cause} ${n}`)
        .join(', ');
      await this.audit.append(
        systemEvent({
          action: 'network:drop_spike',
          reason: `${s.total} packets dropped at port ${s.portId} in ${Math.round(s.intervalSeconds)} s (${by})`,
          target: { type: 'port', id: s.portId },
        }),
      );
    }
    return spikes;
  }

  start(intervalMs: number): void {
    // The first reading is the baseline (and gives the drops-per-port metric its values at once).
    void this.tick().catch(() => undefined);
    this.timer = setInterval(() => void this.tick().catch(() => undefined), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
