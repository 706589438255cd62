import { describe, expect, it } from 'vitest';
import { ruleMatches, serviceOf } from './access-rules.js';

const rule = (path: string, method = 'GET', service = 'compute') => ({ id: 'r', service, method, path });

describe('application credential access rules', () => {
  it('matches exact paths, one segment with *, any depth with **', () => {
    const req = { service: 'compute', method: 'GET', path: '/v2.1/servers/abc' };
    expect(ruleMatches(rule('/v2.1/servers/abc'), req)).toBe(true);
    expect(ruleMatches(rule('/v2.1/servers/*'), req)).toBe(true);
    expect(ruleMatches(rule('/v2.1/**'), req)).toBe(true);
    expect(ruleMatches(rule('/v2.1/servers'), req)).toBe(false);
    expect(ruleMatches(rule('/v2.1/*'), req)).toBe(false);
    expect(ruleMatches(rule('/v2.1/servers/*/action'), req)).toBe(false);
    expect(ruleMatches(rule('/v2.1/servers/*', 'DELETE'), req)).toBe(false);
    expect(ruleMatches(rule('/v2.1/servers/*', 'GET', 'network'), req)).toBe(false);
    expect(ruleMatches(rule('/v2.1/servers/**'), { ...req, path: '/v2.1/servers' })).toBe(true);
  });

  it('finds the service and the path it sees from the catalog mounts', () => {
    const services = [
      { type: 'compute', path: '/compute/v2.1' },
      { type: 'network', path: '/network' },
    ];
    expect(serviceOf(services, '/compute/v2.1/servers?limit=1')).toEqual({
      service: 'compute',
      path: '/v2.1/servers',
    });
    expect(serviceOf(services, '/network/v2.0/ports')).toEqual({ service: 'network', path: '/v2.0/ports' });
    expect(serviceOf(services, '/computer/x')).toBeNull();
  });
});
