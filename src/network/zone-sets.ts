import { badRequest } from '../errors.js';
import { ZONE_NAME } from './model.js';
import type { NftExpr } from './nft-json.js';

/**
 * Security zones for the compiler (pure). A zone's policy says which other
 * zones may open connections to it, optionally only for one protocol and
 * destination port range, and whether its ports may reach the host. The
 * compiler turns this into two concatenated interval sets per receiving zone
 * (`zone mark . l4proto . port`), so the per-packet cost is one set lookup
 * whatever the number of rules. See docs/network.md, "Security zones".
 */

/** One inter-zone allow: connections from `from` into the policy's zone. */
export interface ZoneAllow {
  from: string;
  /** `any`, `tcp`, `udp`, `icmp` (ICMP and ICMPv6) or an IP protocol number 0-255. */
  protocol: string | number;
  /** Destination port range; only for tcp and udp. Absent: every port. */
  portMin?: number | null;
  portMax?: number | null;
}

/** Protocols whose header starts with 16-bit source and destination ports. */
const PORTED = new Set([6, 17]);
const NAMED: Record<string, number[]> = { tcp: [6], udp: [17], icmp: [1, 58] };

/** Normalises a zone rule protocol: `any`, a name, or a number (6 → tcp, 17 → udp, 1 → icmp). */
export function normaliseZoneProtocol(p: string | number | null | undefined): string {
  if (p === null || p === undefined || p === 'any') return 'any';
  const text = typeof p === 'number' ? String(p) : p.trim().toLowerCase();
  if (Object.hasOwn(NAMED, text)) return text;
  if (/^\d{1,3}$/.test(text)) {
    const n = Number(text);
    if (n > 255) throw badRequest(`Protocol ${text} is not 0-255.`);
    return n === 6 ? 'tcp' : n === 17 ? 'udp' : n === 1 ? 'icmp' : String(n);
  }
  throw badRequest(`Protocol '${String(p)}' must be any, tcp, udp, icmp or a number 0-255.`);
}

/** A validated allow: canonical protocol, both ports set or both null. */
export interface NormalZoneAllow {
  from: string;
  protocol: string;
  portMin: number | null;
  portMax: number | null;
}

/** Validates a rule's protocol and port range; returns the canonical form. */
export function normaliseZoneAllow(a: ZoneAllow): NormalZoneAllow {
  if (!ZONE_NAME.test(a.from)) throw badRequest(`Zone '${a.from}' is not a valid zone name.`);
  const protocol = normaliseZoneProtocol(a.protocol);
  const min = a.portMin ?? null;
  const max = a.portMax ?? null;
  if (min === null && max === null) return { from: a.from, protocol, portMin: null, portMax: null };
  if (protocol !== 'tcp' && protocol !== 'udp')
    throw badRequest(`Port ranges apply to tcp and udp only, not to protocol ${protocol}.`);
  const lo = min ?? max;
  const hi = max ?? min;
  for (const v of [lo, hi])
    if (!Number.isInteger(v) || (v as number) < 1 || (v as number) > 65535)
      throw badRequest(`Port ${String(v)} is not 1-65535.`);
  if ((lo as number) > (hi as number))
    throw badRequest(`port_range_min ${lo} is greater than port_range_max ${hi}.`);
  return { from: a.from, protocol, portMin: lo as number, portMax: hi as number };
}

type Range = [number, number];

/** Protocol numbers of a canonical protocol; null means any. */
const protoNumbers = (protocol: string): number[] | null =>
  protocol === 'any' ? null : (NAMED[protocol] ?? [Number(protocol)]);

function mergeRanges(rs: Range[]): Range[] {
  const sorted = [...rs].sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const out: Range[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r[0] <= last[1] + 1) last[1] = Math.max(last[1], r[1]);
    else out.push([r[0], r[1]]);
  }
  return out;
}

const val = ([lo, hi]: Range): NftExpr => (lo === hi ? lo : { range: [lo, hi] });

/**
 * Elements of a `mark . inet_proto . inet_service` interval set: for each
 * sending zone mark, the protocols and ports it may use. Overlaps are merged
 * (the kernel refuses overlapping concatenated intervals), and an `any` allow
 * swallows the narrower ones of the same zone.
 */
export function zoneSetElements(
  allows: readonly { mark: number; protocol: string; portMin: number | null; portMax: number | null }[],
): NftExpr[] {
  const byMark = new Map<number, { any: boolean; protos: Map<number, Range[]> }>();
  for (const a of allows) {
    const e = byMark.get(a.mark) ?? { any: false, protos: new Map<number, Range[]>() };
    byMark.set(a.mark, e);
    const protos = protoNumbers(a.protocol);
    if (protos === null) {
      e.any = true;
      continue;
    }
    const ports: Range =
      a.portMin === null || !protos.every((p) => PORTED.has(p))
        ? [0, 65535]
        : [a.portMin, a.portMax ?? a.portMin];
    for (const p of protos) e.protos.set(p, [...(e.protos.get(p) ?? []), ports]);
  }
  const out: NftExpr[] = [];
  for (const mark of [...byMark.keys()].sort((a, b) => a - b)) {
    const e = byMark.get(mark);
    if (!e) continue;
    if (e.any) {
      out.push({ concat: [mark, val([0, 255]), val([0, 65535])] });
      continue;
    }
    for (const p of [...e.protos.keys()].sort((a, b) => a - b))
      for (const r of mergeRanges(e.protos.get(p) ?? [])) out.push({ concat: [mark, p, val(r)] });
  }
  return out;
}
