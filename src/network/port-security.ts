import { hex128, linkLocalFromMac, mergePrefixes, type Prefix, parsePrefix, prefixEnd } from './addr.js';
import { portCounterNames } from './dataplane-names.js';
import {
  concat,
  drop,
  match,
  meta,
  type NftExpr,
  type NftStmt,
  namedCounter,
  payload,
  prefix,
  range,
  raw,
  ref,
  ret,
  set,
} from './nft-json.js';

/**
 * Port security (Neutron's anti-spoofing): what a port may send from. The
 * inet part runs in prerouting at raw priority, before conntrack, so a
 * spoofed packet never creates or matches a flow; the arp part filters ARP.
 */

/** An allowed source: a MAC and the address or prefix it may use. */
export interface Src {
  mac: string;
  p: Prefix;
}

/** What port security needs to know about a port. */
export interface SecuredPort {
  id: string;
  /** Host-side interface: keys the port's entries in the shared source sets. */
  device: string;
  /** Port MAC and address-pair MACs, sorted. */
  macs: string[];
  v4: Src[];
  v6: Src[];
}

export const ipElem = (p: Prefix): NftExpr =>
  p.len === (p.version === 4 ? 32 : 128) ? p.addr : prefix(p.addr, p.len);

const v6Range = (p: Prefix): NftExpr =>
  p.len === 128 ? hex128(p.base) : range(hex128(p.base), hex128(prefixEnd(p)));

export const setOrOne = (items: readonly NftExpr[]): NftExpr => {
  const [only] = items;
  return items.length === 1 && only !== undefined ? only : set(items);
};

/**
 * Sorted (device . mac . address) elements for the shared source sets; per
 * MAC, a prefix inside another one goes (the kernel refuses overlapping elements).
 */
function sourceElems(device: string, srcs: readonly Src[]): NftExpr[] {
  const byMac = new Map<string, Prefix[]>();
  for (const s of srcs) byMac.set(s.mac, [...(byMac.get(s.mac) ?? []), s.p]);
  return [...byMac.keys()]
    .sort()
    .flatMap((mac) => mergePrefixes(byMac.get(mac) ?? []).map((p) => concat(device, mac, ipElem(p))));
}

/**
 * Port security's named sets, shared by every port (one object each, not one
 * anonymous set per port and rule: nft reads every set of the table before
 * each change, so per-port sets made even a one-element update slow). The
 * source sets are keyed by the port's device.
 */
export const PS_SETS = {
  srcV4: 'ps_src_v4',
  srcV6: 'ps_src_v6',
  dadTypes: 'ps_dad_types',
  serverPorts: 'ps_server_ports',
  raTypes: 'ps_ra_types',
  arpSrc: 'ps_arp_src',
} as const;

export interface PsSet {
  name: string;
  type: string | string[];
  interval: boolean;
  elem: NftExpr[];
}

const v6Sources = (p: SecuredPort): Src[] => [
  ...p.v6,
  ...p.macs.map((mac) => ({ mac, p: parsePrefix(linkLocalFromMac(mac)) })),
];

/** The shared sets' definitions and elements for these ports: `inet` and `arp` tables. */
export function portSecuritySets(ports: readonly SecuredPort[]): { inet: PsSet[]; arp: PsSet[] } {
  const src = (family: 4 | 6): NftExpr[] =>
    ports.flatMap((p) => sourceElems(p.device, family === 4 ? p.v4 : v6Sources(p)));
  // A hash set (one probe) unless an address pair is a prefix, which needs intervals.
  const hasPrefix = (family: 4 | 6) =>
    ports.some((p) => (family === 4 ? p.v4 : p.v6).some((s) => s.p.len < (family === 4 ? 32 : 128)));
  const arpSrcs = ports.flatMap((p) =>
    sourceElems(p.device, [...p.v4, ...p.macs.map((mac) => ({ mac, p: parsePrefix('0.0.0.0') }))]),
  );
  return {
    inet: [
      {
        name: PS_SETS.srcV4,
        type: ['ifname', 'ether_addr', 'ipv4_addr'],
        interval: hasPrefix(4),
        elem: src(4),
      },
      {
        name: PS_SETS.srcV6,
        type: ['ifname', 'ether_addr', 'ipv6_addr'],
        interval: hasPrefix(6),
        elem: src(6),
      },
      {
        name: PS_SETS.dadTypes,
        type: 'icmpv6_type',
        interval: false,
        elem: ['nd-neighbor-solicit', 'mld-listener-report', 'mld2-listener-report'],
      },
      { name: PS_SETS.serverPorts, type: 'inet_service', interval: false, elem: [67, 547] },
      {
        name: PS_SETS.raTypes,
        type: 'icmpv6_type',
        interval: false,
        elem: ['nd-router-advert', 'nd-redirect'],
      },
    ],
    arp: [
      {
        name: PS_SETS.arpSrc,
        type: ['ifname', 'ether_addr', 'ipv4_addr'],
        interval: hasPrefix(4),
        // Sender 0.0.0.0 is an RFC 5227 address probe.
        elem: arpSrcs,
      },
    ],
  };
}

/** Port security (anti-spoofing) for one port: runs in prerouting at raw priority. */
export function compilePortSecurity(p: SecuredPort, rule: (expr: NftStmt[]) => void): void {
  const c = portCounterNames(p.id).spoof;
  const deny = [namedCounter(c), drop];
  rule([match(payload('ether', 'saddr'), setOrOne(p.macs), '!='), ...deny]);

  // IPv4: DHCP DISCOVER/REQUEST come from 0.0.0.0 to broadcast before the guest has its address.
  const v4 = match(meta('nfproto'), 'ipv4');
  rule([
    v4,
    match(payload('ip', 'saddr'), '0.0.0.0'),
    match(payload('ip', 'daddr'), '255.255.255.255'),
    match(meta('l4proto'), 'udp'),
    match(payload('udp', 'sport'), 68),
    match(payload('udp', 'dport'), 67),
    ret,
  ]);
  const iif = meta('iifname');
  if (p.v4.length > 0)
    rule([
      v4,
      match(concat(iif, payload('ether', 'saddr'), payload('ip', 'saddr')), ref(PS_SETS.srcV4), '!='),
      ...deny,
    ]);
  else rule([v4, ...deny]);

  // IPv6: duplicate address detection and MLD use the unspecified source; link-local comes from each allowed MAC.
  const v6 = match(meta('nfproto'), 'ipv6');
  rule([
    v6,
    match(payload('ip6', 'saddr'), '::'),
    match(payload('ip6', 'daddr'), prefix('ff02::', 16)),
    match(payload('icmpv6', 'type'), ref(PS_SETS.dadTypes)),
    ret,
  ]);
  const v6srcs = v6Sources(p);
  rule([
    v6,
    match(concat(iif, payload('ether', 'saddr'), payload('ip6', 'saddr')), ref(PS_SETS.srcV6), '!='),
    ...deny,
  ]);

  // No DHCP (v4 67, v6 547) server, no router advertisements or redirects from a guest.
  rule([match(meta('l4proto'), 'udp'), match(payload('udp', 'sport'), ref(PS_SETS.serverPorts)), ...deny]);
  rule([match(payload('icmpv6', 'type'), ref(PS_SETS.raTypes)), ...deny]);
  // A neighbour advertisement may only claim the port's own addresses (target at ICMPv6 offset 8, RFC 4861 §4.4).
  const targets = mergePrefixes(v6srcs.map((s) => s.p)).map(v6Range);
  rule([
    match(payload('icmpv6', 'type'), 'nd-neighbor-advert'),
    match(raw('th', 64, 128), setOrOne(targets), '!='),
    ...deny,
  ]);
}

/** ARP filtering for one port (arp table): Ethernet/IPv4 only, sender must be the port's. */
export function compileArpPort(p: SecuredPort, rule: (expr: NftStmt[]) => void): void {
  const c = portCounterNames(p.id).arp;
  const arp = rule;
  // Only Ethernet/IPv4 ARP, whose sender fields are where `arp saddr` reads them.
  for (const [field, value] of [
    ['htype', 1],
    ['ptype', 'ip'],
    ['hlen', 6],
    ['plen', 4],
  ] as const)
    arp([match(payload('arp', field), value, '!='), namedCounter(c), drop]);
  arp([match(payload('ether', 'saddr'), setOrOne(p.macs), '!='), namedCounter(c), drop]);
  arp([
    match(
      concat(meta('iifname'), payload('arp', 'saddr ether'), payload('arp', 'saddr ip')),
      ref(PS_SETS.arpSrc),
    ),
    ret,
  ]);
  arp([namedCounter(c), drop]);
}
