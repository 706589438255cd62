import { badRequest } from '../errors.js';
import { normaliseMac, type Prefix, parseIp, parsePrefix } from './addr.js';
import { addrSetDecl } from './compile-incremental.js';
import {
  DEVICE_NAME,
  GLOBAL_COUNTERS,
  keyOf,
  names,
  portCounterNames,
  TABLE_NAME,
} from './dataplane-names.js';
import { assertGroupsCompatible, MAX_ADDRESS_PAIRS, normaliseRule, type Rule, ZONE_NAME } from './model.js';
import {
  accept,
  and,
  concat,
  ct,
  drop,
  jump,
  match,
  meta,
  type NftChain,
  type NftCommand,
  type NftFamily,
  type NftRuleset,
  type NftStmt,
  namedCounter,
  notrack,
  payload,
  ref,
  ret,
  set,
  setMark,
  vmap,
} from './nft-json.js';
import {
  compileArpPort,
  compilePortSecurity,
  type PsSet,
  portSecuritySets,
  type SecuredPort,
  type Src,
  setOrOne,
} from './port-security.js';
import { egressJumps, type GroupObjects, groupDeclarations, groupObjects, ingressJumps } from './sg-sets.js';
import { type NormalZoneAllow, normaliseZoneAllow, type ZoneAllow, zoneSetElements } from './zone-sets.js';

export { addrSetDecl, compileGroupMembers, compileQuarantine } from './compile-incremental.js';
export { GLOBAL_COUNTERS, names, type PortCounterNames, portCounterNames } from './dataplane-names.js';
export type { ZoneAllow } from './zone-sets.js';

/**
 * The security-group compiler: desired state in, one nftables JSON batch out.
 * Pure: no I/O, deterministic for equal input. The layout is described in
 * docs/network.md; in short, every VM port is its own routed tap (no shared
 * bridge), so `iifname`/`oifname` name the VM and conntrack works in one
 * `inet` table, with an `arp` table of the same name for ARP filtering.
 */

/** A VM port as the dataplane sees it. */
export interface PortState {
  id: string;
  /** Host-side interface of the port: the VM's tap (or a veth end in tests). */
  device: string;
  mac: string;
  /** Fixed IPs, IPv4 and IPv6. */
  ips: string[];
  /** Extra (IP or CIDR, MAC) the guest may send from; the MAC defaults to the port's. At most 10. */
  allowedAddressPairs: { ip: string; mac?: string }[];
  portSecurity: boolean;
  groupIds: string[];
  /** Security zone (the network's); `default` when absent. */
  zone?: string;
  /** Incident response: every packet to or from the port is dropped. */
  quarantined?: boolean;
  /**
   * Neutron network id. Ports of different networks cannot reach each other
   * unless a router has subnets of both (see `RouterState`).
   */
  network?: string;
}

/** A Neutron router as the dataplane sees it: which networks it joins, and whether it has an external gateway. */
export interface RouterState {
  id: string;
  /** Networks with a subnet attached to the router: their ports may reach each other. */
  networks: string[];
  /**
   * Set when the router has an external gateway: the IPv4 CIDRs of its attached
   * subnets, masqueraded out of the uplink. Ports of its networks may send out of the uplink.
   */
  snat?: string[];
}

export interface GroupState {
  id: string;
  stateful: boolean;
  rules: Rule[];
  /** Addresses of members that are not ports of this ruleset (ports on other hosts). */
  remoteMembers?: string[];
}

export interface ZonePolicy {
  name: string;
  /** Zones whose ports may open any connection to this zone's ports; other zones are refused. */
  allowFrom?: string[];
  /** Narrower allows: connections from a zone with one protocol and destination port range (zone-sets.ts). */
  rules?: ZoneAllow[];
  /**
   * Whether the zone's ports may reach the host's services (DNS, ICMP echo, …). Without it a
   * port reaches the host for DHCP/DHCPv6 and IPv6 neighbour discovery only. Default true.
   */
  hostAccess?: boolean;
}

/** What guests may reach on the host itself, beyond DHCP and IPv6 neighbour discovery. */
export interface HostServices {
  tcp: number[];
  udp: number[];
  icmpEcho: boolean;
}

export interface CompileInput {
  /** Table name, used for both the `inet` and the `arp` table. */
  table: string;
  ports: PortState[];
  groups: GroupState[];
  zones?: ZonePolicy[];
  /**
   * Interface name prefixes that belong to VMs. A device with such a prefix
   * that is not a known port is dropped (fail closed while a VM is being plugged).
   */
  devicePrefixes?: string[];
  hostServices?: HostServices;
  /** Routers joining networks (network isolation, SNAT). */
  routers?: RouterState[];
  /** The host's uplink device (`--uplink-device`): external-gateway routers SNAT out of it. */
  uplink?: string;
}

// Deny by default: nothing on the host answers guests but DHCP (dnsmasq runs with port=0, no DNS) and ping.
export const DEFAULT_HOST_SERVICES: HostServices = { tcp: [], udp: [], icmpEcho: true };

/** Bits of the packet mark that carry the source port's zone between its egress and the peer's ingress chain. */
export const ZONE_MARK_MASK = 0x0fff0000;
const ZONE_SHIFT = 16;
const MAX_ZONES = ZONE_MARK_MASK >>> ZONE_SHIFT;

/** Bits of the packet mark that carry the source port's network index (1..65535) to the peer's ingress chain. */
export const NETWORK_MARK_MASK = 0x0000ffff;
/** Counter of packets a port's ingress refused because they came from an unconnected network. */
export const networkCounterName = (portId: string) => `p_${keyOf(portId)}_net`;
/** Counter of guest packets refused on their way out of the host (no router with an external gateway). */
export const NO_ROUTE_OUT_COUNTER = 'no_route_out';

/** nftables priorities (nft(8), "BASE CHAIN PRIORITY"). */
const PRIO_RAW = -300;
const PRIO_FILTER = 0;
const PRIO_SRCNAT = 100;

// ---- validation -------------------------------------------------------------------

const PREFIX = /^[A-Za-z0-9_-]{1,14}$/;

interface Port extends SecuredPort {
  key: string;
  groupIds: string[];
  device: string;
  mac: string;
  mode: 'stateful' | 'stateless' | 'open';
  zone: string;
  quarantined: boolean;
  network: string;
}

function fail(message: string): never {
  throw badRequest(message);
}

function validatePorts(input: CompileInput, groups: Map<string, GroupState>): Port[] {
  const byKey = new Map<string, string>();
  const devices = new Set<string>();
  return input.ports.map((p) => {
    if (typeof p.id !== 'string' || keyOf(p.id) === '') fail(`Port id '${String(p.id)}' is not usable.`);
    const key = keyOf(p.id);
    const clash = byKey.get(key);
    if (clash !== undefined) fail(`Port ids '${clash}' and '${p.id}' map to the same nftables name.`);
    byKey.set(key, p.id);
    if (!DEVICE_NAME.test(p.device))
      fail(`Port ${p.id}: device '${p.device}' is not a valid interface name (≤ 15 of A-Z a-z 0-9 _ -).`);
    if (devices.has(p.device)) fail(`Device ${p.device} is used by two ports.`);
    devices.add(p.device);
    const mac = normaliseMac(p.mac, `Port ${p.id} MAC`);
    const fixed = p.ips.map((ip) => parseIp(ip, `Port ${p.id} IP`));
    if (p.allowedAddressPairs.length > MAX_ADDRESS_PAIRS)
      fail(`Port ${p.id} has more than ${MAX_ADDRESS_PAIRS} allowed address pairs.`);
    const srcs: Src[] = [
      ...fixed.map((a) => ({ mac, p: parsePrefix(a.text) })),
      ...p.allowedAddressPairs.map((pair) => ({
        mac: pair.mac === undefined ? mac : normaliseMac(pair.mac, `Port ${p.id} address pair MAC`),
        p: parsePrefix(pair.ip, `Port ${p.id} address pair`),
      })),
    ];
    const gs = p.groupIds.map(
      (id) => groups.get(id) ?? fail(`Port ${p.id} refers to unknown security group ${id}.`),
    );
    if (!p.portSecurity && gs.length > 0)
      fail(`Port ${p.id} has security groups but port security is disabled; remove the groups first.`);
    assertGroupsCompatible(gs);
    const zone = p.zone ?? 'default';
    if (!ZONE_NAME.test(zone)) fail(`Port ${p.id}: zone '${zone}' is not a valid zone name.`);
    return {
      id: p.id,
      key,
      groupIds: [...p.groupIds],
      device: p.device,
      mac,
      macs: [...new Set(srcs.map((s) => s.mac).concat(mac))].sort(),
      v4: srcs.filter((s) => s.p.version === 4),
      v6: srcs.filter((s) => s.p.version === 6),
      mode: !p.portSecurity
        ? 'open'
        : gs.length > 0 && gs.every((g) => !g.stateful)
          ? 'stateless'
          : 'stateful',
      zone,
      quarantined: p.quarantined === true,
      network: p.network ?? '',
    };
  });
}

function validateGroups(groups: readonly GroupState[]): Map<string, GroupState> {
  const out = new Map<string, GroupState>();
  const keys = new Map<string, string>();
  for (const g of groups) {
    const key = keyOf(g.id);
    if (key === '') fail(`Security group id '${g.id}' is not usable.`);
    const clash = keys.get(key);
    if (clash !== undefined)
      fail(`Security group ids '${clash}' and '${g.id}' map to the same nftables name.`);
    keys.set(key, g.id);
    // Re-normalising is cheap and keeps a hand-built Rule from smuggling anything odd into nft.
    const rules = g.rules.map((r) =>
      normaliseRule({
        direction: r.direction,
        ethertype: r.ethertype,
        protocol: r.protocol,
        port_range_min: r.portRangeMin,
        port_range_max: r.portRangeMax,
        remote_ip_prefix: r.remoteIpPrefix,
        remote_group_id: r.remoteGroupId,
      }),
    );
    for (const m of g.remoteMembers ?? []) parsePrefix(m, `Security group ${g.id} remote member`);
    out.set(g.id, { ...g, rules });
  }
  return out;
}

const ICMPV6_ND_FROM_GUEST = [
  'nd-router-solicit',
  'nd-neighbor-solicit',
  'nd-neighbor-advert',
  'mld-listener-report',
  'mld2-listener-report',
  'mld-listener-done',
];
const ICMPV6_ND_TO_GUEST = [
  'nd-router-advert',
  'nd-neighbor-solicit',
  'nd-neighbor-advert',
  'mld-listener-query',
];

// ---- the compiler ------------------------------------------------------------------

/**
 * Compiles the desired state into one nftables batch (`add` commands for an
 * `inet` and an `arp` table named `input.table`). Apply it with
 * `host/net/nft.ts#applyRuleset`, which replaces both tables atomically.
 * Throws 400 (or 409 for mixed stateful/stateless groups) on invalid state.
 */
export function compileRuleset(input: CompileInput): NftRuleset {
  if (!TABLE_NAME.test(input.table)) fail(`Table name '${input.table}' must match ${TABLE_NAME.source}.`);
  const prefixes = input.devicePrefixes ?? ['tap'];
  for (const p of prefixes) if (!PREFIX.test(p)) fail(`Device prefix '${p}' is not valid.`);
  const services = input.hostServices ?? DEFAULT_HOST_SERVICES;
  for (const port of [...services.tcp, ...services.udp])
    if (!Number.isInteger(port) || port < 1 || port > 65535)
      fail(`Host service port ${port} is not 1-65535.`);
  const groups = validateGroups(input.groups);
  const ports = validatePorts(input, groups);

  // Zones: number them 1..n by name (0 = "not from a port"); policies may name zones no port uses yet.
  const policies = new Map<string, { allows: NormalZoneAllow[]; hostAccess: boolean }>();
  for (const z of input.zones ?? []) {
    if (!ZONE_NAME.test(z.name)) fail(`Zone '${z.name}' is not a valid zone name.`);
    if (policies.has(z.name)) fail(`Zone ${z.name} has two policies.`);
    const allows = [
      ...(z.allowFrom ?? []).map((from) => normaliseZoneAllow({ from, protocol: 'any' })),
      ...(z.rules ?? []).map(normaliseZoneAllow),
    ];
    policies.set(z.name, { allows, hostAccess: z.hostAccess !== false });
  }
  const zoneNames = [
    ...new Set([
      ...ports.map((p) => p.zone),
      ...policies.keys(),
      ...[...policies.values()].flatMap((p) => p.allows.map((a) => a.from)),
    ]),
  ].sort();
  if (zoneNames.length > MAX_ZONES) fail(`At most ${MAX_ZONES} security zones.`);
  const zoneIndex = new Map(zoneNames.map((z, i) => [z, i + 1]));
  const zoneMark = (z: string) => (zoneIndex.get(z) ?? 0) << ZONE_SHIFT;
  const zonesInUse = new Set(ports.map((p) => p.zone)).size > 1;
  /**
   * Per receiving zone, two `mark . l4proto . port` sets: `in` (who may open connections to it, keyed
   * by destination port) and `reply` (whose replies it takes, keyed by source port: connections it
   * was allowed to open). Own zone: everything (within a zone only security groups decide).
   */
  const zoneSetNames = (z: string) => ({
    in: `zone_in_${zoneIndex.get(z)}`,
    reply: `zone_reply_${zoneIndex.get(z)}`,
  });
  const zoneSetElems = (z: string) => {
    const own = { mark: zoneMark(z), protocol: 'any', portMin: null, portMax: null };
    const towards = [...policies].flatMap(([to, p]) =>
      p.allows.filter((a) => a.from === z).map((a) => ({ ...a, mark: zoneMark(to) })),
    );
    return {
      in: zoneSetElements([
        own,
        ...(policies.get(z)?.allows ?? []).map((a) => ({ ...a, mark: zoneMark(a.from) })),
      ]),
      reply: zoneSetElements([own, ...towards]),
    };
  };
  /** Ports whose zone may not reach the host (DHCP and neighbour discovery only). */
  const noHostAccess = ports.filter((p) => policies.get(p.zone)?.hostAccess === false).map((p) => p.device);
  const net = compileNetworks(input, ports);

  const t = input.table;
  const cmds: NftCommand[] = [];
  const add = (o: NftCommand) => cmds.push(o);
  const rule = (family: NftFamily, chain: string, expr: NftStmt[]) =>
    add({ add: { rule: { family, table: t, chain, expr } } });
  const chain = (family: NftFamily, name: string, base?: Required<Pick<NftChain, 'hook' | 'prio'>>) =>
    add({
      add: {
        chain: base
          ? { family, table: t, name, type: 'filter', hook: base.hook, prio: base.prio, policy: 'accept' }
          : { family, table: t, name },
      },
    });
  const counter = (family: NftFamily, name: string) => add({ add: { counter: { family, table: t, name } } });
  const ifnameSet = (family: NftFamily, name: string, members: readonly string[]) =>
    add({
      add: {
        set: {
          family,
          table: t,
          name,
          type: 'ifname',
          ...(members.length ? { elem: [...members].sort() } : {}),
        },
      },
    });
  const addrSet = (name: string, family: 4 | 6, members: readonly Prefix[]) =>
    add(addrSetDecl(t, name, family, members));
  const dispatchMap = (family: NftFamily, name: string, entries: [string, string][]) =>
    add({
      add: {
        map: {
          family,
          table: t,
          name,
          type: 'ifname',
          map: 'verdict',
          ...(entries.length
            ? { elem: entries.map(([dev, target]) => [dev, jump(target)] as [string, NftStmt]) }
            : {}),
        },
      },
    });
  /** The first rules of every base chain: a quarantined device, then an unknown VM-like one, is dropped. */
  const guard = (family: NftFamily, chainName: string, key: 'iifname' | 'oifname') => {
    rule(family, chainName, [
      match(meta(key), ref(names.quarantineSet)),
      namedCounter(GLOBAL_COUNTERS.quarantine),
      drop,
    ]);
    for (const p of prefixes)
      rule(family, chainName, [
        match(meta(key), `${p}*`),
        match(meta(key), ref(names.portsSet), '!='),
        namedCounter(GLOBAL_COUNTERS.unknownDevice),
        drop,
      ]);
  };

  const allDevices = ports.map((p) => p.device);
  const quarantined = ports.filter((p) => p.quarantined).map((p) => p.device);
  const secured = ports.filter((p) => p.mode !== 'open');
  const stateless = ports.filter((p) => p.mode === 'stateless');
  const stateful = ports.filter((p) => p.mode === 'stateful');

  // ================= inet table =================
  add({ add: { table: { family: 'inet', name: t } } });
  for (const c of Object.values(GLOBAL_COUNTERS)) counter('inet', c);
  for (const p of ports) {
    const c = portCounterNames(p.id);
    for (const n of [c.ingress, c.egress, c.spoof, c.zone]) counter('inet', n);
    if (net.on) counter('inet', networkCounterName(p.id));
  }
  ifnameSet('inet', names.portsSet, allDevices);
  ifnameSet('inet', names.quarantineSet, quarantined);
  const psSets = portSecuritySets(secured);
  const psSet = (family: NftFamily, s: PsSet) =>
    add({
      add: {
        set: {
          family,
          table: t,
          name: s.name,
          type: s.type,
          ...(s.interval ? { flags: ['interval' as const] } : {}),
          ...(s.elem.length ? { elem: s.elem } : {}),
        },
      },
    });
  for (const s of psSets.inet) psSet('inet', s);
  if (noHostAccess.length > 0) ifnameSet('inet', 'zone_no_host', noHostAccess);
  if (zonesInUse)
    for (const z of [...new Set(ports.map((p) => p.zone))].sort()) {
      const n = zoneSetNames(z);
      const e = zoneSetElems(z);
      for (const [name, elem] of [
        [n.in, e.in],
        [n.reply, e.reply],
      ] as const)
        add({
          add: {
            set: {
              family: 'inet',
              table: t,
              name,
              type: ['mark', 'inet_proto', 'inet_service'],
              flags: ['interval'],
              elem: [...elem],
            },
          },
        });
    }

  // Remote-group sets: one per group and family, members' fixed IPs and address-pair IPs/CIDRs.
  const referenced = new Set<string>(groups.keys());
  for (const g of groups.values())
    for (const r of g.rules) if (r.remoteGroupId !== null) referenced.add(r.remoteGroupId);
  for (const gid of [...referenced].sort()) {
    const members: Prefix[] = [];
    for (const p of ports)
      if (p.groupIds.includes(gid)) members.push(...p.v4.map((s) => s.p), ...p.v6.map((s) => s.p));
    for (const m of groups.get(gid)?.remoteMembers ?? []) members.push(parsePrefix(m));
    addrSet(
      names.groupSet(gid, 4),
      4,
      members.filter((m) => m.version === 4),
    );
    addrSet(
      names.groupSet(gid, 6),
      6,
      members.filter((m) => m.version === 6),
    );
  }
  // Each group's allows: sets and chains of its own, shared by its ports (sg-sets.ts).
  const groupDecls = [...groups.values()].map((g) => groupDeclarations(t, groupObjects(g, names.groupSet)));
  for (const d of groupDecls) cmds.push(...d.sets);
  if (stateless.length > 0) {
    ifnameSet(
      'inet',
      'stateful_ports',
      stateful.map((p) => p.device),
    );
    ifnameSet(
      'inet',
      'stateless_ports',
      stateless.map((p) => p.device),
    );
    for (const [name, list] of [
      ['stateful', stateful],
      ['stateless', stateless],
    ] as const) {
      addrSet(
        `${name}_v4`,
        4,
        list.flatMap((p) => p.v4.map((s) => s.p)),
      );
      addrSet(
        `${name}_v6`,
        6,
        list.flatMap((p) => p.v6.map((s) => s.p)),
      );
    }
  }

  // Chains first (maps reference them), then maps, then rules.
  chain('inet', 'prerouting', { hook: 'prerouting', prio: PRIO_RAW });
  if (stateless.length > 0) chain('inet', 'output_raw', { hook: 'output', prio: PRIO_RAW });
  chain('inet', 'forward', { hook: 'forward', prio: PRIO_FILTER });
  chain('inet', 'input', { hook: 'input', prio: PRIO_FILTER });
  chain('inet', 'output', { hook: 'output', prio: PRIO_FILTER });
  chain('inet', 'guest_to_host');
  chain('inet', 'host_to_guest');
  if (stateless.length > 0) chain('inet', 'notrack_select');
  for (const p of secured) chain('inet', names.preChain(p.id));
  for (const d of groupDecls) cmds.push(...d.chains);
  for (const p of ports) {
    chain('inet', names.egressChain(p.id));
    chain('inet', names.ingressChain(p.id));
  }
  dispatchMap(
    'inet',
    'pre_dispatch',
    secured.map((p) => [p.device, names.preChain(p.id)]),
  );
  dispatchMap(
    'inet',
    'out_dispatch',
    ports.map((p) => [p.device, names.egressChain(p.id)]),
  );
  dispatchMap(
    'inet',
    'in_dispatch',
    ports.map((p) => [p.device, names.ingressChain(p.id)]),
  );

  // prerouting (raw priority: before conntrack, so spoofed packets never create or match a flow).
  guard('inet', 'prerouting', 'iifname');
  rule('inet', 'prerouting', [vmap(meta('iifname'), 'pre_dispatch')]);
  if (stateless.length > 0) {
    rule('inet', 'prerouting', [jump('notrack_select')]);
    // Conntrack is skipped only where neither end is a stateful port, so stateful peers keep their replies.
    rule('inet', 'notrack_select', [match(meta('iifname'), ref('stateful_ports')), ret]);
    rule('inet', 'notrack_select', [match(payload('ip', 'daddr'), ref('stateful_v4')), ret]);
    rule('inet', 'notrack_select', [match(payload('ip6', 'daddr'), ref('stateful_v6')), ret]);
    rule('inet', 'notrack_select', [match(meta('iifname'), ref('stateless_ports')), notrack]);
    rule('inet', 'notrack_select', [match(payload('ip', 'daddr'), ref('stateless_v4')), notrack]);
    rule('inet', 'notrack_select', [match(payload('ip6', 'daddr'), ref('stateless_v6')), notrack]);
    rule('inet', 'output_raw', [match(payload('ip', 'daddr'), ref('stateless_v4')), notrack]);
    rule('inet', 'output_raw', [match(payload('ip6', 'daddr'), ref('stateless_v6')), notrack]);
  }

  // forward: VM↔VM and VM↔outside. Egress of the sender returns when allowed, then ingress of the receiver decides.
  guard('inet', 'forward', 'oifname');
  rule('inet', 'forward', [vmap(meta('iifname'), 'out_dispatch')]);
  if (net.on) emitNetworkForward(net, { table: t, add, rule, chain, counter, addrSet });
  rule('inet', 'forward', [vmap(meta('oifname'), 'in_dispatch')]);

  // input / output: the host itself as a peer of its guests.
  rule('inet', 'input', [match(meta('iifname'), ref(names.portsSet)), jump('guest_to_host')]);
  guard('inet', 'output', 'oifname');
  rule('inet', 'output', [match(meta('oifname'), ref(names.portsSet)), jump('host_to_guest')]);

  const udp = (sport: number, dport: number): NftStmt[] => [
    match(meta('l4proto'), 'udp'),
    match(payload('udp', 'sport'), sport),
    match(payload('udp', 'dport'), dport),
  ];
  const v4 = match(meta('nfproto'), 'ipv4');
  const v6 = match(meta('nfproto'), 'ipv6');
  rule('inet', 'guest_to_host', [v4, ...udp(68, 67), accept]);
  rule('inet', 'guest_to_host', [v6, ...udp(546, 547), accept]);
  rule('inet', 'guest_to_host', [match(payload('icmpv6', 'type'), set(ICMPV6_ND_FROM_GUEST)), accept]);
  // Zones without host access: DHCP and neighbour discovery above, nothing else (replies included).
  if (noHostAccess.length > 0)
    rule('inet', 'guest_to_host', [
      match(meta('iifname'), ref('zone_no_host')),
      namedCounter(GLOBAL_COUNTERS.hostInput),
      drop,
    ]);
  rule('inet', 'guest_to_host', [vmap(meta('iifname'), 'out_dispatch')]);
  rule('inet', 'guest_to_host', [match(ct('state'), ['established', 'related'], 'in'), accept]);
  if (services.tcp.length)
    rule('inet', 'guest_to_host', [
      match(meta('l4proto'), 'tcp'),
      match(payload('tcp', 'dport'), setOrOne(services.tcp)),
      accept,
    ]);
  if (services.udp.length)
    rule('inet', 'guest_to_host', [
      match(meta('l4proto'), 'udp'),
      match(payload('udp', 'dport'), setOrOne(services.udp)),
      accept,
    ]);
  if (services.icmpEcho) {
    rule('inet', 'guest_to_host', [match(payload('icmp', 'type'), 'echo-request'), accept]);
    rule('inet', 'guest_to_host', [match(payload('icmpv6', 'type'), 'echo-request'), accept]);
  }
  rule('inet', 'guest_to_host', [namedCounter(GLOBAL_COUNTERS.hostInput), drop]);

  rule('inet', 'host_to_guest', [v4, ...udp(67, 68), accept]);
  rule('inet', 'host_to_guest', [v6, ...udp(547, 546), accept]);
  rule('inet', 'host_to_guest', [match(payload('icmpv6', 'type'), set(ICMPV6_ND_TO_GUEST)), accept]);
  if (stateless.length > 0) {
    // Stateless ports have no conntrack: let the host's service replies through explicitly.
    const untracked = match(ct('state'), 'untracked');
    if (services.tcp.length)
      rule('inet', 'host_to_guest', [
        untracked,
        match(meta('l4proto'), 'tcp'),
        match(payload('tcp', 'sport'), setOrOne(services.tcp)),
        accept,
      ]);
    if (services.udp.length)
      rule('inet', 'host_to_guest', [
        untracked,
        match(meta('l4proto'), 'udp'),
        match(payload('udp', 'sport'), setOrOne(services.udp)),
        accept,
      ]);
    if (services.icmpEcho) {
      rule('inet', 'host_to_guest', [untracked, match(payload('icmp', 'type'), 'echo-reply'), accept]);
      rule('inet', 'host_to_guest', [untracked, match(payload('icmpv6', 'type'), 'echo-reply'), accept]);
    }
  }
  rule('inet', 'host_to_guest', [vmap(meta('oifname'), 'in_dispatch')]);

  for (const d of groupDecls) cmds.push(...d.rules);
  // Per-port chains.
  for (const p of secured) compilePortSecurity(p, (expr) => rule('inet', names.preChain(p.id), expr));
  const zoneBits = and(meta('mark'), ZONE_MARK_MASK);
  for (const p of ports) {
    const c = portCounterNames(p.id);
    const out = (expr: NftStmt[]) => rule('inet', names.egressChain(p.id), expr);
    const inn = (expr: NftStmt[]) => rule('inet', names.ingressChain(p.id), expr);

    // Egress: tag the packet with the sender's zone (for the receiver's zone check), then the groups' egress allows.
    if (zonesInUse)
      out([setMark({ '|': [{ '&': [meta('mark'), ~ZONE_MARK_MASK >>> 0] }, zoneMark(p.zone)] })]);
    // Ingress: zone isolation comes before any allow, established flows included, so no group can bridge zones.
    if (zonesInUse) {
      // Original direction: the sender's zone may open this (protocol, destination port) here; reply
      // direction: this zone was allowed to open it there (source port = the original destination port).
      const zs = zoneSetNames(p.zone);
      const key = (port: 'dport' | 'sport') => concat(zoneBits, meta('l4proto'), payload('th', port));
      const fromPort = match(meta('iifname'), ref(names.portsSet));
      inn([
        fromPort,
        match(ct('direction'), 'original'),
        match(key('dport'), ref(zs.in), '!='),
        namedCounter(c.zone),
        drop,
      ]);
      inn([
        fromPort,
        match(ct('direction'), 'reply'),
        match(key('sport'), ref(zs.reply), '!='),
        namedCounter(c.zone),
        drop,
      ]);
      // No conntrack entry (stateless, or invalid): either of the above must hold.
      inn([
        fromPort,
        match(ct('state'), set(['invalid', 'untracked'])),
        match(key('dport'), ref(zs.in), '!='),
        match(key('sport'), ref(zs.reply), '!='),
        namedCounter(c.zone),
        drop,
      ]);
    }
    if (net.on) {
      // Network isolation (mark bits 0-15): the sender tags its network; the receiver accepts only
      // its own network and networks a router joins to it, before established, so no group bridges them.
      out([setMark({ '|': [{ '&': [meta('mark'), ~NETWORK_MARK_MASK >>> 0] }, net.mark(p.network)] })]);
      inn([
        match(meta('iifname'), ref(names.portsSet)),
        match(and(meta('mark'), NETWORK_MARK_MASK), set(net.reachable(p.network)), '!='),
        namedCounter(networkCounterName(p.id)),
        drop,
      ]);
    }
    if (p.mode === 'open') {
      // Port security off: no groups, no filtering beyond quarantine and zones (Neutron's meaning).
      out([ret]);
      inn([accept]);
      continue;
    }
    if (p.mode === 'stateful') {
      out([match(ct('state'), ['established', 'related'], 'in'), ret]);
      out([match(ct('state'), 'invalid'), namedCounter(c.egress), drop]);
      inn([match(ct('state'), ['established', 'related'], 'in'), accept]);
      inn([match(ct('state'), 'invalid'), namedCounter(c.ingress), drop]);
    }
    // The groups' allows live in the groups' own chains and sets, so a rule change edits no port chain.
    for (const m of egressJumps(p.groupIds)) out(m);
    for (const m of ingressJumps(p.groupIds)) inn(m);
    // Deny by default, silently: drop, never reject.
    out([namedCounter(c.egress), drop]);
    inn([namedCounter(c.ingress), drop]);
  }

  // ================= arp table =================
  // ARP never reaches the inet family; routed ports only ever ARP with the host, so filtering input suffices.
  add({ add: { table: { family: 'arp', name: t } } });
  counter('arp', GLOBAL_COUNTERS.quarantine);
  counter('arp', GLOBAL_COUNTERS.unknownDevice);
  for (const p of secured) counter('arp', portCounterNames(p.id).arp);
  ifnameSet('arp', names.portsSet, allDevices);
  ifnameSet('arp', names.quarantineSet, quarantined);
  for (const s of psSets.arp) psSet('arp', s);
  chain('arp', 'input', { hook: 'input', prio: PRIO_FILTER });
  chain('arp', 'output', { hook: 'output', prio: PRIO_FILTER });
  for (const p of secured) chain('arp', names.arpChain(p.id));
  dispatchMap(
    'arp',
    'arp_dispatch',
    secured.map((p) => [p.device, names.arpChain(p.id)]),
  );
  guard('arp', 'input', 'iifname');
  rule('arp', 'input', [vmap(meta('iifname'), 'arp_dispatch')]);
  guard('arp', 'output', 'oifname');
  for (const p of secured) compileArpPort(p, (expr) => rule('arp', names.arpChain(p.id), expr));
  return { nftables: cmds };
}

/**
 * Every group's own objects (sg-sets.ts), validated as the full compile
 * validates them: the dataplane diffs these against the applied ones to
 * change a group in place.
 */
export function groupObjectsOf(groups: readonly GroupState[]): Map<string, GroupObjects> {
  const valid = validateGroups(groups);
  return new Map([...valid.values()].map((g) => [g.id, groupObjects(g, names.groupSet)]));
}

// ---- network isolation, routers and SNAT ------------------------------------------------

interface NetworkPlan {
  /** Emit isolation: some port names its network, or an uplink is configured. */
  on: boolean;
  mark(network: string): number;
  /** Marks of the networks whose ports may reach ports of `network` (itself included), sorted. */
  reachable(network: string): number[];
  /** Marks of networks with a router that has an external gateway. */
  outMarks: number[];
  uplink: string | undefined;
  snat: Prefix[];
}

function compileNetworks(input: CompileInput, ports: readonly Port[]): NetworkPlan {
  const routers = input.routers ?? [];
  const seen = new Set<string>();
  for (const r of routers) {
    if (typeof r.id !== 'string' || r.id === '') fail('A router has no id.');
    if (seen.has(r.id)) fail(`Router ${r.id} is listed twice.`);
    seen.add(r.id);
    for (const n of r.networks)
      if (typeof n !== 'string' || n === '') fail(`Router ${r.id} names an empty network id.`);
  }
  const uplink = input.uplink;
  if (uplink !== undefined) {
    if (!DEVICE_NAME.test(uplink)) fail(`Uplink device '${uplink}' is not a valid interface name.`);
    if (ports.some((p) => p.device === uplink)) fail(`Uplink device ${uplink} is also a VM port.`);
    for (const pre of input.devicePrefixes ?? ['tap'])
      if (uplink.startsWith(pre)) fail(`Uplink device ${uplink} has the VM device prefix '${pre}'.`);
  }
  const snat: Prefix[] = [];
  for (const r of routers)
    for (const c of r.snat ?? []) {
      const pfx = parsePrefix(c, `Router ${r.id} SNAT source`);
      if (pfx.version !== 4) fail(`Router ${r.id}: SNAT source ${c} is not IPv4 (IPv6 is never NATed).`);
      snat.push(pfx);
    }
  const ids = [...new Set([...ports.map((p) => p.network), ...routers.flatMap((r) => r.networks)])].sort();
  if (ids.length > NETWORK_MARK_MASK) fail(`At most ${NETWORK_MARK_MASK} networks per host.`);
  const mark = (n: string) => ids.indexOf(n) + 1;
  const reach = new Map<string, Set<string>>(ids.map((n) => [n, new Set([n])]));
  for (const r of routers) for (const a of r.networks) for (const b of r.networks) reach.get(a)?.add(b);
  const outNets = new Set(routers.filter((r) => r.snat !== undefined).flatMap((r) => r.networks));
  return {
    on: ports.some((p) => p.network !== '') || uplink !== undefined || routers.length > 0,
    mark,
    reachable: (n) => [...(reach.get(n) ?? [n])].map(mark).sort((a, b) => a - b),
    outMarks: [...outNets].map(mark).sort((a, b) => a - b),
    uplink,
    snat,
  };
}

interface Emitters {
  table: string;
  add: (o: NftCommand) => void;
  rule: (family: NftFamily, chain: string, expr: NftStmt[]) => void;
  chain: (family: NftFamily, name: string) => void;
  counter: (family: NftFamily, name: string) => void;
  addrSet: (name: string, family: 4 | 6, members: readonly Prefix[]) => void;
}

/**
 * Forward-chain rules between a port and anything that is not a port (runs after
 * the sender's egress chain set the network mark):
 * - out: only networks joined to a router with an external gateway, and with an
 *   uplink configured only out of the uplink;
 * - in: only replies (established, related) of connections a guest opened.
 * Plus the SNAT chain (masquerade out of the uplink for the routers' subnets).
 */
function emitNetworkForward(net: NetworkPlan, e: Emitters): void {
  const t = 'inet';
  const fromPort = match(meta('iifname'), ref(names.portsSet));
  const toNonPort = match(meta('oifname'), ref(names.portsSet), '!=');
  e.counter(t, NO_ROUTE_OUT_COUNTER);
  e.counter(t, 'unsolicited_in');
  if (net.uplink !== undefined)
    e.rule(t, 'forward', [
      fromPort,
      toNonPort,
      match(meta('oifname'), net.uplink, '!='),
      namedCounter(NO_ROUTE_OUT_COUNTER),
      drop,
    ]);
  e.rule(t, 'forward', [
    fromPort,
    toNonPort,
    ...(net.outMarks.length ? [match(and(meta('mark'), NETWORK_MARK_MASK), set(net.outMarks), '!=')] : []),
    namedCounter(NO_ROUTE_OUT_COUNTER),
    drop,
  ]);
  e.chain(t, 'from_outside');
  e.rule(t, 'forward', [
    match(meta('iifname'), ref(names.portsSet), '!='),
    match(meta('oifname'), ref(names.portsSet)),
    jump('from_outside'),
  ]);
  e.rule(t, 'from_outside', [match(ct('state'), ['established', 'related'], 'in'), ret]);
  e.rule(t, 'from_outside', [namedCounter('unsolicited_in'), drop]);
  if (net.uplink !== undefined && net.snat.length > 0) {
    e.addrSet('snat_v4', 4, net.snat);
    e.add({
      add: {
        chain: {
          family: t,
          table: e.table,
          name: 'postrouting',
          type: 'nat',
          hook: 'postrouting',
          prio: PRIO_SRCNAT,
          policy: 'accept',
        },
      },
    });
    e.rule(t, 'postrouting', [
      match(meta('oifname'), net.uplink),
      match(payload('ip', 'saddr'), ref('snat_v4')),
      { masquerade: null },
    ]);
  }
}
