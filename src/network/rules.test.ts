import { describe, expect, it } from 'vitest';
import { normaliseRule, ruleKey } from './rules.js';

describe('security group rule semantics (Neutron)', () => {
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

  it('accepts names, numbers, any, and case-insensitive ethertypes', () => {
    expect(normaliseRule({ direction: 'egress', protocol: 6 }).protocol).toBe('tcp');
    expect(normaliseRule({ direction: 'egress', protocol: '47' }).protocol).toBe('gre');
    expect(normaliseRule({ direction: 'egress', protocol: 200 }).protocol).toBe('200');
    expect(normaliseRule({ direction: 'egress', protocol: 'any' }).protocol).toBeNull();
    expect(normaliseRule({ direction: 'egress', ethertype: 'ipv6' }).ethertype).toBe('IPv6');
  });

  it('turns icmp into ipv6-icmp for IPv6 and refuses IPv6-only protocols on IPv4', () => {
    expect(normaliseRule({ direction: 'ingress', ethertype: 'IPv6', protocol: 'icmp' }).protocol).toBe(
      'ipv6-icmp',
    );
    expect(() => normaliseRule({ direction: 'ingress', ethertype: 'IPv4', protocol: 'ipv6-icmp' })).toThrow(
      /IPv6-only/,
    );
  });

  it('treats ICMP ranges as type and code', () => {
    expect(
      normaliseRule({ direction: 'ingress', protocol: 'icmp', port_range_min: 8, port_range_max: 0 }),
    ).toMatchObject({ portRangeMin: 8, portRangeMax: 0 });
    expect(() => normaliseRule({ direction: 'ingress', protocol: 'icmp', port_range_max: 0 })).toThrow(
      /without a type/,
    );
  });

  it('checks port ranges', () => {
    expect(() => normaliseRule({ direction: 'ingress', protocol: 'gre', port_range_min: 1 })).toThrow(
      /need protocol tcp/,
    );
    expect(() => normaliseRule({ direction: 'ingress', protocol: 'tcp', port_range_min: 0 })).toThrow(
      /0 is invalid/,
    );
    expect(() =>
      normaliseRule({ direction: 'ingress', protocol: 'tcp', port_range_min: 10, port_range_max: 9 }),
    ).toThrow(/above/);
    expect(
      normaliseRule({ direction: 'ingress', protocol: 'tcp', port_range_min: 1, port_range_max: 65535 }),
    ).toMatchObject({ portRangeMin: null, portRangeMax: null });
    expect(normaliseRule({ direction: 'ingress', protocol: 'udp', port_range_min: 53 })).toMatchObject({
      portRangeMin: 53,
      portRangeMax: 53,
    });
  });

  it('checks remotes: one kind, matching family, network address', () => {
    expect(() =>
      normaliseRule({ direction: 'ingress', remote_ip_prefix: '10.0.0.0/8', remote_group_id: 'g' }),
    ).toThrow(/Only one/);
    expect(() => normaliseRule({ direction: 'ingress', remote_ip_prefix: 'fd00::/8' })).toThrow(
      /IPv6 but ethertype is IPv4/,
    );
    expect(() => normaliseRule({ direction: 'ingress', remote_ip_prefix: '10.1.2.3/8' })).toThrow(
      /did you mean 10.0.0.0\/8/,
    );
    expect(normaliseRule({ direction: 'ingress', remote_ip_prefix: '192.168.100.7' }).remoteIpPrefix).toBe(
      '192.168.100.7/32',
    );
  });

  it('keys duplicates alike: names and numbers, 0.0.0.0/0 and no prefix', () => {
    const k = (r: Parameters<typeof normaliseRule>[0]) => ruleKey(normaliseRule(r));
    expect(k({ direction: 'ingress', protocol: 'tcp', port_range_min: 22 })).toBe(
      k({ direction: 'ingress', protocol: 6, port_range_min: 22, port_range_max: 22 }),
    );
    expect(k({ direction: 'egress', remote_ip_prefix: '0.0.0.0/0' })).toBe(k({ direction: 'egress' }));
    expect(k({ direction: 'egress' })).not.toBe(k({ direction: 'egress', ethertype: 'IPv6' }));
  });
});
