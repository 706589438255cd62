import ipaddr from 'ipaddr.js';
import { badRequest } from '../errors.js';

/**
 * Address helpers for the security-group model and compiler: prefixes are
 * normalised (host bits cleared, as Neutron's `convert_ip_prefix_to_cidr`
 * does), compared as integers, and merged so nftables interval sets never see
 * overlapping elements (nft refuses those with "conflicting intervals").
 */

export interface Prefix {
  version: 4 | 6;
  /** Network address as an integer. */
  base: bigint;
  len: number;
  /** Canonical text: `10.0.0.0/8`, `fd00::/64`. */
  text: string;
  /** Canonical network address text, without the length. */
  addr: string;
}

const bitsOf = (v: 4 | 6) => (v === 4 ? 32 : 128);

function toBig(a: ipaddr.IPv4 | ipaddr.IPv6): bigint {
  return a.toByteArray().reduce((acc, b) => (acc << 8n) | BigInt(b), 0n);
}

export function bigToText(n: bigint, version: 4 | 6): string {
  const bytes: number[] = [];
  for (let i = 0; i < bitsOf(version) / 8; i++) {
    bytes.unshift(Number(n & 0xffn));
    n >>= 8n;
  }
  return ipaddr.fromByteArray(bytes).toString();
}

function parseRaw(text: string): ipaddr.IPv4 | ipaddr.IPv6 | null {
  // ipaddr.isValid accepts odd IPv4 forms (octal, "10.1"); only dotted quads and real IPv6 here.
  if (ipaddr.IPv4.isValidFourPartDecimal(text)) return ipaddr.IPv4.parse(text);
  if (text.includes(':') && ipaddr.IPv6.isValid(text)) {
    const a = ipaddr.IPv6.parse(text);
    // An IPv4-mapped IPv6 address is still IPv6 on the wire; keep it as such.
    return a;
  }
  return null;
}

/** Parses one address (no length) into its canonical text; `what` names it in the error. */
export function parseIp(text: string, what = 'IP address'): { version: 4 | 6; value: bigint; text: string } {
  const a = typeof text === 'string' ? parseRaw(text) : null;
  if (!a) throw badRequest(`${what} '${String(text)}' is not a valid IPv4 or IPv6 address.`);
  const version = a.kind() === 'ipv4' ? 4 : 6;
  const value = toBig(a);
  return { version, value, text: bigToText(value, version) };
}

/**
 * Parses `addr/len` or a bare address (a host prefix) and clears host bits:
 * `10.0.0.5/8` becomes `10.0.0.0/8`.
 */
export function parsePrefix(text: string, what = 'prefix'): Prefix {
  if (typeof text !== 'string') throw badRequest(`${what} must be a string such as 10.0.0.0/8.`);
  const slash = text.indexOf('/');
  const addrText = slash === -1 ? text : text.slice(0, slash);
  const a = parseRaw(addrText);
  if (!a) throw badRequest(`${what} '${text}' is not a valid CIDR, e.g. 10.0.0.0/8 or fd00::/64.`);
  const version = a.kind() === 'ipv4' ? 4 : 6;
  const bits = bitsOf(version);
  let len = bits;
  if (slash !== -1) {
    const lenText = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(lenText) || Number(lenText) > bits)
      throw badRequest(`${what} '${text}' has an invalid prefix length (0-${bits}).`);
    len = Number(lenText);
  }
  const mask = ((1n << BigInt(bits)) - 1n) ^ ((1n << BigInt(bits - len)) - 1n);
  const base = toBig(a) & mask;
  const addr = bigToText(base, version);
  return { version, base, len, addr, text: `${addr}/${len}` };
}

/** Last address of a prefix, as an integer. */
export const prefixEnd = (p: Prefix): bigint => p.base + (1n << BigInt(bitsOf(p.version) - p.len)) - 1n;

/** True when `outer` covers all of `inner`. */
export const covers = (outer: Prefix, inner: Prefix): boolean =>
  outer.version === inner.version &&
  outer.len <= inner.len &&
  prefixEnd(outer) >= prefixEnd(inner) &&
  outer.base <= inner.base;

/**
 * Removes prefixes covered by another one (CIDR blocks either nest or are
 * disjoint, so this leaves a non-overlapping list) and sorts the result.
 */
export function mergePrefixes(prefixes: readonly Prefix[]): Prefix[] {
  const sorted = [...prefixes].sort((a, b) =>
    a.version !== b.version
      ? a.version - b.version
      : a.base < b.base
        ? -1
        : a.base > b.base
          ? 1
          : a.len - b.len,
  );
  const out: Prefix[] = [];
  for (const p of sorted) {
    const prev = out[out.length - 1];
    if (prev && covers(prev, p)) continue;
    out.push(p);
  }
  return out;
}

/** 128-bit hex literal for raw payload matches (`@th,64,128`), which take integers, not addresses. */
export const hex128 = (n: bigint): string => `0x${n.toString(16).padStart(32, '0')}`;

/** The IPv6 link-local address a guest derives from its MAC (modified EUI-64, RFC 4291 appendix A). */
export function linkLocalFromMac(mac: string): string {
  const b = mac.split(':').map((h) => Number.parseInt(h, 16));
  const [b0 = 0, b1 = 0, b2 = 0, b3 = 0, b4 = 0, b5 = 0] = b;
  const eui = [b0 ^ 0x02, b1, b2, 0xff, 0xfe, b3, b4, b5];
  const v = (0xfe80n << 112n) | eui.reduce((acc, x) => (acc << 8n) | BigInt(x), 0n);
  return bigToText(v, 6);
}

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/** Lower-cases a MAC and refuses malformed, multicast and all-zero ones. */
export function normaliseMac(mac: string, what = 'MAC address'): string {
  const m = typeof mac === 'string' ? mac.toLowerCase() : '';
  if (!MAC.test(m)) throw badRequest(`${what} '${String(mac)}' is not a MAC address like fa:16:3e:00:00:01.`);
  if ((Number.parseInt(m.slice(0, 2), 16) & 1) === 1)
    throw badRequest(`${what} ${m} is a multicast address; a port needs a unicast MAC.`);
  if (m === '00:00:00:00:00:00') throw badRequest(`${what} ${m} is all zeros.`);
  return m;
}
