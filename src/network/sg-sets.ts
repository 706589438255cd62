import { bigToText, type Prefix, parsePrefix, prefixEnd } from './addr.js';
import { keyOf } from './dataplane-names.js';
import {
  type Direction,
  ICMP,
  ICMPV6,
  isAnyPrefix,
  PORTED_PROTOCOLS,
  protocolNumber,
  type Rule,
} from './model.js';
import {
  accept,
  and,
  concat,
  type Json,
  match,
  meta,
  type NftCommand,
  type NftExpr,
  type NftStmt,
  payload,
  prefix,
  range,
  ref,
  ret,
  setMark,
} from './nft-json.js';
import { compileAllows, mergeRanges } from './sg-rules.js';

/**
 * A security group's allows as objects of its own, shared by every port in
 * the group: per direction and family two interval sets, `(remote . protocol)`
 * for whole protocols and `(remote . protocol . port)` for port ranges, and a
 * chain that looks the packet up in them (one probe each, however many rules
 * the group has) plus the few rules a set cannot hold (remote-group and ICMP
 * type/code rules). A port's chain jumps to its groups' chains, so a rule
 * added to a group used by 500 ports is a handful of `add element`s
 * (`groupUpdate`), not 500 chains rebuilt.
 *
 * The elements are canonical: the union of the rules, cut into disjoint
 * boxes (pipapo, the kernel's concatenated interval set, refuses overlaps),
 * so equal rules give equal elements and the incremental diff against the
 * last applied objects is exact.
 */

/** Packet-mark bit a group's egress chain sets on an allowed packet (bits 16-27 zone, 0-15 network). */
export const EGRESS_OK_MARK = 0x10000000;

const DIRS = { ingress: 'in', egress: 'out' } as const;
type Kind = 'p' | 't';

export const groupNames = {
  chain: (groupId: string, d: Direction) => `g_${keyOf(groupId)}_${DIRS[d]}`,
  /** `p`: (address . protocol); `t`: (address . protocol . port). */
  set: (groupId: string, d: Direction, family: 4 | 6, kind: Kind) =>
    `a_${keyOf(groupId)}_${DIRS[d]}${family}_${kind}`,
};

export interface GroupSet {
  name: string;
  type: string[];
  elem: Json[];
}
export interface GroupObjects {
  sets: GroupSet[];
  chains: { name: string; rules: NftStmt[][] }[];
}

/** An address box's span with the value intervals allowed over all of it. */
interface Segment {
  lo: bigint;
  hi: bigint;
  ranges: [number, number][];
}

interface Node {
  p: Prefix;
  own: [number, number][];
  children: Node[];
}

const rangesKey = (rs: readonly [number, number][]) => rs.map(([a, b]) => `${a}-${b}`).join(',');

/**
 * The union of (prefix × value intervals) as disjoint address segments, in
 * address order. CIDR blocks nest or are disjoint, so each address takes the
 * intervals of every prefix that covers it; a segment is a run of addresses
 * that take the same intervals.
 */
export function disjointSegments(entries: readonly { p: Prefix; ranges: [number, number][] }[]): Segment[] {
  const byPrefix = new Map<string, Node>();
  for (const e of entries) {
    const n = byPrefix.get(e.p.text);
    if (n) n.own.push(...e.ranges);
    else byPrefix.set(e.p.text, { p: e.p, own: [...e.ranges], children: [] });
  }
  const nodes = [...byPrefix.values()].sort((a, b) =>
    a.p.base < b.p.base ? -1 : a.p.base > b.p.base ? 1 : a.p.len - b.p.len,
  );
  const roots: Node[] = [];
  const stack: Node[] = [];
  for (const n of nodes) {
    while (stack.length && prefixEnd((stack[stack.length - 1] as Node).p) < n.p.base) stack.pop();
    const parent = stack[stack.length - 1];
    if (parent) parent.children.push(n);
    else roots.push(n);
    stack.push(n);
  }
  const out: Segment[] = [];
  const emit = (lo: bigint, hi: bigint, ranges: [number, number][]) => {
    const last = out[out.length - 1];
    if (last && last.hi + 1n === lo && rangesKey(last.ranges) === rangesKey(ranges)) last.hi = hi;
    else out.push({ lo, hi, ranges });
  };
  const walk = (n: Node, inherited: [number, number][]) => {
    const eff = mergeRanges([...inherited, ...n.own]);
    let cursor = n.p.base;
    for (const c of n.children) {
      if (c.p.base > cursor) emit(cursor, c.p.base - 1n, eff);
      walk(c, eff);
      cursor = prefixEnd(c.p) + 1n;
    }
    const end = prefixEnd(n.p);
    if (cursor <= end) emit(cursor, end, eff);
  };
  for (const r of roots) walk(r, []);
  return out;
}

/** An address span as nft writes it: one address, a CIDR block, or a range. */
function spanExpr(lo: bigint, hi: bigint, version: 4 | 6): NftExpr {
  if (lo === hi) return bigToText(lo, version);
  const size = hi - lo + 1n;
  const bits = version === 4 ? 32 : 128;
  if ((size & (size - 1n)) === 0n && lo % size === 0n) {
    const len = bits - (size.toString(2).length - 1);
    return prefix(bigToText(lo, version), len);
  }
  return range(bigToText(lo, version), bigToText(hi, version));
}
const valueExpr = ([lo, hi]: [number, number]): NftExpr => (lo === hi ? lo : range(lo, hi));

const ANY_PREFIX = { 4: parsePrefix('0.0.0.0/0'), 6: parsePrefix('::/0') } as const;

/** Splits one direction and family of a group's rules into set elements and leftover (chain) rules. */
function splitRules(rules: readonly Rule[], family: 4 | 6) {
  const whole: { p: Prefix; ranges: [number, number][] }[] = [];
  const ported = new Map<number, { p: Prefix; ranges: [number, number][] }[]>();
  const leftover: Rule[] = [];
  for (const r of rules) {
    if ((r.ethertype === 'IPv4' ? 4 : 6) !== family) continue;
    const proto = protocolNumber(r.protocol);
    const icmpTyped = (proto === ICMP || proto === ICMPV6) && r.portRangeMin !== null;
    if (r.remoteGroupId !== null || icmpTyped) {
      leftover.push(r);
      continue;
    }
    const p = isAnyPrefix(r.remoteIpPrefix) ? ANY_PREFIX[family] : parsePrefix(r.remoteIpPrefix ?? '');
    if (proto !== null && PORTED_PROTOCOLS.has(proto) && r.portRangeMin !== null) {
      const list = ported.get(proto) ?? [];
      list.push({ p, ranges: [[r.portRangeMin, r.portRangeMax ?? r.portRangeMin]] });
      ported.set(proto, list);
    } else whole.push({ p, ranges: [proto === null ? [0, 255] : [proto, proto]] });
  }
  const wholeElems: Json[] = disjointSegments(whole).flatMap((s) =>
    s.ranges.map((r) => concat(spanExpr(s.lo, s.hi, family), valueExpr(r))),
  );
  const portElems: Json[] = [...ported.keys()]
    .sort((a, b) => a - b)
    .flatMap((proto) =>
      disjointSegments(ported.get(proto) ?? []).flatMap((s) =>
        s.ranges.map((r) => concat(spanExpr(s.lo, s.hi, family), proto, valueExpr(r))),
      ),
    );
  return { wholeElems, portElems, leftover };
}

/**
 * A group's sets and chains. `groupSet(id, family)` names a remote group's
 * member set. The egress chain marks an allowed packet and returns (the
 * port's chain then returns to the forward chain, where the receiver's
 * ingress decides); the ingress chain accepts.
 */
export function groupObjects(
  group: { id: string; rules: readonly Rule[] },
  groupSet: (groupId: string, family: 4 | 6) => string,
): GroupObjects {
  const sets: GroupSet[] = [];
  const chains: GroupObjects['chains'] = [];
  for (const d of ['ingress', 'egress'] as const) {
    const verdict: NftStmt[] =
      d === 'ingress' ? [accept] : [setMark({ '|': [meta('mark'), EGRESS_OK_MARK] }), ret];
    const field = d === 'ingress' ? 'saddr' : 'daddr';
    const mine = group.rules.filter((r) => r.direction === d);
    const rules: NftStmt[][] = [];
    const leftovers: Rule[] = [];
    for (const family of [4, 6] as const) {
      const ip = family === 4 ? 'ip' : 'ip6';
      const addrType = family === 4 ? 'ipv4_addr' : 'ipv6_addr';
      const { wholeElems, portElems, leftover } = splitRules(mine, family);
      const pName = groupNames.set(group.id, d, family, 'p');
      const tName = groupNames.set(group.id, d, family, 't');
      sets.push({ name: pName, type: [addrType, 'inet_proto'], elem: wholeElems });
      sets.push({ name: tName, type: [addrType, 'inet_proto', 'inet_service'], elem: portElems });
      // Only non-empty sets get a lookup: an empty one would cost every packet a probe.
      if (wholeElems.length)
        rules.push([match(concat(payload(ip, field), meta('l4proto')), ref(pName)), ...verdict]);
      if (portElems.length)
        rules.push([
          match(concat(payload(ip, field), meta('l4proto'), payload('th', 'dport')), ref(tName)),
          ...verdict,
        ]);
      leftovers.push(...leftover);
    }
    for (const m of compileAllows(leftovers, d, groupSet)) rules.push([...m, ...verdict]);
    chains.push({ name: groupNames.chain(group.id, d), rules });
  }
  return { sets, chains };
}

/** A port's egress allows: clear the mark bit, then each group's chain; allowed packets return. */
export function egressJumps(groupIds: readonly string[]): NftStmt[][] {
  if (groupIds.length === 0) return [];
  const bit = and(meta('mark'), EGRESS_OK_MARK);
  return [
    [setMark({ '&': [meta('mark'), ~EGRESS_OK_MARK >>> 0] })],
    ...groupIds.flatMap((id) => [
      [{ jump: { target: groupNames.chain(id, 'egress') } }],
      [match(bit, 0, '!='), ret],
    ]),
  ];
}

/** A port's ingress allows: each group's chain accepts what it allows. */
export const ingressJumps = (groupIds: readonly string[]): NftStmt[][] =>
  groupIds.map((id) => [{ jump: { target: groupNames.chain(id, 'ingress') } }]);

/** The commands that create a group's objects in a full compile (chains declared first, rules later). */
export function groupDeclarations(
  table: string,
  g: GroupObjects,
): { sets: NftCommand[]; chains: NftCommand[]; rules: NftCommand[] } {
  return {
    sets: g.sets.map(
      (s): NftCommand => ({
        add: {
          set: {
            family: 'inet',
            table,
            name: s.name,
            type: s.type,
            flags: ['interval'],
            ...(s.elem.length ? { elem: s.elem } : {}),
          },
        },
      }),
    ),
    chains: g.chains.map((c): NftCommand => ({ add: { chain: { family: 'inet', table, name: c.name } } })),
    rules: g.chains.flatMap((c) =>
      c.rules.map((expr): NftCommand => ({ add: { rule: { family: 'inet', table, chain: c.name, expr } } })),
    ),
  };
}

/** The commands that take a group's objects out of the kernel (a deleted group: no port jumps to it). */
export function groupRemoval(table: string, g: GroupObjects): NftCommand[] {
  // Chains before the sets their rules look up; a flushed chain deletes on every kernel.
  return [
    ...g.chains.flatMap((c): NftCommand[] => [
      { flush: { chain: { family: 'inet', table, name: c.name } } },
      { delete: { chain: { family: 'inet', table, name: c.name } } },
    ]),
    ...g.sets.map((s): NftCommand => ({ delete: { set: { family: 'inet', table, name: s.name } } })),
  ];
}

/**
 * The commands that turn a group's applied objects into `next` in place:
 * the elements that left and came, and a rebuilt chain where its rules
 * differ. One batch, so the kernel commits all of it or none.
 */
export function groupUpdate(table: string, old: GroupObjects, next: GroupObjects): NftCommand[] {
  const cmds: NftCommand[] = [];
  const before = new Map(old.sets.map((s) => [s.name, s]));
  for (const s of next.sets) {
    const prev = before.get(s.name);
    if (!prev) throw new Error(`Set ${s.name} is not in the applied objects.`);
    const had = new Set(prev.elem.map((e) => JSON.stringify(e)));
    const has = new Set(s.elem.map((e) => JSON.stringify(e)));
    const gone = prev.elem.filter((e) => !has.has(JSON.stringify(e)));
    const came = s.elem.filter((e) => !had.has(JSON.stringify(e)));
    const element = (elem: Json[]) => ({ family: 'inet' as const, table, name: s.name, elem });
    if (gone.length) cmds.push({ delete: { element: element(gone) } });
    if (came.length) cmds.push({ add: { element: element(came) } });
  }
  const chainsBefore = new Map(old.chains.map((c) => [c.name, JSON.stringify(c.rules)]));
  for (const c of next.chains) {
    if (chainsBefore.get(c.name) === JSON.stringify(c.rules)) continue;
    cmds.push({ flush: { chain: { family: 'inet', table, name: c.name } } });
    for (const expr of c.rules) cmds.push({ add: { rule: { family: 'inet', table, chain: c.name, expr } } });
  }
  return cmds;
}
