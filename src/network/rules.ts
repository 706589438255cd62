import { badRequest } from '../errors.js';
import { parseCidr } from './ipam.js';

/** A security group rule as the API receives it (Neutron field names). */
export interface RuleInput {
  direction: string;
  ethertype?: string | undefined;
  protocol?: string | number | null | undefined;
  port_range_min?: number | null | undefined;
  port_range_max?: number | null | undefined;
  remote_ip_prefix?: string | null | undefined;
  remote_group_id?: string | null | undefined;
}

/** A validated, canonical rule. `protocol` is Neutron's name when it has one, else the number as text; null for any. */
export interface NormalRule {
  direction: 'ingress' | 'egress';
  ethertype: 'IPv4' | 'IPv6';
  protocol: string | null;
  portRangeMin: number | null;
  portRangeMax: number | null;
  remoteIpPrefix: string | null;
  remoteGroupId: string | null;
}

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
const PORTED = new Set([6, 17, 132, 33, 136]);
const IPV6_ONLY = new Set([58]);

function protocolNumber(p: string | number | null | undefined, ethertype: 'IPv4' | 'IPv6'): number | null {
  if (p === null || p === undefined || p === '' || p === 'any') return null;
  let n: number;
  if (typeof p === 'number' || /^\d{1,3}$/.test(p)) n = Number(p);
  else {
    const name = p.toLowerCase() === 'icmpv6' ? 'ipv6-icmp' : p.toLowerCase();
    const known = PROTOCOLS[name];
    if (known === undefined)
      throw badRequest(
        `Security group rule protocol ${p} not supported. Use a name (${Object.keys(PROTOCOLS).join(', ')}), a number 0-255, or any.`,
      );
    n = known;
  }
  if (!Number.isInteger(n) || n < 0 || n > 255) throw badRequest(`Protocol number ${p} is outside 0-255.`);
  // Neutron turns icmp into ipv6-icmp for IPv6 rules.
  if (n === 1 && ethertype === 'IPv6') n = 58;
  if (IPV6_ONLY.has(n) && ethertype === 'IPv4')
    throw badRequest(`Protocol ${p} is IPv6-only; it cannot be used with ethertype IPv4.`);
  return n;
}

/** Validates a rule with Neutron's semantics and returns its canonical form. */
export function normaliseRule(input: RuleInput): NormalRule {
  const direction = input.direction;
  if (direction !== 'ingress' && direction !== 'egress')
    throw badRequest(`direction must be ingress or egress, not '${direction}'.`);
  const et = (input.ethertype ?? 'IPv4').toLowerCase();
  if (et !== 'ipv4' && et !== 'ipv6')
    throw badRequest(`ethertype must be IPv4 or IPv6, not '${input.ethertype}'.`);
  const ethertype = et === 'ipv4' ? 'IPv4' : 'IPv6';
  const protocol = protocolNumber(input.protocol, ethertype);
  let min = input.port_range_min ?? null;
  let max = input.port_range_max ?? null;
  if (protocol === 1 || protocol === 58) {
    // ICMP: min is the type, max the code.
    if (min === null && max !== null)
      throw badRequest('ICMP code (port_range_max) given without a type (port_range_min).');
    if (min !== null && (min < 0 || min > 255)) throw badRequest(`ICMP type ${min} is outside 0-255.`);
    if (max !== null && (max < 0 || max > 255)) throw badRequest(`ICMP code ${max} is outside 0-255.`);
  } else if (min !== null || max !== null) {
    if (protocol === null || !PORTED.has(protocol)) {
      throw badRequest('Port ranges need protocol tcp, udp, sctp, dccp or udplite.');
    }
    if (min === null || max === null) {
      min ??= max;
      max ??= min;
    }
    if ((min ?? 0) < 1 || (max ?? 0) > 65535)
      throw badRequest('Ports must be between 1 and 65535 (0 is invalid).');
    if ((min ?? 0) > (max ?? 0)) throw badRequest(`port_range_min ${min} is above port_range_max ${max}.`);
    // 1-65535 is every port: the same as no range.
    if (min === 1 && max === 65535) min = max = null;
  }
  const prefix = input.remote_ip_prefix ?? null;
  const group = input.remote_group_id ?? null;
  if (prefix !== null && group !== null)
    throw badRequest('Only one of remote_ip_prefix and remote_group_id may be given.');
  let remoteIpPrefix: string | null = null;
  if (prefix !== null) {
    const c = parseCidr(prefix.includes('/') ? prefix : `${prefix}/${prefix.includes(':') ? 128 : 32}`);
    if ((c.version === 4) !== (ethertype === 'IPv4')) {
      throw badRequest(`remote_ip_prefix ${prefix} is IPv${c.version} but ethertype is ${ethertype}.`);
    }
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

/** The canonical key two equal rules share, for Neutron's duplicate-rule 409. */
export const ruleKey = (r: NormalRule): string => {
  // 0.0.0.0/0 and ::/0 mean the same as no prefix, as Neutron's duplicate check agrees.
  const prefix = r.remoteIpPrefix === null || r.remoteIpPrefix.endsWith('/0') ? '' : r.remoteIpPrefix;
  return [
    r.direction,
    r.ethertype,
    r.protocol ?? 'any',
    r.portRangeMin ?? '',
    r.portRangeMax ?? '',
    prefix,
    r.remoteGroupId ?? '',
  ].join('|');
};
