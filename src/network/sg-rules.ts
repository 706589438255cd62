import { mergePrefixes, type Prefix, parsePrefix } from './addr.js';
import {
  type Direction,
  ICMP,
  ICMPV6,
  isAnyPrefix,
  PORTED_PROTOCOLS,
  protocolNumber,
  type Rule,
} from './model.js';
import { match, meta, type NftExpr, type NftStmt, payload, prefix, range, ref, set } from './nft-json.js';

/**
 * Turns security-group rules into as few nftables rules as keep the meaning
 * exact: rules that differ only in their port become one rule with a port set
 * (`th dport { 22, 443 }`), and rules that differ only in their remote prefix
 * one rule with an interval set of prefixes. Remote-group rules match the
 * group's named set (`ip saddr @sg_<id>_v4`), never one rule per member:
 * Neutron's known scale problem. Every output rule is an allow; order among
 * them does not matter. A group's chain (sg-sets.ts) uses this for the rules
 * its (address . protocol . port) sets cannot hold: remote-group and ICMP
 * type/code rules.
 */

type Remote = { kind: 'any' } | { kind: 'prefix'; p: Prefix } | { kind: 'group'; id: string };

/** What a rule matches beyond family, protocol and remote. */
type L4 =
  | { kind: 'all' }
  | { kind: 'ports'; ranges: [number, number][] }
  | { kind: 'icmpTypes'; types: number[] }
  | { kind: 'icmpTypeCode'; type: number; code: number };

interface Entry {
  family: 4 | 6;
  proto: number | null;
  l4: L4;
  remote: Remote;
}

const remoteKey = (r: Remote): string =>
  r.kind === 'any' ? 'any' : r.kind === 'group' ? `g:${r.id}` : `p:${r.p.text}`;

const l4Key = (l: L4): string => {
  switch (l.kind) {
    case 'all':
      return 'all';
    case 'ports':
      return `ports:${l.ranges.map(([a, b]) => `${a}-${b}`).join(',')}`;
    case 'icmpTypes':
      return `types:${l.types.join(',')}`;
    case 'icmpTypeCode':
      return `tc:${l.type}/${l.code}`;
  }
};

/** Sorts ranges and joins overlapping or adjacent ones, so the set has no conflicting intervals. */
export function mergeRanges(ranges: readonly [number, number][]): [number, number][] {
  const sorted = [...ranges].sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const out: [number, number][] = [];
  for (const [lo, hi] of sorted) {
    const last = out[out.length - 1];
    if (last && lo <= last[1] + 1) last[1] = Math.max(last[1], hi);
    else out.push([lo, hi]);
  }
  return out;
}

/** Phase A: same family, protocol and remote → one entry whose port (or ICMP type) set is the union. */
function mergeByRemote(rules: readonly Rule[]): Entry[] {
  interface Acc {
    family: 4 | 6;
    proto: number | null;
    remote: Remote;
    all: boolean;
    ranges: [number, number][];
    types: Set<number>;
    typeCodes: Map<string, [number, number]>;
  }
  const acc = new Map<string, Acc>();
  for (const r of rules) {
    const family = r.ethertype === 'IPv4' ? 4 : 6;
    const proto = protocolNumber(r.protocol);
    const remote: Remote =
      r.remoteGroupId !== null
        ? { kind: 'group', id: r.remoteGroupId }
        : isAnyPrefix(r.remoteIpPrefix)
          ? { kind: 'any' }
          : { kind: 'prefix', p: parsePrefix(r.remoteIpPrefix ?? '') };
    const key = `${family}|${proto ?? 'any'}|${remoteKey(remote)}`;
    let a = acc.get(key);
    if (!a) {
      a = { family, proto, remote, all: false, ranges: [], types: new Set(), typeCodes: new Map() };
      acc.set(key, a);
    }
    if (proto !== null && PORTED_PROTOCOLS.has(proto) && r.portRangeMin !== null) {
      a.ranges.push([r.portRangeMin, r.portRangeMax ?? r.portRangeMin]);
    } else if ((proto === ICMP || proto === ICMPV6) && r.portRangeMin !== null) {
      if (r.portRangeMax === null) a.types.add(r.portRangeMin);
      else a.typeCodes.set(`${r.portRangeMin}/${r.portRangeMax}`, [r.portRangeMin, r.portRangeMax]);
    } else a.all = true;
  }
  const out: Entry[] = [];
  for (const a of acc.values()) {
    const base = { family: a.family, proto: a.proto, remote: a.remote };
    if (a.all) {
      out.push({ ...base, l4: { kind: 'all' } });
      continue;
    }
    if (a.ranges.length > 0) out.push({ ...base, l4: { kind: 'ports', ranges: mergeRanges(a.ranges) } });
    if (a.types.size > 0)
      out.push({ ...base, l4: { kind: 'icmpTypes', types: [...a.types].sort((x, y) => x - y) } });
    for (const [type, code] of a.typeCodes.values()) {
      // A code is redundant when its whole type is already allowed.
      if (!a.types.has(type)) out.push({ ...base, l4: { kind: 'icmpTypeCode', type, code } });
    }
  }
  return out;
}

/** Phase B: same family, protocol and port set → one entry whose remote prefix set is the union. */
function mergeByL4(entries: readonly Entry[]): { entry: Entry; prefixes: Prefix[] | null }[] {
  const out: { entry: Entry; prefixes: Prefix[] | null }[] = [];
  const acc = new Map<string, { entry: Entry; prefixes: Prefix[] | null }>();
  for (const e of entries) {
    if (e.remote.kind === 'group') {
      out.push({ entry: e, prefixes: null });
      continue;
    }
    const key = `${e.family}|${e.proto ?? 'any'}|${l4Key(e.l4)}`;
    const a = acc.get(key);
    const ps = e.remote.kind === 'any' ? null : [e.remote.p];
    if (!a) acc.set(key, { entry: e, prefixes: ps });
    else if (a.prefixes !== null) a.prefixes = ps === null ? null : [...a.prefixes, ...ps];
  }
  for (const a of acc.values())
    out.push({ entry: a.entry, prefixes: a.prefixes && mergePrefixes(a.prefixes) });
  return out;
}

const addrExpr = (p: Prefix): NftExpr =>
  p.len === (p.version === 4 ? 32 : 128) ? p.addr : prefix(p.addr, p.len);

function portsExpr(ranges: readonly [number, number][]): NftExpr {
  const items = ranges.map(([lo, hi]) => (lo === hi ? lo : range(lo, hi)));
  return items.length === 1 && items[0] !== undefined ? items[0] : set(items);
}

/**
 * The match lists (one per nft rule, without verdict) that allow what `rules`
 * allow in `direction`. `groupSet(id, family)` names a remote group's set.
 */
export function compileAllows(
  rules: readonly Rule[],
  direction: Direction,
  groupSet: (groupId: string, family: 4 | 6) => string,
): NftStmt[][] {
  const mine = rules.filter((r) => r.direction === direction);
  const merged = mergeByL4(mergeByRemote(mine));
  // "Any protocol from anywhere" for a family makes every other rule of that family redundant.
  const openFamilies = new Set(
    merged
      .filter((m) => m.entry.proto === null && m.prefixes === null && m.entry.remote.kind !== 'group')
      .map((m) => m.entry.family),
  );
  const addrField = direction === 'ingress' ? 'saddr' : 'daddr';
  const out: NftStmt[][] = [];
  const sorted = [...merged].sort((a, b) => a.entry.family - b.entry.family);
  for (const { entry: e, prefixes } of sorted) {
    const open = e.proto === null && prefixes === null && e.remote.kind !== 'group';
    if (openFamilies.has(e.family) && !open) continue;
    const ipProto = e.family === 4 ? 'ip' : 'ip6';
    const m: NftStmt[] = [match(meta('nfproto'), e.family === 4 ? 'ipv4' : 'ipv6')];
    if (e.remote.kind === 'group')
      m.push(match(payload(ipProto, addrField), ref(groupSet(e.remote.id, e.family))));
    else if (prefixes !== null) {
      const first = prefixes[0];
      m.push(
        match(
          payload(ipProto, addrField),
          prefixes.length === 1 && first !== undefined ? addrExpr(first) : set(prefixes.map(addrExpr)),
        ),
      );
    }
    if (e.proto !== null) m.push(match(meta('l4proto'), e.proto));
    const icmp = e.proto === ICMPV6 ? 'icmpv6' : 'icmp';
    switch (e.l4.kind) {
      case 'all':
        break;
      case 'ports':
        m.push(match(payload('th', 'dport'), portsExpr(e.l4.ranges)));
        break;
      case 'icmpTypes': {
        const [only] = e.l4.types;
        m.push(
          match(
            payload(icmp, 'type'),
            e.l4.types.length === 1 && only !== undefined ? only : set(e.l4.types),
          ),
        );
        break;
      }
      case 'icmpTypeCode':
        m.push(match(payload(icmp, 'type'), e.l4.type), match(payload(icmp, 'code'), e.l4.code));
        break;
    }
    out.push(m);
  }
  return out;
}
