import { describe, expect, it } from 'vitest';
import { maskTokens, toCadf } from './cadf.js';
import { classify, isAdminOnly } from './security-events.js';
import { formatSyslog, frame } from './syslog.js';

const row = (over: Partial<Parameters<typeof toCadf>[0]> = {}): Parameters<typeof toCadf>[0] => ({
  seq: 7,
  id: 'e7',
  time: '2026-01-02T03:04:05.678Z',
  request_id: 'req-1',
  user_id: 'u1',
  user_name: 'alice',
  project_id: 'p1',
  roles: 'member,reader',
  source_ip: '192.0.2.9',
  action: 'compute:servers:create',
  method: 'POST',
  path: '/compute/v2.1/servers',
  target_type: 'server',
  target_id: 's1',
  outcome: 'success',
  status: 202,
  reason: null,
  prev_hash: '0'.repeat(64),
  hash: 'f'.repeat(64),
  ...over,
});

describe('security event classification', () => {
  it('maps the guide §13 key events to categories and severities', () => {
    expect(classify(row())).toEqual({ category: 'server.create', severity: 'low' });
    expect(classify(row({ action: 'compute:servers:delete', method: 'DELETE' })).category).toBe(
      'server.delete',
    );
    expect(
      classify(row({ action: 'identity:issue_token', outcome: 'denied', status: 401, user_id: null })),
    ).toEqual({
      category: 'authentication.failure',
      severity: 'medium',
    });
    expect(classify(row({ action: 'break_glass:use', method: 'SYSTEM' }))).toEqual({
      category: 'break_glass',
      severity: 'critical',
    });
    expect(
      classify(row({ action: 'break_glass:open_session', outcome: 'denied', status: 401 })).severity,
    ).toBe('critical');
    expect(classify(row({ action: 'compute:servers:quarantine:isolate', outcome: 'failure' })).severity).toBe(
      'critical',
    );
    expect(classify(row({ action: 'network:drop_spike', method: 'SYSTEM' })).category).toBe(
      'firewall.drop_spike',
    );
    expect(classify(row({ action: 'console:connect', method: 'SYSTEM' })).category).toBe('console.session');
    expect(classify(row({ action: 'console:recordings:replay', method: 'GET', status: 200 })).category).toBe(
      'console.replay',
    );
    expect(
      classify(row({ outcome: 'failure', status: 403, reason: 'Quota exceeded for instances: …' })),
    ).toEqual({
      category: 'quota.violation',
      severity: 'medium',
    });
  });

  it('calls a refused admin-only action a privilege escalation attempt, and nothing else', () => {
    expect(isAdminOnly('compute:flavors:create')).toBe(true);
    expect(isAdminOnly('compute:servers:create')).toBe(false);
    expect(isAdminOnly('not-an-action')).toBe(false);
    const refused = row({ action: 'compute:flavors:create', outcome: 'denied', status: 403 });
    expect(classify(refused)).toEqual({ category: 'privilege_escalation.attempt', severity: 'high' });
    // No token is not an escalation (401), nor is a member's refusal on a member action.
    expect(classify({ ...refused, status: 401, user_id: null }).category).toBe('access.denied');
    expect(classify(row({ outcome: 'denied', status: 403 })).category).toBe('access.denied');
    expect(classify(row({ action: 'unknown:thing', method: 'GET' }))).toEqual({
      category: 'activity',
      severity: 'info',
    });
  });
});

describe('CADF and syslog formatting', () => {
  it('masks tokens completely', () => {
    const token = `${'A'.repeat(20)}${'_b-c'.repeat(5)}xyz`;
    expect(token).toHaveLength(43);
    expect(maskTokens(`bad token ${token} seen`)).toBe('bad token *** seen');
    expect(maskTokens('X-Auth-Token: abc.def')).toBe('X-Auth-Token: ***');
    const e = toCadf(row({ reason: `replayed ${token}`, outcome: 'failure', status: 400 }), 'host1');
    expect(JSON.stringify(e)).not.toContain(token.slice(0, 20));
  });

  it('writes RFC 5424 with escaped structured data, CEF and JSON, octet-count framed', () => {
    const e = toCadf(row({ user_name: 'a"l]i\\ce' }), 'host1');
    const m = formatSyslog(e, 'rfc5424', { hostname: 'host 1', appName: 'bulwark', procId: '42' });
    expect(m).toMatch(
      /^<109>1 2026-01-02T03:04:05.678Z host1 bulwark 42 server.create \[bulwark@32473 seq="7" /,
    );
    expect(m).toContain('user="a\\"l\\]i\\\\ce"');
    const cef = formatSyslog(e, 'cef', { hostname: 'h', appName: 'bulwark', procId: '1' });
    expect(cef).toMatch(/ - CEF:0\|Bulwark\|Bulwark\|1\|compute:servers:create\|server.create\|3\|rt=/);
    const json = formatSyslog(e, 'json', { hostname: 'h', appName: 'bulwark', procId: '1' });
    expect(JSON.parse(json.slice(json.indexOf(' - ') + 3))).toMatchObject({
      action: 'create',
      severity: 'low',
    });
    const f = frame('héllo');
    expect(f.toString()).toBe('6 héllo');
  });
});
