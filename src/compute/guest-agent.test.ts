import { describe, expect, it } from 'vitest';
import { BulwarkError } from '../errors.js';
import {
  assertGuestAgentAllowed,
  filterGuestAgentCommand,
  type GuestAgentGrant,
  guestAgentArgs,
  guestAgentAuditEvent,
  guestAgentDecision,
  MONITORING_COMMANDS,
  validateGrant,
} from './guest-agent.js';

const SERVER = '11111111-2222-4333-8444-555555555555';
const OTHER = '99999999-2222-4333-8444-555555555555';
const NOW = new Date('2026-01-01T12:00:00Z');
const grant = (o: Partial<GuestAgentGrant> = {}): GuestAgentGrant => ({
  serverId: SERVER,
  commands: ['guest-exec', 'guest-exec-status'],
  grantedBy: 'u-admin',
  expiresAt: '2026-01-01T13:00:00Z',
  ...o,
});
const filter = (request: unknown, grants: GuestAgentGrant[] = [], now = NOW) =>
  filterGuestAgentCommand({ serverId: SERVER, request, grants, now });

describe('guest agent decision', () => {
  it('is off unless the flavor or the image asks', () => {
    expect(guestAgentDecision({}, {})).toMatchObject({ enabled: false, source: 'default' });
    expect(guestAgentDecision({ 'hw:qemu_guest_agent': 'true' }, {})).toMatchObject({
      enabled: true,
      source: 'flavor',
    });
    expect(guestAgentDecision({}, { hw_qemu_guest_agent: 'yes' })).toMatchObject({
      enabled: true,
      source: 'image',
    });
    expect(guestAgentDecision({}, { hw_qemu_guest_agent: 'maybe' }).enabled).toBe(false);
    expect(guestAgentDecision({}, { hw_qemu_guest_agent: true }).enabled).toBe(false);
  });

  it("lets the operator's flavor say no over the image", () => {
    expect(
      guestAgentDecision({ 'hw:qemu_guest_agent': 'false' }, { hw_qemu_guest_agent: 'yes' }),
    ).toMatchObject({ enabled: false, source: 'flavor' });
  });

  it('puts the channel on a unix socket in the guest dir', () => {
    expect(guestAgentArgs({ dir: '/var/lib/bulwark/instances/x' })).toEqual([
      '-chardev',
      'socket,id=qga0,path=/var/lib/bulwark/instances/x/qga.sock,server=on,wait=off',
      '-device',
      'virtio-serial-pci,id=qga-serial0',
      '-device',
      'virtserialport,bus=qga-serial0.0,chardev=qga0,name=org.qemu.guest_agent.0',
    ]);
    expect(guestAgentArgs({ dir: '/a,b' })[1]).toContain('path=/a,,b/qga.sock,');
    expect(() => guestAgentArgs({ dir: 'rel' })).toThrow(/absolute/);
  });
});

describe('guest agent command filter', () => {
  it('passes read-only monitoring commands by default', () => {
    for (const c of ['guest-ping', 'guest-info', 'guest-get-osinfo', 'guest-network-get-interfaces']) {
      const d = filter(JSON.stringify({ execute: c }));
      expect(d).toMatchObject({
        allowed: true,
        command: c,
        rule: 'monitoring',
        forward: JSON.stringify({ execute: c }),
      });
    }
    expect(MONITORING_COMMANDS).toEqual(
      expect.arrayContaining([
        'guest-get-time',
        'guest-get-fsinfo',
        'guest-get-vcpus',
        'guest-get-memory-blocks',
      ]),
    );
  });

  it('refuses guest-exec by default with a clear message', () => {
    const d = filter({ execute: 'guest-exec', arguments: { path: '/bin/sh' } });
    expect(d).toMatchObject({ allowed: false, rule: 'needs-grant', command: 'guest-exec', forward: null });
    expect(d.reason).toBe(
      `guest-exec runs code or touches files in the guest: an admin must grant guest-exec for server ${SERVER} (with an expiry) first.`,
    );
    expect(() => assertGuestAgentAllowed(d)).toThrow(BulwarkError);
    expect(filter({ execute: 'guest-file-open', arguments: { path: '/etc/shadow' } }).rule).toBe(
      'needs-grant',
    );
  });

  it('allows guest-exec with a live grant for this server, forwarding only what was checked', () => {
    const d = filter({ execute: 'guest-exec', arguments: { path: '/bin/true' } }, [grant()]);
    expect(d).toMatchObject({
      allowed: true,
      rule: 'granted',
      grant: { grantedBy: 'u-admin', expiresAt: '2026-01-01T13:00:00Z' },
    });
    expect(assertGuestAgentAllowed(d)).toBe('{"execute":"guest-exec","arguments":{"path":"/bin/true"}}');
  });

  it('refuses after the grant expires, for another server, and for commands the grant does not name', () => {
    const expired = filter({ execute: 'guest-exec' }, [grant()], new Date('2026-01-01T13:00:00Z'));
    expect(expired).toMatchObject({ allowed: false, rule: 'grant-expired' });
    expect(expired.reason).toMatch(/has expired/);
    const other = filter({ execute: 'guest-exec' }, [grant({ serverId: OTHER })]);
    expect(other).toMatchObject({ allowed: false, rule: 'grant-other-server' });
    expect(filter({ execute: 'guest-file-write' }, [grant()]).rule).toBe('needs-grant');
  });

  it('refuses unknown and dangerous non-grantable commands', () => {
    for (const c of ['guest-set-user-password', 'guest-shutdown', 'guest-fsfreeze-freeze', 'guest-made-up']) {
      const d = filter({ execute: c });
      expect(d).toMatchObject({ allowed: false, rule: 'unknown-command', command: c });
      expect(d.reason).toMatch(/not allowed through the guest agent filter/);
    }
    expect(() => assertGuestAgentAllowed(filter({ execute: 'guest-shutdown' }))).toThrow(
      expect.objectContaining({ kind: 'Forbidden' }),
    );
  });

  it('refuses malformed requests', () => {
    const bad: unknown[] = [
      'not json',
      '[1]',
      null,
      42,
      {},
      { execute: 7 },
      { execute: 'GUEST-PING' },
      { execute: 'ping' },
      { execute: 'guest-ping', id: 1 },
      { execute: 'guest-ping', arguments: [] },
      { execute: 'guest-ping', arguments: 'x' },
      'x'.repeat(1024 * 1024 + 1),
    ];
    for (const r of bad) {
      const d = filter(r);
      expect(d, JSON.stringify(r)?.slice(0, 40)).toMatchObject({
        allowed: false,
        rule: 'malformed',
        forward: null,
      });
    }
    expect(() => assertGuestAgentAllowed(filter('{'))).toThrow(
      expect.objectContaining({ kind: 'BadRequest' }),
    );
  });

  it('returns an audit-ready record for every decision', () => {
    const allowed = guestAgentAuditEvent(filter({ execute: 'guest-exec' }, [grant()]));
    expect(allowed).toMatchObject({
      action: 'compute:guest_agent:guest-exec',
      targetType: 'server',
      targetId: SERVER,
      outcome: 'success',
    });
    expect(allowed.reason).toMatch(/^granted: .*grant by u-admin, expires 2026-01-01T13:00:00Z/);
    const denied = guestAgentAuditEvent(filter('nope'));
    expect(denied).toMatchObject({ action: 'compute:guest_agent:malformed', outcome: 'denied' });
  });

  it('validates grants as an admin makes them', () => {
    expect(() => validateGrant(grant(), NOW)).not.toThrow();
    expect(() => validateGrant(grant({ commands: ['guest-shutdown'] }), NOW)).toThrow(/cannot be granted/);
    expect(() => validateGrant(grant({ expiresAt: '2025-12-31T00:00:00Z' }), NOW)).toThrow(/future/);
    expect(() => validateGrant(grant({ expiresAt: 'soon' }), NOW)).toThrow(/ISO 8601/);
    expect(() => validateGrant(grant({ commands: [] }), NOW)).toThrow(/needs commands/);
  });
});
