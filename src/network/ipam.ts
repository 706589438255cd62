import ipaddr from 'ipaddr.js';
import { badRequest } from '../errors.js';

/** A parsed subnet: family, network address and prefix length, as integers. */
export interface Cidr {
  version: 4 | 6;
  base: bigint;
  prefix: number;
  bits: 32 | 128;
  text: string;
}

export interface Pool {
  start: string;
  end: string;
}

const toBig = (addr: ipaddr.IPv4 | ipaddr.IPv6): bigint =>
  addr.toByteArray().reduce((acc, b) => (acc << 8n) | BigInt(b), 0n);

export function fromBig(n: bigint, version: 4 | 6): string {
  const bytes: number[] = [];
  for (let i = 0; i < (version === 4 ? 4 : 16); i++) {
    bytes.unshift(Number(n & 0xffn));
    n >>= 8n;
  }
  return ipaddr.fromByteArray(bytes).toString();
}

export function parseAddress(text: string): { version: 4 | 6; value: bigint; text: string } {
  if (!ipaddr.isValid(text)) throw badRequest(`'${text}' is not a valid IP address.`);
  const a = ipaddr.parse(text);
  const version = a.kind() === 'ipv4' ? 4 : 6;
  const value = toBig(a);
  return { version, value, text: fromBig(value, version) };
}

/** Parses a CIDR and refuses one with host bits set, suggesting the network address. */
export function parseCidr(text: string, wantVersion?: number): Cidr {
  let parsed: [ipaddr.IPv4 | ipaddr.IPv6, number];
  try {
    parsed = ipaddr.parseCIDR(text);
  } catch {
    throw badRequest(`'${text}' is not a valid CIDR, e.g. 10.0.0.0/24 or fd00::/64.`);
  }
  const [addr, prefix] = parsed;
  const version = addr.kind() === 'ipv4' ? 4 : 6;
  if (wantVersion !== undefined && wantVersion !== version) {
    throw badRequest(`CIDR ${text} is IPv${version}, but ip_version is ${wantVersion}.`);
  }
  const bits = version === 4 ? 32 : 128;
  const mask = ((1n << BigInt(bits)) - 1n) ^ ((1n << BigInt(bits - prefix)) - 1n);
  const value = toBig(addr);
  const base = value & mask;
  const normal = `${fromBig(base, version)}/${prefix}`;
  if (base !== value) throw badRequest(`'${text}' has host bits set; did you mean ${normal}?`);
  return { version, base, prefix, bits, text: normal };
}

const last = (c: Cidr) => c.base + (1n << BigInt(c.bits - c.prefix)) - 1n;

export const contains = (c: Cidr, value: bigint) => value >= c.base && value <= last(c);

export const overlaps = (a: Cidr, b: Cidr) =>
  a.version === b.version && a.base <= last(b) && b.base <= last(a);

/** Neutron's defaults: the gateway is the first host; the pool is the rest, minus IPv4 broadcast. */
export function defaultLayout(c: Cidr): { gateway: string; pools: Pool[] } {
  if (c.version === 4 && c.prefix > 29) throw badRequest(`Subnet ${c.text} is too small; use /29 or larger.`);
  if (c.version === 6 && c.prefix > 126) throw badRequest(`Subnet ${c.text} is too small.`);
  const first = c.base + 1n;
  const end = c.version === 4 ? last(c) - 1n : last(c);
  return {
    gateway: fromBig(first, c.version),
    pools: [{ start: fromBig(first + 1n, c.version), end: fromBig(end, c.version) }],
  };
}

/** Checks user-given pools and gateway lie inside the subnet and do not overlap. */
export function validateLayout(c: Cidr, gateway: string | null, pools: Pool[]): void {
  const ranges = pools.map((p) => {
    const s = parseAddress(p.start);
    const e = parseAddress(p.end);
    if (s.version !== c.version || e.version !== c.version)
      throw badRequest('Allocation pool addresses must match the subnet family.');
    if (!contains(c, s.value) || !contains(c, e.value))
      throw badRequest(`Allocation pool ${p.start}-${p.end} is outside ${c.text}.`);
    if (s.value > e.value) throw badRequest(`Allocation pool ${p.start}-${p.end} ends before it starts.`);
    return [s.value, e.value] as const;
  });
  ranges.sort((a, b) => (a[0] < b[0] ? -1 : 1));
  for (let i = 1; i < ranges.length; i++) {
    if ((ranges[i]?.[0] ?? 0n) <= (ranges[i - 1]?.[1] ?? 0n)) throw badRequest('Allocation pools overlap.');
  }
  if (gateway !== null) {
    const g = parseAddress(gateway);
    if (!contains(c, g.value)) throw badRequest(`Gateway ${gateway} is outside ${c.text}.`);
    if (ranges.some(([s, e]) => g.value >= s && g.value <= e))
      throw badRequest(`Gateway ${gateway} is inside an allocation pool.`);
  }
}

/** The lowest free address in the pools, or null when they are exhausted. */
export function firstFree(version: 4 | 6, pools: Pool[], used: ReadonlySet<string>): string | null {
  for (const p of pools) {
    const end = parseAddress(p.end).value;
    for (let v = parseAddress(p.start).value; v <= end; v++) {
      const ip = fromBig(v, version);
      if (!used.has(ip)) return ip;
    }
  }
  return null;
}
