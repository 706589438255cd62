import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyRuleset, deleteTables, readCounters } from '../../src/host/net/nft.js';
import {
  compileRuleset,
  GLOBAL_COUNTERS,
  type GroupState,
  type PortState,
  portCounterNames,
  type ZonePolicy,
} from '../../src/network/compile.js';
import { loadDataplaneState } from '../../src/network/dataplane-state.js';
import { normaliseRule } from '../../src/network/model.js';
import { NetworkService } from '../../src/network/networks.js';
import { SecurityGroupService } from '../../src/network/security-groups.js';
import { ZoneService } from '../../src/network/zones.js';
import type { AuthContext } from '../../src/policy/context.js';
import { openStore, type Store } from '../../src/store/database.js';
import { type TestDb, testDb } from '../helpers/store.js';
import { Agent, type Guest, hasTools, isRoot, Topology } from './topology.js';

/**
 * Security zones with real packets. Every guest's groups allow everything
 * both ways, so whatever is dropped here is dropped by the zone policy:
 * dmz may reach internal on tcp/443 only; internal may not open anything to
 * dmz; untrusted reaches only its own zone, and the host for DHCP only.
 */

const TABLE = 'bwzones';
const BLOCKED_MS = 400;
const ALLOWED_MS = 3000;

const OPEN: GroupState = {
  id: 'open',
  stateful: true,
  rules: [
    { direction: 'egress', ethertype: 'IPv4' },
    { direction: 'egress', ethertype: 'IPv6' },
    { direction: 'ingress', ethertype: 'IPv4' },
    { direction: 'ingress', ethertype: 'IPv6' },
  ].map((r) => normaliseRule(r)),
};
const STATELESS_OPEN: GroupState = { ...OPEN, id: 'open-sl', stateful: false };

const POLICY: ZonePolicy[] = [
  { name: 'internal', rules: [{ from: 'dmz', protocol: 'tcp', portMin: 443, portMax: 443 }] },
  { name: 'dmz' },
  { name: 'untrusted', hostAccess: false },
];

const canRun = isRoot() && hasTools();

describe.skipIf(!canRun)('security zones with real traffic (netns)', () => {
  let topo: Topology;
  let host: Agent;
  let d1: Guest;
  let d2: Guest;
  let i1: Guest;
  let u1: Guest;
  let u2: Guest;
  let sd: Guest;
  let si: Guest;
  const GW = '10.92.0.1';

  beforeAll(async () => {
    topo = await Topology.create([GW, '10.94.0.1', '10.95.0.1']);
    const mk = (label: string, n: number, ip6 = false) =>
      topo.addGuest(label, {
        ip: `10.92.0.${n}`,
        prefixLen: 24,
        gateway: GW,
        mac: `fa:16:3e:00:92:${n.toString(16).padStart(2, '0')}`,
        ...(ip6 ? { ip6: `fd00:92::${n}` } : {}),
      });
    d1 = await mk('d1', 11, true);
    d2 = await mk('d2', 12);
    i1 = await mk('i1', 21, true);
    u1 = await mk('u1', 31);
    u2 = await mk('u2', 32);
    // For the store-driven test: one guest on a dmz network, one on an internal network.
    sd = await topo.addGuest('sd', {
      ip: '10.94.0.11',
      prefixLen: 24,
      gateway: '10.94.0.1',
      mac: 'fa:16:3e:00:94:11',
    });
    si = await topo.addGuest('si', {
      ip: '10.95.0.11',
      prefixLen: 24,
      gateway: '10.95.0.1',
      mac: 'fa:16:3e:00:95:11',
    });
    for (const g of [d1, d2, i1, u1, u2, sd, si])
      for (const p of [22, 443]) await g.agent.call('listenTcp', { port: p });
    // The "host": services on the hypervisor namespace (DNS over TCP, and a DHCP server socket).
    host = await Agent.start(topo.hv);
    await host.call('listenTcp', { port: 53, host: GW });
    await host.call('listenUdp', { port: 67 });
  });

  afterAll(async () => {
    host?.stop();
    if (topo) await deleteTables(TABLE, { netns: topo.hv }).catch(() => {});
    await topo?.destroy();
  });

  const port = (g: Guest, zone: string, groups = ['open']): PortState => ({
    id: g.portId,
    device: g.device,
    mac: g.mac,
    ips: [g.ip, ...(g.ip6 ? [g.ip6] : [])],
    allowedAddressPairs: [],
    portSecurity: true,
    groupIds: groups,
    zone,
  });
  const ports = () => [
    port(d1, 'dmz'),
    port(d2, 'dmz'),
    port(i1, 'internal'),
    port(u1, 'untrusted'),
    port(u2, 'untrusted'),
  ];
  // The host offers guests no TCP/UDP service by default; open DNS here so host access has something to reach.
  const hostServices = { tcp: [53], udp: [], icmpEcho: true };
  const apply = (ps: PortState[], zones: ZonePolicy[] = POLICY) =>
    applyRuleset(
      compileRuleset({ table: TABLE, ports: ps, groups: [OPEN, STATELESS_OPEN], zones, hostServices }),
      {
        netns: topo.hv,
      },
    );
  const tcp = async (from: Guest, to: string, p: number, timeoutMs = BLOCKED_MS) =>
    (await from.agent.call('connect', { host: to, port: p, timeoutMs })).result;
  const counter = async (name: string) =>
    (await readCounters(TABLE, { netns: topo.hv })).find((c) => c.name === name && c.family === 'inet')
      ?.packets ?? -1;

  it('dmz reaches internal on tcp/443 only, with replies; internal cannot open anything to dmz', async () => {
    await apply(ports());
    // Refusals first: other port, other protocol, and the other direction.
    expect(await tcp(d1, i1.ip, 22)).toBe('timeout');
    expect(await topo.ping('d1', i1.ip)).toBe(false);
    expect(await tcp(i1, d1.ip, 443)).toBe('timeout');
    expect(await tcp(i1, d1.ip, 22)).toBe('timeout');
    expect(await topo.ping('i1', d1.ip)).toBe(false);
    expect(await counter(portCounterNames(i1.portId).zone)).toBeGreaterThan(0);
    expect(await counter(portCounterNames(d1.portId).zone)).toBeGreaterThan(0);
    // The allowed connection, both directions of its data.
    const c = await d1.agent.call('connect', { host: i1.ip, port: 443, timeoutMs: ALLOWED_MS, keep: true });
    expect(c.result).toBe('connected');
    expect(
      (await d1.agent.call('echo', { sid: c.sid, data: 'dmz->internal', timeoutMs: ALLOWED_MS })).result,
    ).toBe('echo');
    // IPv6 follows the same policy.
    expect(await tcp(d1, i1.ip6 as string, 443, ALLOWED_MS)).toBe('connected');
    expect(await tcp(d1, i1.ip6 as string, 22)).toBe('timeout');
    expect(await tcp(i1, d1.ip6 as string, 443)).toBe('timeout');
  });

  it('inside a zone only security groups decide', async () => {
    await apply(ports());
    expect(await tcp(d1, d2.ip, 22, ALLOWED_MS)).toBe('connected');
    expect(await tcp(d2, d1.ip, 443, ALLOWED_MS)).toBe('connected');
    expect(await topo.ping('d2', d1.ip)).toBe(true);
    expect(await tcp(u1, u2.ip, 22, ALLOWED_MS)).toBe('connected');
    // ...and a group that allows nothing still wins inside the zone.
    await apply([...ports().filter((p) => p.id !== d2.portId), port(d2, 'dmz', [])]);
    expect(await tcp(d1, d2.ip, 22)).toBe('timeout');
  });

  it('untrusted reaches nothing but its own zone, in neither direction', async () => {
    await apply(ports());
    for (const [from, to] of [
      [u1, d1],
      [u1, i1],
      [d1, u1],
      [i1, u1],
    ] as const) {
      expect(await tcp(from, to.ip, 443)).toBe('timeout');
      expect(await topo.ping(from.label, to.ip)).toBe(false);
    }
    expect(await counter(portCounterNames(u1.portId).zone)).toBeGreaterThan(0);
  });

  it('untrusted never reaches the host, except DHCP; zones with host access do', async () => {
    await apply(ports());
    // Control: a zone with host access reaches the host's DNS and ping.
    expect(await tcp(i1, GW, 53, ALLOWED_MS)).toBe('connected');
    expect(await topo.ping('i1', GW)).toBe(true);
    const before = await counter(GLOBAL_COUNTERS.hostInput);
    expect(await tcp(u1, GW, 53)).toBe('timeout');
    expect(await topo.ping('u1', GW)).toBe(false);
    expect(await counter(GLOBAL_COUNTERS.hostInput)).toBeGreaterThan(before);
    // DHCP (client port 68 to server port 67) still arrives; the same datagram from another port does not.
    await u1.agent.call('sendUdp', { host: GW, port: 67, localPort: 68, data: 'dhcp-from-untrusted' });
    await u1.agent.call('sendUdp', { host: GW, port: 67, localPort: 5555, data: 'not-dhcp' });
    await new Promise((r) => setTimeout(r, 300));
    const inbox = (await host.call('udpInbox', { port: 67 })).messages as { data: string; from: string }[];
    expect(inbox.filter((m) => m.from === u1.ip).map((m) => m.data)).toEqual(['dhcp-from-untrusted']);
  });

  it('stateless ports: the policy holds both ways without conntrack', async () => {
    await apply([port(d1, 'dmz', ['open-sl']), port(i1, 'internal', ['open-sl']), port(u1, 'untrusted')]);
    expect(await tcp(d1, i1.ip, 443, ALLOWED_MS)).toBe('connected');
    expect(await tcp(d1, i1.ip, 22)).toBe('timeout');
    expect(await tcp(i1, d1.ip, 443)).toBe('timeout');
    expect(await tcp(i1, d1.ip, 22)).toBe('timeout');
  });

  it('a policy change takes effect at once, established flows included', async () => {
    await apply(ports());
    const c = await d1.agent.call('connect', { host: i1.ip, port: 443, timeoutMs: ALLOWED_MS, keep: true });
    expect(c.result).toBe('connected');
    // Remove the allow: the open connection is cut (zone checks come before "established").
    await apply(ports(), [{ name: 'internal' }, { name: 'untrusted', hostAccess: false }]);
    expect((await d1.agent.call('echo', { sid: c.sid, data: 'after', timeoutMs: BLOCKED_MS })).result).toBe(
      'timeout',
    );
    expect(await tcp(d1, i1.ip, 443)).toBe('timeout');
    // Allow all of dmz → internal: now port 22 too, but still not the other way.
    await apply(ports(), [{ name: 'internal', rules: [{ from: 'dmz', protocol: 'any' }] }]);
    expect(await tcp(d1, i1.ip, 22, ALLOWED_MS)).toBe('connected');
    expect(await topo.ping('d1', i1.ip)).toBe(true);
    expect(await tcp(i1, d1.ip, 22)).toBe('timeout');
  });

  it('from the store: zone changes made through ZoneService reach the host at once', async () => {
    let db: TestDb | undefined;
    let store: Store | undefined;
    try {
      db = await testDb('sqlite');
      const st = await openStore({ url: db.url });
      store = st;
      // Store port id -> the guest's host-side device (tests cannot choose Neutron's port ids).
      const devices = new Map<string, string>();
      const sync = {
        reasons: [] as string[],
        async sync(reason: string) {
          sync.reasons.push(reason);
          const state = await loadDataplaneState(st, { isLocal: (p) => devices.has(p.id) });
          const ports = state.ports.flatMap((p) => {
            const device = devices.get(p.id);
            // Network isolation is another test's subject: zones alone decide here.
            const { network: _n, ...rest } = p as PortState & { network?: string };
            return device ? [{ ...rest, device }] : [];
          });
          await applyRuleset(compileRuleset({ table: TABLE, ...state, ports, hostServices }), {
            netns: topo.hv,
          });
        },
      };
      const admin: AuthContext = {
        userId: 'u',
        userName: 'admin',
        userDomainId: 'default',
        projectId: 'p-zones',
        projectName: 'zones',
        projectDomainId: 'default',
        roles: ['admin'],
        isAdmin: true,
        methods: ['password'],
        tokenHash: '',
        auditId: '',
        issuedAt: '',
        expiresAt: '',
      };
      const zones = new ZoneService(st, sync);
      const networks = new NetworkService(st, sync);
      const groups = new SecurityGroupService(st, sync, { defaultAllowsSameGroup: false });
      await zones.create({ name: 'dmz' });
      await zones.create({ name: 'internal' });
      const open = await groups.create(admin, { name: 'open' });
      await groups.createRule(admin, open.id, { direction: 'ingress', ethertype: 'IPv4' });
      const resolve = (ids: string[] | undefined) => groups.resolveForPort(admin, ids);
      for (const [g, zone, cidr] of [
        [sd, 'dmz', '10.94.0.0/24'],
        [si, 'internal', '10.95.0.0/24'],
      ] as const) {
        const net = await networks.createNetwork(admin, { name: `${zone}-net`, zone });
        const sub = await networks.createSubnet(admin, { name: '', networkId: net.id, ipVersion: 4, cidr });
        const p = await networks.createPort(
          admin,
          {
            networkId: net.id,
            fixedIps: [{ subnetId: sub.id, ipAddress: g.ip }],
            macAddress: g.mac,
            securityGroupIds: [open.id],
          },
          resolve,
        );
        devices.set(p.id, g.device);
      }
      await sync.sync('start');
      // Two zones, no rule: nothing crosses either way.
      expect(await tcp(sd, si.ip, 443)).toBe('timeout');
      expect(await tcp(si, sd.ip, 443)).toBe('timeout');
      const rule = await zones.addRule({
        fromZone: 'dmz',
        toZone: 'internal',
        protocol: 'tcp',
        portMin: 443,
        portMax: 443,
      });
      expect(sync.reasons.at(-1)).toMatch(/zone rule .* created/);
      expect(await tcp(sd, si.ip, 443, ALLOWED_MS)).toBe('connected');
      expect(await tcp(sd, si.ip, 22)).toBe('timeout');
      expect(await tcp(si, sd.ip, 443)).toBe('timeout');
      await zones.removeRule(rule.id);
      expect(await tcp(sd, si.ip, 443)).toBe('timeout');
      // Host access off: the host's DNS goes dark for the dmz guest at once.
      expect(await tcp(sd, '10.94.0.1', 53, ALLOWED_MS)).toBe('refused');
      await zones.update('dmz', { hostAccess: false });
      expect(await tcp(sd, '10.94.0.1', 53)).toBe('timeout');
    } finally {
      await store?.close();
      await db?.drop();
    }
  });
});
