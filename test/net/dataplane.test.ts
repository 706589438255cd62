import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyCommands, applyRuleset, listTables, readCounters, readSet } from '../../src/host/net/nft.js';
import {
  type CompileInput,
  compileGroupMembers,
  compileQuarantine,
  compileRuleset,
  type GroupState,
  names,
  type PortState,
  portCounterNames,
  type ZonePolicy,
} from '../../src/network/compile.js';
import { normaliseRule, type RuleInput } from '../../src/network/model.js';
import { type Guest, hasTools, isRoot, Topology } from './topology.js';

/**
 * The security-group dataplane with real packets: guests are network
 * namespaces routed through a "hypervisor" namespace that runs the compiled
 * nftables ruleset. Dropped means silently: a TCP connect times out (no RST,
 * no ICMP error turns it into "refused").
 */

const TABLE = 'bulwark';
const BLOCKED_MS = 400;
const ALLOWED_MS = 3000;

const group = (id: string, rules: RuleInput[], stateful = true): GroupState => ({
  id,
  stateful,
  rules: rules.map(normaliseRule),
});
const EGRESS_ALL: RuleInput[] = [
  { direction: 'egress', ethertype: 'IPv4' },
  { direction: 'egress', ethertype: 'IPv6' },
];
const GROUPS: GroupState[] = [
  // The spec's default: all egress, no ingress.
  group('default', EGRESS_ALL),
  group('open', [...EGRESS_ALL, { direction: 'ingress' }, { direction: 'ingress', ethertype: 'IPv6' }]),
  // The spec's exact rule: tcp 443 from 10.0.0.0/8.
  group('web', [
    ...EGRESS_ALL,
    {
      direction: 'ingress',
      protocol: 'tcp',
      port_range_min: 443,
      port_range_max: 443,
      remote_ip_prefix: '10.0.0.0/8',
    },
    {
      direction: 'ingress',
      ethertype: 'IPv6',
      protocol: 'tcp',
      port_range_min: 443,
      port_range_max: 443,
      remote_ip_prefix: 'fd00:90::/64',
    },
  ]),
  group('clients', EGRESS_ALL),
  group('from-clients', [
    ...EGRESS_ALL,
    {
      direction: 'ingress',
      protocol: 'tcp',
      port_range_min: 8080,
      port_range_max: 8080,
      remote_group_id: 'clients',
    },
  ]),
  group(
    'stateless-srv',
    [{ direction: 'ingress', protocol: 'tcp', port_range_min: 5001, port_range_max: 5001 }],
    false,
  ),
  group(
    'stateless-srv-both',
    [
      { direction: 'ingress', protocol: 'tcp', port_range_min: 5001, port_range_max: 5001 },
      { direction: 'egress', protocol: 'tcp', remote_ip_prefix: '10.0.0.0/8' },
    ],
    false,
  ),
];

const canRun = isRoot() && hasTools();

describe.skipIf(!canRun)('security-group dataplane with real traffic (netns)', () => {
  let topo: Topology;
  let g1: Guest;
  let g2: Guest;
  let g3: Guest;
  let g4: Guest;

  beforeAll(async () => {
    topo = await Topology.create(['10.90.0.1', '172.16.5.1']);
    g1 = await topo.addGuest('g1', {
      ip: '10.90.0.11',
      prefixLen: 24,
      gateway: '10.90.0.1',
      mac: 'fa:16:3e:00:00:11',
      ip6: 'fd00:90::11',
    });
    g2 = await topo.addGuest('g2', {
      ip: '10.90.0.12',
      prefixLen: 24,
      gateway: '10.90.0.1',
      mac: 'fa:16:3e:00:00:12',
      ip6: 'fd00:90::12',
    });
    // Outside 10.0.0.0/8, on another subnet of the same host.
    g3 = await topo.addGuest('g3', {
      ip: '172.16.5.13',
      prefixLen: 24,
      gateway: '172.16.5.1',
      mac: 'fa:16:3e:00:00:13',
    });
    g4 = await topo.addGuest('g4', {
      ip: '10.90.0.14',
      prefixLen: 24,
      gateway: '10.90.0.1',
      mac: 'fa:16:3e:00:00:14',
    });
    for (const g of [g1, g2, g3, g4])
      for (const port of [80, 443, 5001, 8080]) await g.agent.call('listenTcp', { port });
  });

  afterAll(async () => {
    await topo?.destroy();
  });

  /** Port state for a guest; `groups` in order, plus any overrides. */
  const port = (g: Guest, groupIds: string[], extra: Partial<PortState> = {}): PortState => ({
    id: g.portId,
    device: g.device,
    mac: g.mac,
    ips: [g.ip, ...(g.ip6 ? [g.ip6] : [])],
    allowedAddressPairs: [],
    portSecurity: true,
    groupIds,
    ...extra,
  });

  const apply = async (ports: PortState[], opts: { groups?: GroupState[]; zones?: ZonePolicy[] } = {}) => {
    const input: CompileInput = {
      table: TABLE,
      ports,
      groups: opts.groups ?? GROUPS,
      ...(opts.zones ? { zones: opts.zones } : {}),
    };
    await applyRuleset(compileRuleset(input), { netns: topo.hv });
  };

  const tcp = async (
    from: Guest,
    to: string,
    port: number,
    opts: { localAddress?: string; timeoutMs?: number } = {},
  ) =>
    (
      await from.agent.call('connect', {
        host: to,
        port,
        timeoutMs: opts.timeoutMs ?? BLOCKED_MS,
        ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
      })
    ).result;

  const counter = async (name: string, family = 'inet') =>
    (await readCounters(TABLE, { netns: topo.hv })).find((c) => c.name === name && c.family === family)
      ?.packets ?? -1;

  it('default group: no ingress at all, but egress and its replies pass', async () => {
    await apply([port(g1, ['default']), port(g2, ['open'])]);
    expect(await tcp(g2, g1.ip, 443)).toBe('timeout');
    expect(await tcp(g2, g1.ip, 80)).toBe('timeout');
    expect(await topo.ping('g2', g1.ip)).toBe(false);
    expect(await counter(portCounterNames(g1.portId).ingress)).toBeGreaterThan(0);
    // g1 opens the connection: its SYN leaves by egress, the SYN-ACK comes back as an established reply.
    const c = await g1.agent.call('connect', { host: g2.ip, port: 443, timeoutMs: ALLOWED_MS, keep: true });
    expect(c.result).toBe('connected');
    expect((await g1.agent.call('echo', { sid: c.sid, data: 'hello', timeoutMs: ALLOWED_MS })).result).toBe(
      'echo',
    );
    expect(await topo.ping('g1', g2.ip)).toBe(true);
    // A port with no groups at all: nothing in, nothing out.
    await apply([port(g1, []), port(g2, ['open'])]);
    expect(await tcp(g1, g2.ip, 443)).toBe('timeout');
    expect(await tcp(g2, g1.ip, 443)).toBe('timeout');
    expect(await counter(portCounterNames(g1.portId).egress)).toBeGreaterThan(0);
  });

  it('"tcp 443 from 10.0.0.0/8" lets exactly that through, and drops the rest silently', async () => {
    await apply([port(g1, ['web']), port(g2, ['open']), port(g3, ['open'])]);
    expect(await tcp(g2, g1.ip, 443, { timeoutMs: ALLOWED_MS })).toBe('connected');
    // Same source, other port: dropped, not refused (no RST).
    expect(await tcp(g2, g1.ip, 80)).toBe('timeout');
    expect(await tcp(g2, g1.ip, 8080)).toBe('timeout');
    // Right port, source outside 10.0.0.0/8.
    expect(await tcp(g3, g1.ip, 443)).toBe('timeout');
    expect(await topo.ping('g2', g1.ip)).toBe(false);
    // UDP 443 is not TCP 443.
    await g1.agent.call('listenUdp', { port: 443 });
    await g2.agent.call('sendUdp', { host: g1.ip, port: 443, data: 'udp-443' });
    await new Promise((r) => setTimeout(r, 200));
    expect((await g1.agent.call('udpInbox', { port: 443 })).messages).toEqual([]);
    // IPv6 form of the rule: from fd00:90::/64 only.
    expect(await tcp(g2, g1.ip6 ?? '', 443, { timeoutMs: ALLOWED_MS })).toBe('connected');
    expect(await tcp(g2, g1.ip6 ?? '', 80)).toBe('timeout');
  });

  it('remote_group_id: members reach the port, others do not, and a new member is let in by a set update', async () => {
    await apply([port(g1, ['from-clients']), port(g2, ['clients']), port(g4, ['open'])]);
    expect(await tcp(g2, g1.ip, 8080, { timeoutMs: ALLOWED_MS })).toBe('connected');
    expect(await tcp(g4, g1.ip, 8080)).toBe('timeout');
    expect(await tcp(g2, g1.ip, 443)).toBe('timeout');
    const setName = names.groupSet('clients', 4);
    expect(await readSet('inet', TABLE, setName, { netns: topo.hv })).toEqual([g2.ip]);
    // g4 joins `clients`: only the set changes, no rule is added or rebuilt.
    await applyCommands(compileGroupMembers(TABLE, 'clients', [g2.ip, g2.ip6 ?? '', g4.ip]), {
      netns: topo.hv,
    });
    expect((await readSet('inet', TABLE, setName, { netns: topo.hv })).sort()).toEqual([g2.ip, g4.ip].sort());
    expect(await tcp(g4, g1.ip, 8080, { timeoutMs: ALLOWED_MS })).toBe('connected');
    // And the full compile agrees with the incremental update.
    await apply([port(g1, ['from-clients']), port(g2, ['clients']), port(g4, ['clients'])]);
    expect(await tcp(g4, g1.ip, 8080, { timeoutMs: ALLOWED_MS })).toBe('connected');
  });

  it('stateless group: no conntrack, so the reply direction needs its own rule', async () => {
    await apply([port(g4, ['stateless-srv']), port(g2, ['open'])]);
    // The SYN gets in, the SYN-ACK has no egress rule.
    expect(await tcp(g2, g4.ip, 5001)).toBe('timeout');
    expect(await counter(portCounterNames(g4.portId).egress)).toBeGreaterThan(0);
    await apply([port(g4, ['stateless-srv-both']), port(g2, ['open'])]);
    expect(await tcp(g2, g4.ip, 5001, { timeoutMs: ALLOWED_MS })).toBe('connected');
    // Other ports stay closed.
    expect(await tcp(g2, g4.ip, 80)).toBe('timeout');
  });

  it('port security: spoofed source IP or MAC from a guest is dropped', async () => {
    await apply([port(g1, ['open']), port(g2, ['open'])]);
    const spoof = portCounterNames(g1.portId).spoof;
    expect(await tcp(g1, g2.ip, 443, { timeoutMs: ALLOWED_MS })).toBe('connected');
    const before = await counter(spoof);
    // IP spoofing: the guest adds an address that is not its port's and sends from it.
    await topo.exec(g1.netns, 'ip', ['addr', 'add', '10.90.0.99/24', 'dev', 'eth0']);
    try {
      expect(await tcp(g1, g2.ip, 443, { localAddress: '10.90.0.99' })).toBe('timeout');
    } finally {
      await topo.exec(g1.netns, 'ip', ['addr', 'del', '10.90.0.99/24', 'dev', 'eth0']);
    }
    expect(await counter(spoof)).toBeGreaterThan(before);
    // IPv6 spoofing too.
    await topo.exec(g1.netns, 'ip', ['-6', 'addr', 'add', 'fd00:90::99/128', 'dev', 'eth0', 'nodad']);
    try {
      expect(await tcp(g1, g2.ip6 ?? '', 443, { localAddress: 'fd00:90::99' })).toBe('timeout');
      expect(await tcp(g1, g2.ip6 ?? '', 443, { timeoutMs: ALLOWED_MS })).toBe('connected');
    } finally {
      await topo.exec(g1.netns, 'ip', ['-6', 'addr', 'del', 'fd00:90::99/128', 'dev', 'eth0']);
    }
    // MAC spoofing: right IP, wrong MAC.
    await topo.exec(g1.netns, 'ip', ['link', 'set', 'eth0', 'address', 'fa:16:3e:00:00:99']);
    try {
      expect(await tcp(g1, g2.ip, 443)).toBe('timeout');
    } finally {
      await topo.exec(g1.netns, 'ip', ['link', 'set', 'eth0', 'address', g1.mac]);
    }
    expect(await tcp(g1, g2.ip, 443, { timeoutMs: ALLOWED_MS })).toBe('connected');
  });

  it('port security: ARP with a sender address that is not the port’s is filtered', async () => {
    await apply([port(g1, ['open']), port(g2, ['open'])]);
    const arp = portCounterNames(g1.portId).arp;
    const arping = async (src: string) => {
      try {
        await topo.exec(g1.netns, 'busybox', [
          'arping',
          '-f',
          '-c',
          '1',
          '-w',
          '1',
          '-I',
          'eth0',
          '-s',
          src,
          '10.90.0.1',
        ]);
        return true;
      } catch {
        return false;
      }
    };
    // The guest's own address gets the router's answer.
    expect(await arping(g1.ip)).toBe(true);
    const before = await counter(arp, 'arp');
    // Claiming g2's address: dropped before the host's neighbour table sees it, so no answer and no entry.
    await topo.exec(g1.netns, 'sysctl', ['-q', '-w', 'net.ipv4.ip_nonlocal_bind=1']);
    expect(await arping(g2.ip)).toBe(false);
    expect(await counter(arp, 'arp')).toBeGreaterThan(before);
    const neigh = await topo.exec(topo.hv, 'ip', ['neigh', 'show', 'dev', g1.device]);
    expect(neigh).not.toContain(g2.ip);
  });

  it('port security: a guest acting as DHCP server is blocked', async () => {
    await apply([port(g1, ['open']), port(g2, ['open'])]);
    await g2.agent.call('listenUdp', { port: 68 });
    const spoofBefore = await counter(portCounterNames(g1.portId).spoof);
    // Control: the same datagram from an ordinary source port arrives.
    await g1.agent.call('sendUdp', { host: g2.ip, port: 68, localPort: 6767, data: 'not-dhcp' });
    // A DHCP OFFER comes from server port 67.
    await g1.agent.call('sendUdp', { host: g2.ip, port: 68, localPort: 67, data: 'rogue-offer' });
    await new Promise((r) => setTimeout(r, 300));
    const got = (await g2.agent.call('udpInbox', { port: 68 })).messages as { data: string }[];
    expect(got.map((m) => m.data)).toEqual(['not-dhcp']);
    expect(await counter(portCounterNames(g1.portId).spoof)).toBe(spoofBefore + 1);
  });

  it('zones: cross-zone traffic is dropped even with allow-all groups, unless the zone policy allows it', async () => {
    const ports = [
      port(g1, ['open'], { zone: 'dmz' }),
      port(g2, ['open'], { zone: 'internal' }),
      port(g4, ['open'], { zone: 'dmz' }),
    ];
    await apply(ports);
    expect(await tcp(g1, g2.ip, 443)).toBe('timeout');
    expect(await tcp(g2, g1.ip, 443)).toBe('timeout');
    expect(await topo.ping('g1', g2.ip)).toBe(false);
    expect(await counter(portCounterNames(g2.portId).zone)).toBeGreaterThan(0);
    // Same zone still talks.
    expect(await tcp(g1, g4.ip, 443, { timeoutMs: ALLOWED_MS })).toBe('connected');
    // internal accepts connections from dmz; replies flow, but internal still cannot open to dmz.
    await apply(ports, { zones: [{ name: 'internal', allowFrom: ['dmz'] }] });
    const c = await g1.agent.call('connect', { host: g2.ip, port: 443, timeoutMs: ALLOWED_MS, keep: true });
    expect(c.result).toBe('connected');
    expect(
      (await g1.agent.call('echo', { sid: c.sid, data: 'cross-zone', timeoutMs: ALLOWED_MS })).result,
    ).toBe('echo');
    expect(await tcp(g2, g1.ip, 443)).toBe('timeout');
  });

  it('quarantine cuts every flow of a port at once, established ones included', async () => {
    const ports = [port(g1, ['open']), port(g2, ['open'])];
    await apply(ports);
    const c = await g2.agent.call('connect', { host: g1.ip, port: 443, timeoutMs: ALLOWED_MS, keep: true });
    expect(c.result).toBe('connected');
    expect((await g2.agent.call('echo', { sid: c.sid, data: 'before', timeoutMs: ALLOWED_MS })).result).toBe(
      'echo',
    );
    // Incremental: one set element, no rebuild, does not depend on the guest.
    await applyCommands(compileQuarantine(TABLE, [g1.device], true), { netns: topo.hv });
    expect((await g2.agent.call('echo', { sid: c.sid, data: 'after', timeoutMs: BLOCKED_MS })).result).toBe(
      'timeout',
    );
    expect(await tcp(g2, g1.ip, 443)).toBe('timeout');
    expect(await tcp(g1, g2.ip, 443)).toBe('timeout');
    expect(await topo.ping('g1', g2.ip)).toBe(false);
    expect(await counter('quarantine')).toBeGreaterThan(0);
    // A full apply with the flag persisted keeps it; releasing restores traffic.
    await apply([port(g1, ['open'], { quarantined: true }), port(g2, ['open'])]);
    expect(await tcp(g2, g1.ip, 443)).toBe('timeout');
    await apply(ports);
    expect(await tcp(g2, g1.ip, 443, { timeoutMs: ALLOWED_MS })).toBe('connected');
  });

  it('re-applying is atomic: 20 replacements under a ping flow lose nothing and the table never vanishes', async () => {
    const a = [port(g1, ['open']), port(g2, ['open'])];
    const b = [port(g1, ['open', 'web']), port(g2, ['open'])];
    const ingress = portCounterNames(g1.portId).ingress;
    // Give g1's ingress drop counter something to keep across the re-applies.
    await apply([port(g1, ['default']), port(g2, ['open'])]);
    await tcp(g2, g1.ip, 443);
    await apply(a);
    const kept = await counter(ingress);
    expect(kept).toBeGreaterThan(0);
    const count = 300;
    const flow = topo.exec(
      g2.netns,
      'ping',
      ['-n', '-q', '-i', '0.01', '-c', String(count), '-W', '1', g1.ip],
      30_000,
    );
    let watching = true;
    let missing = 0;
    let looks = 0;
    const watcher = (async () => {
      while (watching) {
        const tables = await listTables({ netns: topo.hv });
        looks++;
        if (!tables.some((t) => t.name === TABLE && t.family === 'inet')) missing++;
      }
    })();
    try {
      for (let i = 0; i < 20; i++) await apply(i % 2 === 0 ? a : b);
    } finally {
      watching = false;
      await watcher;
    }
    const out = await flow;
    const m = /(\d+) packets transmitted, (\d+) received/.exec(out);
    expect(m?.[1]).toBe(String(count));
    expect(m?.[2]).toBe(String(count));
    expect(looks).toBeGreaterThan(0);
    expect(missing).toBe(0);
    // Counters survive re-applies.
    expect(await counter(ingress)).toBeGreaterThanOrEqual(kept);
  });

  it('an unknown tap-named device is dropped until it is a port (fail closed)', async () => {
    await apply([port(g2, ['open'])]);
    // g1's device is not in the ruleset now.
    expect(await tcp(g1, g2.ip, 443)).toBe('timeout');
    expect(await counter('unknown_device')).toBeGreaterThan(0);
  });
});
