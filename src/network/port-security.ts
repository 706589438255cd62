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

/** Sorted, de-duplicated (mac . address) elements for a source check. */
function sourceElems(srcs: readonly Src[]): NftExpr[] {
  const seen = new Map<string, NftExpr>();
  for (const s of srcs) seen.set(`${s.mac}|${s.p.text}`, concat(s.mac, ipElem(s.p)));
  return [...seen.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, e]) => e);
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
  if (p.v4.length > 0)
    rule([
      v4,
      match(concat(payload('ether', 'saddr'), payload('ip', 'saddr')), set(sourceElems(p.v4)), '!='),
      ...deny,
    ]);
  else rule([v4, ...deny]);

  // IPv6: duplicate address detection and MLD use the unspecified source; link-local comes from each allowed MAC.
  const v6 = match(meta('nfproto'), 'ipv6');
  rule([
    v6,
    match(payload('ip6', 'saddr'), '::'),
    match(payload('ip6', 'daddr'), prefix('ff02::', 16)),
    match(
      payload('icmpv6', 'type'),
      set(['nd-neighbor-solicit', 'mld-listener-report', 'mld2-listener-report']),
    ),
    ret,
  ]);
  const v6srcs: Src[] = [...p.v6, ...p.macs.map((mac) => ({ mac, p: parsePrefix(linkLocalFromMac(mac)) }))];
  rule([
    v6,
    match(concat(payload('ether', 'saddr'), payload('ip6', 'saddr')), set(sourceElems(v6srcs)), '!='),
    ...deny,
  ]);

  // No DHCP (v4 67, v6 547) server, no router advertisements or redirects from a guest.
  rule([match(meta('l4proto'), 'udp'), match(payload('udp', 'sport'), set([67, 547])), ...deny]);
  rule([match(payload('icmpv6', 'type'), set(['nd-router-advert', 'nd-redirect'])), ...deny]);
  // A neighbour advertisement may only claim the port's own addresses (target at ICMPv6 offset 8, RFC 4861 §4.4).
  const targets = mergePrefixes(v6srcs.map((s) => s.p)).map(v6Range);
  rule([
    match(payload('icmpv6', 'type'), 'nd-neighbor-advert'),
    match(raw('th', 64, 128), set(targets), '!='),
    ...deny,
  ]);
}

/** ARP filtering for one port (arp table): Ethernet/IPv4 only, sender must be the port's. */
export function compileArpPort(p: SecuredPort, rule: (expr: NftStmt[]) => void): void {
  const c = portCounterNames(p.id).arp;
  const arp = rule;
  // Only Ethernet/IPv4 ARP, whose sender fields are where `arp saddr` reads them.
  arp([
    match(
      concat(
        payload('arp', 'htype'),
        payload('arp', 'ptype'),
        payload('arp', 'hlen'),
        payload('arp', 'plen'),
      ),
      set([concat(1, 'ip', 6, 4)]),
      '!=',
    ),
    namedCounter(c),
    drop,
  ]);
  arp([match(payload('ether', 'saddr'), setOrOne(p.macs), '!='), namedCounter(c), drop]);
  const senders = [...sourceElems(p.v4), ...p.macs.map((m) => concat(m, '0.0.0.0'))];
  // Sender 0.0.0.0 is an RFC 5227 address probe.
  arp([match(concat(payload('arp', 'saddr ether'), payload('arp', 'saddr ip')), set(senders)), ret]);
  arp([namedCounter(c), drop]);
}
