import { describe, expect, it } from 'vitest';
import { refuses } from '../../test/helpers/refuses.js';
import { linkLocalFromMac, mergePrefixes, parsePrefix } from './addr.js';
import {
  assertGroupsCompatible,
  assertNotDuplicate,
  normaliseAddressPairs,
  normaliseRule,
  protocolNumber,
  type RuleInput,
  ruleKey,
  tapName,
} from './model.js';

const rule = (r: Partial<RuleInput>) => normaliseRule({ direction: 'ingress', ...r });

describe('security group rules (Neutron semantics)', () => {
  it('normalises the spec’s HTTPS rule', () => {
    expect(
      normaliseRule({
        direction: 'ingress',
        protocol: 'tcp',
        port_range_min: 443,
        port_range_max: 443,
        remote_ip_prefix: '10.0.0.0/8',
      }),
    ).toEqual({
      direction: 'ingress',
      ethertype: 'IPv4',
      protocol: 'tcp',
      portRangeMin: 443,
      portRangeMax: 443,
      remoteIpPrefix: '10.0.0.0/8',
      remoteGroupId: null,
    });
  });

  it('checks direction and ethertype (case-insensitive, IPv4 by default)', () => {
    refuses(() => normaliseRule({ direction: 'inbound' }), /direction must be ingress or egress/);
    refuses(() => normaliseRule({ direction: '' }), /direction/);
    expect(rule({}).ethertype).toBe('IPv4');
    expect(rule({ ethertype: 'ipv6' }).ethertype).toBe('IPv6');
    expect(rule({ ethertype: 'IPV4' }).ethertype).toBe('IPv4');
    refuses(() => rule({ ethertype: 'IPv5' }), /ethertype must be IPv4 or IPv6/);
    refuses(() => rule({ ethertype: 'ARP' }), /ethertype/);
  });

  it('accepts protocol names, numbers 0-255, any and null', () => {
    expect(rule({ protocol: null }).protocol).toBeNull();
    expect(rule({ protocol: 'any' }).protocol).toBeNull();
    expect(rule({ protocol: '' }).protocol).toBeNull();
    expect(rule({}).protocol).toBeNull();
    for (const [name, n] of Object.entries({
      tcp: 6,
      udp: 17,
      icmp: 1,
      sctp: 132,
      dccp: 33,
      udplite: 136,
      gre: 47,
      esp: 50,
      ah: 51,
      vrrp: 112,
    })) {
      expect(rule({ protocol: name }).protocol).toBe(name);
      expect(rule({ protocol: n }).protocol).toBe(name);
      expect(rule({ protocol: String(n) }).protocol).toBe(name);
      expect(protocolNumber(name)).toBe(n);
    }
    expect(rule({ protocol: 'TCP' }).protocol).toBe('tcp');
    expect(rule({ protocol: 0 }).protocol).toBe('0');
    expect(rule({ protocol: 255 }).protocol).toBe('255');
    expect(rule({ protocol: 200 }).protocol).toBe('200');
    expect(protocolNumber('200')).toBe(200);
    refuses(() => rule({ protocol: 256 }), /outside 0-255/);
    refuses(() => rule({ protocol: -1 }), /outside 0-255/);
    refuses(() => rule({ protocol: 6.5 }), /outside 0-255/);
    refuses(() => rule({ protocol: 'ospf' }), /protocol ospf not supported/);
    refuses(() => rule({ protocol: '999' }), /outside 0-255/);
  });

  it('turns icmp into ipv6-icmp for IPv6 and refuses IPv6-only protocols on IPv4', () => {
    expect(rule({ ethertype: 'IPv6', protocol: 'icmp' }).protocol).toBe('ipv6-icmp');
    expect(rule({ ethertype: 'IPv6', protocol: 1 }).protocol).toBe('ipv6-icmp');
    expect(rule({ ethertype: 'IPv6', protocol: 'icmpv6' }).protocol).toBe('ipv6-icmp');
    expect(rule({ ethertype: 'IPv6', protocol: 'ipv6-icmp' }).protocol).toBe('ipv6-icmp');
    refuses(() => rule({ ethertype: 'IPv4', protocol: 'ipv6-icmp' }), /IPv6-only/);
    refuses(() => rule({ ethertype: 'IPv4', protocol: 58 }), /IPv6-only/);
    refuses(() => rule({ protocol: 'icmpv6' }), /IPv6-only/);
  });

  it('treats ICMP port fields as type and code; a code needs a type', () => {
    expect(rule({ protocol: 'icmp', port_range_min: 8, port_range_max: 0 })).toMatchObject({
      portRangeMin: 8,
      portRangeMax: 0,
    });
    expect(rule({ protocol: 'icmp', port_range_min: 0 })).toMatchObject({
      portRangeMin: 0,
      portRangeMax: null,
    });
    expect(rule({ ethertype: 'IPv6', protocol: 'icmp', port_range_min: 128 })).toMatchObject({
      protocol: 'ipv6-icmp',
      portRangeMin: 128,
    });
    refuses(
      () => rule({ protocol: 'icmp', port_range_max: 0 }),
      /code \(port_range_max\) given without a type/,
    );
    refuses(() => rule({ protocol: 'icmp', port_range_min: 256 }), /ICMP type 256/);
    refuses(() => rule({ protocol: 'icmp', port_range_min: 3, port_range_max: 256 }), /ICMP code 256/);
    refuses(() => rule({ protocol: 'icmp', port_range_min: -1 }), /ICMP type -1/);
  });

  it('allows port ranges only for tcp, udp, sctp, dccp and udplite, within 1-65535, min ≤ max', () => {
    for (const p of ['tcp', 'udp', 'sctp', 'dccp', 'udplite'])
      expect(rule({ protocol: p, port_range_min: 80, port_range_max: 90 })).toMatchObject({
        portRangeMin: 80,
        portRangeMax: 90,
      });
    for (const p of ['gre', 'esp', 'ah', 'vrrp', '200'])
      refuses(() => rule({ protocol: p, port_range_min: 1, port_range_max: 2 }), /need protocol tcp/);
    refuses(() => rule({ port_range_min: 22 }), /need protocol tcp/);
    refuses(() => rule({ protocol: 'tcp', port_range_min: 0 }), /0 is invalid/);
    refuses(() => rule({ protocol: 'tcp', port_range_min: 0, port_range_max: 10 }), /0 is invalid/);
    refuses(() => rule({ protocol: 'tcp', port_range_min: 1, port_range_max: 65536 }), /between 1 and 65535/);
    refuses(
      () => rule({ protocol: 'tcp', port_range_min: 10, port_range_max: 9 }),
      /10 is above port_range_max 9/,
    );
    refuses(() => rule({ protocol: 'tcp', port_range_min: 1.5 }), /must be an integer/);
    // 1-65535 is no range at all.
    expect(rule({ protocol: 'tcp', port_range_min: 1, port_range_max: 65535 })).toMatchObject({
      portRangeMin: null,
      portRangeMax: null,
    });
    // One end alone is a single port.
    expect(rule({ protocol: 'udp', port_range_min: 53 })).toMatchObject({
      portRangeMin: 53,
      portRangeMax: 53,
    });
    expect(rule({ protocol: 'udp', port_range_max: 53 })).toMatchObject({
      portRangeMin: 53,
      portRangeMax: 53,
    });
  });

  it('checks remotes: at most one kind, family matching the ethertype, prefix normalised', () => {
    refuses(
      () => rule({ remote_ip_prefix: '10.0.0.0/8', remote_group_id: 'g' }),
      /Only one of remote_ip_prefix/,
    );
    refuses(() => rule({ remote_ip_prefix: 'fd00::/8' }), /is IPv6 but ethertype is IPv4/);
    refuses(
      () => rule({ ethertype: 'IPv6', remote_ip_prefix: '10.0.0.0/8' }),
      /is IPv4 but ethertype is IPv6/,
    );
    refuses(() => rule({ remote_ip_prefix: '10.0.0.0/33' }), /invalid prefix length/);
    refuses(() => rule({ remote_ip_prefix: 'ten/8' }), /not a valid CIDR/);
    refuses(() => rule({ remote_ip_prefix: '10.1/8' }), /not a valid CIDR/);
    refuses(() => rule({ remote_group_id: '' }), /remote_group_id/);
    expect(rule({ remote_ip_prefix: '10.0.0.5/8' }).remoteIpPrefix).toBe('10.0.0.0/8');
    expect(rule({ remote_ip_prefix: '192.168.100.7' }).remoteIpPrefix).toBe('192.168.100.7/32');
    expect(rule({ ethertype: 'IPv6', remote_ip_prefix: 'FD00:0:0::1/64' }).remoteIpPrefix).toBe('fd00::/64');
    expect(rule({ ethertype: 'IPv6', remote_ip_prefix: 'fd00::1' }).remoteIpPrefix).toBe('fd00::1/128');
    expect(rule({ remote_group_id: 'g1' }).remoteGroupId).toBe('g1');
  });

  it('keys duplicates alike: names and numbers, 0.0.0.0/0 and no prefix, whole port range and none', () => {
    const k = (r: RuleInput) => ruleKey(normaliseRule(r));
    expect(k({ direction: 'ingress', protocol: 'tcp', port_range_min: 22 })).toBe(
      k({ direction: 'ingress', protocol: 6, port_range_min: 22, port_range_max: 22 }),
    );
    expect(k({ direction: 'egress', remote_ip_prefix: '0.0.0.0/0' })).toBe(k({ direction: 'egress' }));
    expect(k({ direction: 'egress', ethertype: 'IPv6', remote_ip_prefix: '::/0' })).toBe(
      k({ direction: 'egress', ethertype: 'ipv6' }),
    );
    expect(k({ direction: 'ingress', protocol: 'tcp', port_range_min: 1, port_range_max: 65535 })).toBe(
      k({ direction: 'ingress', protocol: 'tcp' }),
    );
    expect(k({ direction: 'ingress', remote_ip_prefix: '10.0.0.5/8' })).toBe(
      k({ direction: 'ingress', remote_ip_prefix: '10.0.0.0/8' }),
    );
    expect(k({ direction: 'egress' })).not.toBe(k({ direction: 'egress', ethertype: 'IPv6' }));
    expect(k({ direction: 'egress' })).not.toBe(k({ direction: 'ingress' }));
    expect(k({ direction: 'ingress', remote_group_id: 'a' })).not.toBe(
      k({ direction: 'ingress', remote_group_id: 'b' }),
    );
    const existing = [normaliseRule({ direction: 'ingress', protocol: 'tcp', port_range_min: 22 })];
    refuses(
      () =>
        assertNotDuplicate(
          existing,
          normaliseRule({ direction: 'ingress', protocol: '6', port_range_min: 22 }),
        ),
      /already exists/,
      'Conflict',
    );
    expect(() =>
      assertNotDuplicate(
        existing,
        normaliseRule({ direction: 'ingress', protocol: 'udp', port_range_min: 22 }),
      ),
    ).not.toThrow();
  });

  it('refuses a port that mixes stateful and stateless groups', () => {
    expect(() =>
      assertGroupsCompatible([
        { id: 'a', stateful: true },
        { id: 'b', stateful: true },
      ]),
    ).not.toThrow();
    expect(() => assertGroupsCompatible([])).not.toThrow();
    refuses(
      () =>
        assertGroupsCompatible([
          { id: 'a', stateful: true },
          { id: 'b', stateful: false },
        ]),
      /may not mix stateful and stateless/,
      'Conflict',
    );
  });
});

describe('allowed address pairs and names', () => {
  const mac = 'fa:16:3e:00:00:01';
  it('normalises pairs, defaults their MAC, and allows at most 10', () => {
    expect(
      normaliseAddressPairs(
        [{ ip_address: '10.0.0.5' }, { ip_address: '10.1.0.9/16', mac_address: 'FA:16:3E:00:00:02' }],
        mac,
      ),
    ).toEqual([
      { ip: '10.0.0.5/32', mac },
      { ip: '10.1.0.0/16', mac: 'fa:16:3e:00:00:02' },
    ]);
    refuses(
      () =>
        normaliseAddressPairs(
          Array.from({ length: 11 }, (_, i) => ({ ip_address: `10.0.0.${i + 1}` })),
          mac,
        ),
      /At most 10/,
    );
    refuses(() => normaliseAddressPairs([{ ip_address: 'nope' }], mac), /not a valid CIDR/);
    refuses(
      () => normaliseAddressPairs([{ ip_address: '10.0.0.1', mac_address: '01:00:5e:00:00:01' }], mac),
      /multicast/,
    );
    refuses(() => normaliseAddressPairs([{ ip_address: '10.0.0.1', mac_address: 'zz' }], mac), /not a MAC/);
    refuses(
      () => normaliseAddressPairs([{ ip_address: '10.0.0.1' }, { ip_address: '10.0.0.1/32' }], mac),
      /twice/,
    );
  });

  it('derives tap names within 15 characters', () => {
    const n = tapName('3f2504e0-4f89-11d3-9a0c-0305e82c3301');
    expect(n).toBe('tap3f2504e04f8');
    expect(n.length).toBeLessThanOrEqual(15);
  });

  it('derives EUI-64 link-local addresses and merges nested prefixes', () => {
    expect(linkLocalFromMac('fa:16:3e:00:00:01')).toBe('fe80::f816:3eff:fe00:1');
    expect(linkLocalFromMac('00:11:22:33:44:55')).toBe('fe80::211:22ff:fe33:4455');
    const merged = mergePrefixes(
      ['10.1.0.0/16', '10.0.0.0/8', '10.2.3.4', '192.168.0.0/24', 'fd00::/64'].map((p) => parsePrefix(p)),
    );
    expect(merged.map((p) => p.text)).toEqual(['10.0.0.0/8', '192.168.0.0/24', 'fd00::/64']);
  });
});
