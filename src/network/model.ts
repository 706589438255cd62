import { badRequest, conflict } from '../errors.js';
import { normaliseMac, parseIp, parsePrefix } from './addr.js';

/**
 * Security groups and rules with Neutron's semantics (neutron-lib
 * `api/definitions/security_groups`, neutron `db/securitygroups_db.py`):
 * pure validation, canonical forms and the duplicate key. Nothing here
 * touches the host; `compile.ts` turns the result into nftables.
 */

export type Direction = 'ingress' | 'egress';
export type Ethertype = 'IPv4' | 'IPv6';

/** A security group rule as the API receives it (Neutron field names), or as stored. */
export interface RuleInput {
  direction: string;
  ethertype?: string | undefined;
  protocol?: string | number | null | undefined;
  port_range_min?: number | null | undefined;
  port_range_max?: number | null | undefined;
  remote_ip_prefix?: string | null | undefined;
  remote_group_id?: string | null | undefined;
}

/**
 * A validated, canonical rule. `protocol` is Neutron's name when it has one,
 * else the number as decimal text; null means any protocol. For ICMP and
 * ICMPv6, `portRangeMin` is the type and `portRangeMax` the code.
 */
export interface Rule {
  direction: Direction;
  ethertype: Ethertype;
  protocol: string | null;
  portRangeMin: number | null;
  portRangeMax: number | null;
  remoteIpPrefix: string | null;
  remoteGroupId: string | null;
}

/** Former name of {@link Rule}, kept for existing callers. */
export type NormalRule = Rule;

/** Neutron's protocol names and numbers. */
export const PROTOCOLS: Readonly<Record<string, number>> = {
  icmp: 1,
  tcp: 6,
  udp: 17,
  'ipv6-icmp': 58,
  sctp: 132,
  dccp: 33,
  udplite: 136,
  gre: 47,
  esp: 50,
  ah: 51,
  vrrp: 112,
};
const NAMES: Readonly<Record<number, string>> = Object.fromEntries(
  Object.entries(PROTOCOLS).map(([k, v]) => [v, k]),
);
/** Protocols whose header starts with 16-bit source and destination ports. */
export const PORTED_PROTOCOLS: ReadonlySet<number> = new Set([6, 17, 132, 33, 136]);
const IPV6_ONLY: ReadonlySet<number> = new Set([58]);
export const ICMP = 1;
export const ICMPV6 = 58;

/** The IANA number of a canonical rule protocol (`"tcp"` → 6, `"200"` → 200), or null for any. */
export function protocolNumber(protocol: string | null): number | null {
  if (protocol === null) return null;
  const named = PROTOCOLS[protocol];
  if (named !== undefined) return named;
  if (/^\d{1,3}$/.test(protocol) && Number(protocol) <= 255) return Number(protocol);
  throw badRequest(`Unknown protocol '${protocol}'.`);
}

function parseProtocol(p: unknown, ethertype: Ethertype): number | null {
  if (p === null || p === undefined || p === '' || p === 'any') return null;
  let n: number;
  if (typeof p === 'number') n = p;
  else if (typeof p === 'string' && /^\d{1,3}$/.test(p)) n = Number(p);
  else if (typeof p === 'string') {
    const lower = p.toLowerCase();
    // "icmpv6" is Neutron's legacy spelling of ipv6-icmp.
    const known = PROTOCOLS[lower === 'icmpv6' ? 'ipv6-icmp' : lower];
    if (known === undefined)
      throw badRequest(
        `Security group rule protocol ${p} not supported. Use a name (${Object.keys(PROTOCOLS).join(', ')}), a number 0-255, or any.`,
      );
    n = known;
  } else throw badRequest('protocol must be a name, a number 0-255, any or null.');
  if (!Number.isInteger(n) || n < 0 || n > 255)
    throw badRequest(`Protocol number ${String(p)} is outside 0-255.`);
  // Neutron turns icmp into ipv6-icmp for IPv6 rules.
  if (n === ICMP && ethertype === 'IPv6') n = ICMPV6;
  if (IPV6_ONLY.has(n) && ethertype === 'IPv4')
    throw badRequest(`Protocol ${String(p)} is IPv6-only; it cannot be used with ethertype IPv4.`);
  return n;
}

function optionalInt(v: unknown, field: string): number | null {
  if (v === null || v === undefined) return null;
  if (typeof v !== 'number' || !Number.isInteger(v)) throw badRequest(`${field} must be an integer.`);
  return v;
}

/** Validates a rule with Neutron's semantics and returns its canonical form; throws 400 with the reason. */
export function normaliseRule(input: RuleInput): Rule {
  const direction = input.direction;
  if (direction !== 'ingress' && direction !== 'egress')
    throw badRequest(`direction must be ingress or egress, not '${String(direction)}'.`);
  const etRaw = input.ethertype ?? 'IPv4';
  const et = typeof etRaw === 'string' ? etRaw.toLowerCase() : '';
  if (et !== 'ipv4' && et !== 'ipv6')
    throw badRequest(`ethertype must be IPv4 or IPv6, not '${String(etRaw)}'.`);
  const ethertype: Ethertype = et === 'ipv4' ? 'IPv4' : 'IPv6';
  const protocol = parseProtocol(input.protocol, ethertype);
  let min = optionalInt(input.port_range_min, 'port_range_min');
  let max = optionalInt(input.port_range_max, 'port_range_max');
  if (protocol === ICMP || protocol === ICMPV6) {
    // ICMP: min is the type, max the code (Neutron's overloading of the port fields).
    if (min === null && max !== null)
      throw badRequest('ICMP code (port_range_max) given without a type (port_range_min).');
    if (min !== null && (min < 0 || min > 255)) throw badRequest(`ICMP type ${min} is outside 0-255.`);
    if (max !== null && (max < 0 || max > 255)) throw badRequest(`ICMP code ${max} is outside 0-255.`);
  } else if (min !== null || max !== null) {
    if (protocol === null || !PORTED_PROTOCOLS.has(protocol))
      throw badRequest('Port ranges need protocol tcp, udp, sctp, dccp or udplite.');
    const lo: number = min ?? max ?? 0;
    const hi: number = max ?? min ?? 0;
    if (lo < 1 || hi < 1 || lo > 65535 || hi > 65535)
      throw badRequest('Ports must be between 1 and 65535 (0 is invalid).');
    if (lo > hi) throw badRequest(`port_range_min ${lo} is above port_range_max ${hi}.`);
    // 1-65535 is every port: the same as no range.
    [min, max] = lo === 1 && hi === 65535 ? [null, null] : [lo, hi];
  }
  const prefix = input.remote_ip_prefix ?? null;
  const group = input.remote_group_id ?? null;
  if (prefix !== null && group !== null)
    throw badRequest('Only one of remote_ip_prefix and remote_group_id may be given.');
  if (group !== null && (typeof group !== 'string' || group.length === 0 || group.length > 64))
    throw badRequest('remote_group_id must be a security group id.');
  let remoteIpPrefix: string | null = null;
  if (prefix !== null) {
    const c = parsePrefix(prefix, 'remote_ip_prefix');
    if ((c.version === 4) !== (ethertype === 'IPv4'))
      throw badRequest(`remote_ip_prefix ${prefix} is IPv${c.version} but ethertype is ${ethertype}.`);
    remoteIpPrefix = c.text;
  }
  return {
    direction,
    ethertype,
    protocol: protocol === null ? null : (NAMES[protocol] ?? String(protocol)),
    portRangeMin: min,
    portRangeMax: max,
    remoteIpPrefix,
    remoteGroupId: group,
  };
}

/** True for a prefix that matches every address of its family. */
export const isAnyPrefix = (p: string | null): boolean => p === null || p.endsWith('/0');

/** The canonical key two equal rules share, for Neutron's duplicate-rule 409. */
export const ruleKey = (r: Rule): string =>
  [
    r.direction,
    r.ethertype,
    r.protocol ?? 'any',
    r.portRangeMin ?? '',
    r.portRangeMax ?? '',
    // 0.0.0.0/0 and ::/0 mean the same as no prefix, as Neutron's duplicate check agrees.
    isAnyPrefix(r.remoteIpPrefix) ? '' : r.remoteIpPrefix,
    r.remoteGroupId ?? '',
  ].join('|');

/** Throws 409 when `rule` duplicates one of `existing` (compared by {@link ruleKey}). */
export function assertNotDuplicate(existing: readonly Rule[], rule: Rule): void {
  const key = ruleKey(rule);
  if (existing.some((r) => ruleKey(r) === key)) throw conflict('Security group rule already exists.');
}

/** A security group as the dataplane needs it. */
export interface GroupSpec {
  id: string;
  stateful: boolean;
}

/** Neutron: one port may not mix stateful and stateless groups. */
export function assertGroupsCompatible(groups: readonly GroupSpec[]): void {
  if (new Set(groups.map((g) => g.stateful)).size > 1)
    throw conflict('A port may not mix stateful and stateless security groups.');
}

/** Neutron's per-port limit on allowed address pairs. */
export const MAX_ADDRESS_PAIRS = 10;

export interface AddressPairInput {
  ip_address: string;
  mac_address?: string | undefined;
}

export interface AddressPair {
  /** Canonical CIDR (a host address becomes /32 or /128). */
  ip: string;
  mac: string;
}

/** Validates allowed address pairs; a pair without a MAC uses the port's. */
export function normaliseAddressPairs(pairs: readonly AddressPairInput[], portMac: string): AddressPair[] {
  if (pairs.length > MAX_ADDRESS_PAIRS)
    throw badRequest(`At most ${MAX_ADDRESS_PAIRS} allowed address pairs per port.`);
  const mac = normaliseMac(portMac, 'Port MAC');
  const out: AddressPair[] = [];
  const seen = new Set<string>();
  for (const p of pairs) {
    const pair = {
      ip: parsePrefix(p.ip_address, 'allowed_address_pairs ip_address').text,
      mac:
        p.mac_address === undefined ? mac : normaliseMac(p.mac_address, 'allowed_address_pairs mac_address'),
    };
    const key = `${pair.ip}|${pair.mac}`;
    if (seen.has(key)) throw badRequest(`Allowed address pair ${pair.ip} ${pair.mac} is listed twice.`);
    seen.add(key);
    out.push(pair);
  }
  return out;
}

/** Canonical text of a fixed IP; throws 400 for anything that is not one address. */
export const normaliseIp = (ip: string): string => parseIp(ip, 'Fixed IP').text;

/** Host interface name for a port: `tap` + 11 hex digits of its id, within Linux's 15 characters. */
export const tapName = (portId: string): string =>
  `tap${portId
    .replaceAll('-', '')
    .toLowerCase()
    .replace(/[^0-9a-z]/g, '')
    .slice(0, 11)}`;

/** Zone names: lowercase letters, digits and dashes, as networks store them. */
export const ZONE_NAME = /^[a-z][a-z0-9-]{0,31}$/;
