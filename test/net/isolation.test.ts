import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runNet } from '../../src/host/net/exec.js';
import { applyRuleset, readCounters } from '../../src/host/net/nft.js';
import {
  type CompileInput,
  compileRuleset,
  type GroupState,
  NO_ROUTE_OUT_COUNTER,
  networkCounterName,
  type PortState,
  type RouterState,
} from '../../src/network/compile.js';
import { normaliseRule } from '../../src/network/model.js';
import { type Guest, guestPort, hasTools, isRoot, Topology } from './topology.js';

/**
 * Tenant isolation with real packets: two Neutron networks on one routed host,
 * both with allow-everything groups. Without a router nothing crosses; a
 * router with subnets of both joins them; an external gateway SNATs one
 * network out of an "uplink" into a namespace that plays the internet, and
 * nothing from there comes in unsolicited.
 */

const TABLE = 'bulwark';
const NET_A = 'aaaaaaaa-1111-4111-8111-000000000001';
const NET_B = 'bbbbbbbb-2222-4222-8222-000000000002';
const OPEN: GroupState = {
  id: 'open',
  stateful: true,
  rules: [
    { direction: 'ingress' as const, ethertype: 'IPv4' as const },
    { direction: 'egress' as const, ethertype: 'IPv4' as const },
    { direction: 'ingress' as const, ethertype: 'IPv6' as const },
    { direction: 'egress' as const, ethertype: 'IPv6' as const },
  ].map(normaliseRule),
};

const canRun = isRoot() && hasTools();

describe.skipIf(!canRun)('network isolation, routers and SNAT with real traffic (netns)', () => {
  let topo: Topology;
  let a: Guest;
  let b: Guest;
  const inet = () => `bwt-inet-${topo.suffix}`;
  const uplink = () => `bwup${topo.suffix}`;
  let inetMade = false;

  beforeAll(async () => {
    topo = await Topology.create(['10.61.0.1', '10.62.0.1']);
    a = await topo.addGuest('ia', {
      ip: '10.61.0.11',
      prefixLen: 24,
      gateway: '10.61.0.1',
      mac: 'fa:16:3e:61:00:11',
    });
    b = await topo.addGuest('ib', {
      ip: '10.62.0.12',
      prefixLen: 24,
      gateway: '10.62.0.1',
      mac: 'fa:16:3e:62:00:12',
    });
    // The "internet": its own namespace behind a veth pair whose HV end is the uplink (203.0.113.0/24).
    await runNet('ip', ['netns', 'add', inet()]);
    inetMade = true;
    await runNet('ip', ['link', 'set', 'lo', 'up'], { netns: inet() });
    await runNet('ip', ['link', 'add', uplink(), 'type', 'veth', 'peer', 'name', 'eth0', 'netns', inet()], {
      netns: topo.hv,
    });
    await runNet('ip', ['addr', 'add', '203.0.113.1/24', 'dev', uplink()], { netns: topo.hv });
    await runNet('ip', ['link', 'set', uplink(), 'up'], { netns: topo.hv });
    await runNet('ip', ['addr', 'add', '203.0.113.254/24', 'dev', 'eth0'], { netns: inet() });
    await runNet('ip', ['link', 'set', 'eth0', 'up'], { netns: inet() });
  });

  afterAll(async () => {
    if (inetMade) await runNet('ip', ['netns', 'del', inet()]).catch(() => {});
    await topo?.destroy();
  });
  process.on('exit', () => {
    if (!inetMade) return;
    try {
      execFileSync('ip', ['netns', 'del', inet()], { stdio: 'ignore' });
    } catch {}
  });

  const port = (g: Guest, network: string): PortState => guestPort(g, { groupIds: ['open'], network });
  const apply = async (routers: RouterState[], extra: Partial<CompileInput> = {}) =>
    applyRuleset(
      compileRuleset({
        table: TABLE,
        ports: [port(a, NET_A), port(b, NET_B)],
        groups: [OPEN],
        routers,
        uplink: uplink(),
        ...extra,
      }),
      { netns: topo.hv },
    );
  const counter = async (name: string) =>
    (await readCounters(TABLE, { netns: topo.hv })).find((c) => c.name === name && c.family === 'inet')
      ?.packets ?? -1;
  const pingFromInternet = async (to: string) => {
    try {
      await runNet('ping', ['-n', '-q', '-c', '1', '-W', '1', to], { netns: inet() });
      return true;
    } catch {
      return false;
    }
  };

  it('drops traffic between two networks both ways, even with allow-all groups', async () => {
    await apply([]);
    expect(await topo.ping('ia', b.ip)).toBe(false);
    expect(await topo.ping('ib', a.ip)).toBe(false);
    expect(await counter(networkCounterName(b.portId))).toBeGreaterThan(0);
    expect(await counter(networkCounterName(a.portId))).toBeGreaterThan(0);
    // Each still reaches its own gateway (the host).
    expect(await topo.ping('ia', '10.61.0.1')).toBe(true);
  });

  it('passes once a router has subnets of both networks, and stops when it goes', async () => {
    await apply([{ id: 'r1', networks: [NET_A, NET_B] }]);
    expect(await topo.ping('ia', b.ip)).toBe(true);
    expect(await topo.ping('ib', a.ip)).toBe(true);
    await apply([{ id: 'r1', networks: [NET_A] }]);
    expect(await topo.ping('ia', b.ip)).toBe(false);
    expect(await topo.ping('ib', a.ip)).toBe(false);
  });

  it('without an external gateway nothing leaves; with one the router’s subnets are SNATed out of the uplink', async () => {
    await apply([{ id: 'r1', networks: [NET_A] }]);
    expect(await topo.ping('ia', '203.0.113.254')).toBe(false);
    expect(await counter(NO_ROUTE_OUT_COUNTER)).toBeGreaterThan(0);
    await apply([{ id: 'r1', networks: [NET_A], snat: ['10.61.0.0/24'] }]);
    // The internet has no route to 10.61.0.0/24: the reply only comes back because the source was NATed.
    expect(await topo.ping('ia', '203.0.113.254')).toBe(true);
    // Network B has no router with a gateway: still nothing out.
    expect(await topo.ping('ib', '203.0.113.254')).toBe(false);
  });

  it('lets nothing in unsolicited from the uplink, even to a guest whose groups allow everything', async () => {
    await apply([{ id: 'r1', networks: [NET_A], snat: ['10.61.0.0/24'] }]);
    await runNet('ip', ['route', 'replace', '10.61.0.0/24', 'via', '203.0.113.1'], { netns: inet() });
    await runNet('ip', ['route', 'replace', '10.62.0.0/24', 'via', '203.0.113.1'], { netns: inet() });
    expect(await pingFromInternet(a.ip)).toBe(false);
    expect(await pingFromInternet(b.ip)).toBe(false);
    expect(await counter('unsolicited_in')).toBeGreaterThan(0);
    // Outbound still works with the route in place.
    expect(await topo.ping('ia', '203.0.113.254')).toBe(true);
  });
});
