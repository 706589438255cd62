import { describe, expect, it } from 'vitest';
import { defaultLayout, firstFree, parseCidr, validateLayout } from './ipam.js';

describe('ipam', () => {
  it('lays out IPv4 and IPv6 subnets like Neutron', () => {
    expect(defaultLayout(parseCidr('10.1.0.0/24'))).toEqual({
      gateway: '10.1.0.1',
      pools: [{ start: '10.1.0.2', end: '10.1.0.254' }],
    });
    const v6 = defaultLayout(parseCidr('fd00:1::/64'));
    expect(v6.gateway).toBe('fd00:1::1');
    expect(v6.pools[0]).toEqual({ start: 'fd00:1::2', end: 'fd00:1::ffff:ffff:ffff:ffff' });
  });

  it('refuses host bits, wrong families, tiny subnets and bad pools', () => {
    expect(() => parseCidr('10.1.0.5/24')).toThrow(/did you mean 10.1.0.0\/24/);
    expect(() => parseCidr('10.1.0.0/24', 6)).toThrow(/IPv4/);
    expect(() => parseCidr('nonsense')).toThrow(/not a valid CIDR/);
    expect(() => defaultLayout(parseCidr('10.1.0.0/30'))).toThrow(/too small/);
    const c = parseCidr('10.1.0.0/24');
    expect(() => validateLayout(c, '10.1.0.1', [{ start: '10.1.0.10', end: '10.2.0.1' }])).toThrow(/outside/);
    expect(() => validateLayout(c, '10.1.0.11', [{ start: '10.1.0.10', end: '10.1.0.20' }])).toThrow(
      /inside an allocation pool/,
    );
    expect(() =>
      validateLayout(c, null, [
        { start: '10.1.0.10', end: '10.1.0.20' },
        { start: '10.1.0.15', end: '10.1.0.30' },
      ]),
    ).toThrow(/overlap/);
  });

  it('allocates the lowest free address and reports exhaustion', () => {
    const pools = [{ start: '10.1.0.2', end: '10.1.0.4' }];
    expect(firstFree(4, pools, new Set(['10.1.0.2']))).toBe('10.1.0.3');
    expect(firstFree(4, pools, new Set(['10.1.0.2', '10.1.0.3', '10.1.0.4']))).toBeNull();
  });
});
