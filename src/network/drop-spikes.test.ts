import { describe, expect, it } from 'vitest';
import { portCounterNames } from './dataplane-names.js';
import { DropSpikeDetector } from './drop-spikes.js';

const reading = (portId: string, ingress: number, spoof = 0) => {
  const n = portCounterNames(portId);
  return [
    { family: 'inet', name: n.ingress, packets: ingress, bytes: 0 },
    { family: 'inet', name: n.spoof, packets: spoof, bytes: 0 },
  ];
};

describe('firewall drop spikes', () => {
  it('reports a port whose drops grew past the threshold, after a baseline', () => {
    const d = new DropSpikeDetector(100);
    expect(d.observe([...reading('p1', 5000), ...reading('p2', 1)], ['p1', 'p2'], 0)).toEqual([]);
    const spikes = d.observe([...reading('p1', 5050, 60), ...reading('p2', 2)], ['p1', 'p2'], 30_000);
    expect(spikes).toEqual([
      {
        portId: 'p1',
        delta: { ingress: 50, egress: 0, spoof: 60, zone: 0, arp: 0 },
        total: 110,
        intervalSeconds: 30,
      },
    ]);
    // A reset counter (table recreated) counts its new value as growth, as Prometheus does.
    expect(d.observe(reading('p1', 150), ['p1'], 60_000).map((s) => s.total)).toEqual([150]);
    expect(d.observe(reading('p1', 160), ['p1'], 90_000)).toEqual([]);
  });
});
