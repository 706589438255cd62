import { badRequest } from '../errors.js';
import { mergePrefixes, normaliseMac, type Prefix, parseIp, parsePrefix } from './addr.js';
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
  ipElem,
  type SecuredPort,
  type Src,
  setOrOne,
} from './port-security.js';
import { compileAllows } from './sg-rules.js';

export { compileGroupMembers, compileQuarantine } from './compile-incremental.js';
export { GLOBAL_COUNTERS, names, type PortCounterNames, portCounterNames } from './dataplane-names.js';

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
  /** Zones whose ports may open connections to this zone's ports; other zones are refused. */
  allowFrom: string[];
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
}

export const DEFAULT_HOST_SERVICES: HostServices = { tcp: [53], udp: [53], icmpEcho: true };

/** Bits of the packet mark that carry the source port's zone between its egress and the peer's ingress chain. */
export const ZONE_MARK_MASK = 0x0fff0000;
const ZONE_SHIFT = 16;
const MAX_ZONES = ZONE_MARK_MASK >>> ZONE_SHIFT;

/** nftables priorities (nft(8), "BASE CHAIN PRIORITY"). */
const PRIO_RAW = -300;
const PRIO_FILTER = 0;

// ---- validation -------------------------------------------------------------------

const PREFIX = /^[A-Za-z0-9_-]{1,14}$/;

interface Port extends SecuredPort {
  key: string;
  groupIds: string[];
  device: string;
  mac: string;
  mode: 'stateful' | 'stateless' | 'open';
  rules: Rule[];
  zone: string;
  quarantined: boolean;
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
      rules: gs.flatMap((g) => g.rules),
      zone,
      quarantined: p.quarantined === true,
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
  const policies = new Map<string, string[]>();
  for (const z of input.zones ?? []) {
    if (!ZONE_NAME.test(z.name)) fail(`Zone '${z.name}' is not a valid zone name.`);
    if (policies.has(z.name)) fail(`Zone ${z.name} has two policies.`);
    for (const f of z.allowFrom) if (!ZONE_NAME.test(f)) fail(`Zone '${f}' is not a valid zone name.`);
    policies.set(z.name, z.allowFrom);
  }
  const zoneNames = [
    ...new Set([...ports.map((p) => p.zone), ...policies.keys(), ...[...policies.values()].flat()]),
  ].sort();
  if (zoneNames.length > MAX_ZONES) fail(`At most ${MAX_ZONES} security zones.`);
  const zoneMark = (z: string) => (zoneNames.indexOf(z) + 1) << ZONE_SHIFT;
  const zonesInUse = new Set(ports.map((p) => p.zone)).size > 1;

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
  const addrSet = (name: string, family: 4 | 6, members: readonly Prefix[]) => {
    const elems = mergePrefixes(members).map(ipElem);
    add({
      add: {
        set: {
          family: 'inet',
          table: t,
          name,
          type: family === 4 ? 'ipv4_addr' : 'ipv6_addr',
          flags: ['interval'],
          ...(elems.length ? { elem: elems } : {}),
        },
      },
    });
  };
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
  const unknownDevice = (key: 'iifname' | 'oifname'): NftStmt[][] =>
    prefixes.map((p) => [
      match(meta(key), `${p}*`),
      match(meta(key), ref(names.portsSet), '!='),
      namedCounter(GLOBAL_COUNTERS.unknownDevice),
      drop,
    ]);

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
  }
  ifnameSet('inet', names.portsSet, allDevices);
  ifnameSet('inet', names.quarantineSet, quarantined);

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
  rule('inet', 'prerouting', [
    match(meta('iifname'), ref(names.quarantineSet)),
    namedCounter(GLOBAL_COUNTERS.quarantine),
    drop,
  ]);
  for (const r of unknownDevice('iifname')) rule('inet', 'prerouting', r);
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
  rule('inet', 'forward', [
    match(meta('oifname'), ref(names.quarantineSet)),
    namedCounter(GLOBAL_COUNTERS.quarantine),
    drop,
  ]);
  for (const r of unknownDevice('oifname')) rule('inet', 'forward', r);
  rule('inet', 'forward', [vmap(meta('iifname'), 'out_dispatch')]);
  rule('inet', 'forward', [vmap(meta('oifname'), 'in_dispatch')]);

  // input / output: the host itself as a peer of its guests.
  rule('inet', 'input', [match(meta('iifname'), ref(names.portsSet)), jump('guest_to_host')]);
  rule('inet', 'output', [
    match(meta('oifname'), ref(names.quarantineSet)),
    namedCounter(GLOBAL_COUNTERS.quarantine),
    drop,
  ]);
  for (const r of unknownDevice('oifname')) rule('inet', 'output', r);
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
      const own = zoneMark(p.zone);
      const from = [own, ...(policies.get(p.zone) ?? []).map(zoneMark)];
      const replies = [
        own,
        ...zoneNames.filter((z) => (policies.get(z) ?? []).includes(p.zone)).map(zoneMark),
      ];
      const uniq = (xs: number[]) => [...new Set(xs)].sort((a, b) => a - b);
      const fromPort = match(meta('iifname'), ref(names.portsSet));
      inn([
        fromPort,
        match(ct('direction'), 'original'),
        match(zoneBits, set(uniq(from)), '!='),
        namedCounter(c.zone),
        drop,
      ]);
      inn([
        fromPort,
        match(ct('direction'), 'reply'),
        match(zoneBits, set(uniq(replies)), '!='),
        namedCounter(c.zone),
        drop,
      ]);
      inn([
        fromPort,
        match(ct('state'), 'untracked'),
        match(zoneBits, set(uniq([...from, ...replies])), '!='),
        namedCounter(c.zone),
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
    for (const m of compileAllows(p.rules, 'egress', names.groupSet)) out([...m, ret]);
    for (const m of compileAllows(p.rules, 'ingress', names.groupSet)) inn([...m, accept]);
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
  chain('arp', 'input', { hook: 'input', prio: PRIO_FILTER });
  chain('arp', 'output', { hook: 'output', prio: PRIO_FILTER });
  for (const p of secured) chain('arp', names.arpChain(p.id));
  dispatchMap(
    'arp',
    'arp_dispatch',
    secured.map((p) => [p.device, names.arpChain(p.id)]),
  );
  rule('arp', 'input', [
    match(meta('iifname'), ref(names.quarantineSet)),
    namedCounter(GLOBAL_COUNTERS.quarantine),
    drop,
  ]);
  for (const r of unknownDevice('iifname')) rule('arp', 'input', r);
  rule('arp', 'input', [vmap(meta('iifname'), 'arp_dispatch')]);
  rule('arp', 'output', [
    match(meta('oifname'), ref(names.quarantineSet)),
    namedCounter(GLOBAL_COUNTERS.quarantine),
    drop,
  ]);
  for (const r of unknownDevice('oifname')) rule('arp', 'output', r);
  for (const p of secured) compileArpPort(p, (expr) => rule('arp', names.arpChain(p.id), expr));
  return { nftables: cmds };
}
