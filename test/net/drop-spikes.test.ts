/**
 * Firewall drop spikes from real nftables counters: a guest floods a port
 * whose groups admit no ingress, the monitor reads the counters in the
 * "hypervisor" namespace and audits one `network:drop_spike` naming the port.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { classify } from '../../src/audit/security-events.js';
import { AuditWriter } from '../../src/audit/writer.js';
import { applyRuleset, readCounters } from '../../src/host/net/nft.js';
import { compileRuleset, type PortState } from '../../src/network/compile.js';
import { DropMonitor } from '../../src/network/drop-spikes.js';
import { normaliseRule } from '../../src/network/model.js';
import { openStore, type Store } from '../../src/store/database.js';
import { type TestDb, testDb } from '../helpers/store.js';
import { type Guest, guestPort, hasTools, isRoot, Topology } from './topology.js';

const TABLE = 'bulwark';

describe.skipIf(!(isRoot() && hasTools()))('firewall drop spikes (netns, real counters)', () => {
  let topo: Topology;
  let g1: Guest;
  let g2: Guest;
  let db: TestDb;
  let store: Store;

  beforeAll(async () => {
    db = await testDb('sqlite');
    store = await openStore({ url: db.url });
    topo = await Topology.create(['10.91.0.1']);
    g1 = await topo.addGuest('d1', {
      ip: '10.91.0.11',
      prefixLen: 24,
      gateway: '10.91.0.1',
      mac: 'fa:16:3e:00:01:11',
    });
    g2 = await topo.addGuest('d2', {
      ip: '10.91.0.12',
      prefixLen: 24,
      gateway: '10.91.0.1',
      mac: 'fa:16:3e:00:01:12',
    });
    const port = (g: Guest, group: string): PortState => guestPort(g, { groupIds: [group] });
    const egress = normaliseRule({ direction: 'egress', ethertype: 'IPv4' });
    await applyRuleset(
      compileRuleset({
        table: TABLE,
        ports: [port(g1, 'closed'), port(g2, 'closed')],
        groups: [{ id: 'closed', stateful: true, rules: [egress] }],
      }),
      { netns: topo.hv },
    );
  });
  afterAll(async () => {
    await topo?.destroy();
    await store?.close();
    await db?.drop();
  });

  it('audits a spike at the flooded port only, once', async () => {
    const audit = new AuditWriter(store);
    const monitor = new DropMonitor(
      () => readCounters(TABLE, { netns: topo.hv }),
      async () => [g1.portId, g2.portId],
      audit,
      30,
    );
    expect(await monitor.tick()).toEqual([]); // the baseline
    // 60 pings to a port that admits nothing: each one dropped at g1's ingress.
    await topo
      .exec(g2.netns, 'ping', ['-n', '-q', '-c', '60', '-i', '0.01', '-W', '1', g1.ip])
      .catch(() => undefined);
    const spikes = await monitor.tick();
    expect(spikes.map((s) => s.portId)).toEqual([g1.portId]);
    expect(spikes[0]?.delta.ingress).toBeGreaterThanOrEqual(60);
    expect(await monitor.tick()).toEqual([]); // no new drops, no new event
    const rows = await store.db
      .selectFrom('audit_events')
      .selectAll()
      .where('action', '=', 'network:drop_spike')
      .execute();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ target_type: 'port', target_id: g1.portId });
    expect(rows[0]?.reason).toMatch(/ingress \d+/);
    expect(classify(rows[0] as (typeof rows)[number])).toEqual({
      category: 'firewall.drop_spike',
      severity: 'high',
    });
  });
});
