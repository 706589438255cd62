/**
 * Dashboard logins beyond password + TOTP (docs/dashboard.md): the bootstrap
 * admin of a cloud that requires admin MFA gets a restricted session that can
 * only enroll a factor, and a recovery code stands in for the device. The
 * security-key login is walked in Chromium (test/web/dashboard-console.test.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CSRF_COOKIE, csrfTokenFor, SESSION_COOKIE } from '../../src/dashboard/session.js';
import { totpCode, totpStep } from '../../src/identity/totp.js';
import { PASSWORD, startTestApi, type TestApi } from '../helpers/api.js';
import { dialects } from '../helpers/store.js';

const SECRET = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP';

describe.each(dialects())('dashboard MFA sessions on %s', (dialect) => {
  let api: TestApi;
  beforeAll(async () => {
    api = await startTestApi(dialect, { identityPolicy: { adminMfaRequired: true } });
  });
  afterAll(async () => api?.close());

  const login = (body: Record<string, unknown>, receipt?: string) =>
    api.app.inject({
      method: 'POST',
      url: '/dashboard/session',
      headers: {
        'content-type': 'application/json',
        ...(receipt ? { 'openstack-auth-receipt': receipt } : {}),
      },
      payload: JSON.stringify(body),
    });
  /** Calls as the browser does: the session cookie plus its CSRF header. */
  const asSession = (res: Awaited<ReturnType<typeof login>>) => {
    const set = [res.headers['set-cookie'] ?? []].flat() as string[];
    const token = set
      .find((c) => c.startsWith(`${SESSION_COOKIE}=`))!
      .split(';')[0]!
      .split('=')[1]!;
    const headers = {
      cookie: `${SESSION_COOKIE}=${token}; ${CSRF_COOKIE}=${csrfTokenFor(token)}`,
      'x-csrf-token': csrfTokenFor(token),
    };
    return (method: 'GET' | 'POST' | 'PATCH', url: string, body?: unknown) =>
      api.app.inject({
        method,
        url,
        headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
      });
  };

  it('gives the bootstrap admin without a factor a session that can only enroll one', async () => {
    const r = await login({ username: 'admin', password: api.adminPassword, project: 'admin' });
    expect(r.statusCode).toBe(201);
    expect(r.json().session).toMatchObject({ mfa_pending: true, is_admin: false, methods: ['password'] });
    const call = asSession(r);
    expect((await call('GET', '/dashboard/session')).json().session.mfa_pending).toBe(true);
    // Everything but enrolling a factor is refused, with the reason.
    const projects = (await api.identity.listProjects()).length;
    for (const [method, url, body] of [
      ['GET', '/compute/v2.1/servers'],
      ['GET', '/bulwark/v1/audit/events'],
      ['GET', '/identity/v3/projects'],
      ['POST', '/identity/v3/projects', { project: { name: 'sneaky' } }],
      ['POST', '/compute/v2.1/flavors', { flavor: { name: 'f', ram: 256, vcpus: 1, disk: 1 } }],
    ] as const) {
      const res = await call(method, url, body);
      expect(res.statusCode, `${method} ${url}`).toBe(403);
      expect(res.body).toMatch(/Administrators must use a second factor/);
    }
    expect(await api.identity.listProjects()).toHaveLength(projects);
    // What the Two-Factor page does: options for a security key, or a TOTP secret and the rule.
    expect((await call('POST', '/bulwark/v1/webauthn/registration/options', {})).statusCode).toBe(200);
    const me = r.json().session.user.id as string;
    const cred = await call('POST', '/identity/v3/credentials', {
      credential: { type: 'totp', user_id: me, blob: SECRET },
    });
    expect(cred.statusCode).toBe(201);
    const rule = await call('PATCH', `/identity/v3/users/${me}`, {
      user: { options: { multi_factor_auth_rules: [['password', 'totp']], multi_factor_auth_enabled: true } },
    });
    expect(rule.statusCode).toBe(200);

    // Logging in again now takes the code, and the session is a full admin one.
    const pw = await login({ username: 'admin', password: api.adminPassword, project: 'admin' });
    expect(pw.statusCode).toBe(401);
    const receipt = pw.headers['openstack-auth-receipt'] as string;
    const full = await login(
      { username: 'admin', passcode: totpCode(SECRET, totpStep(Date.now())) },
      receipt,
    );
    expect(full.statusCode).toBe(201);
    expect(full.json().session).toMatchObject({ mfa_pending: false, is_admin: true });
    expect((await asSession(full)('GET', '/compute/v2.1/servers')).statusCode).toBe(200);
  });

  it('logs in with the password and a one-time recovery code, once per code', async () => {
    const member = await api.persona('rc-proj', 'rc-user', 'member');
    const gen = await api.call('POST', '/bulwark/v1/recovery-codes', member.token, {});
    expect(gen.status).toBe(201);
    const [code] = gen.json.recovery_codes as string[];
    const wrongPw = await login({ username: 'rc-user', password: 'not-it', recovery_code: code });
    expect(wrongPw.statusCode).toBe(401);
    // Neither alone, nor with a TOTP code or a key at once: 400, nothing spent.
    for (const body of [
      { username: 'rc-user', recovery_code: code },
      { username: 'rc-user', password: PASSWORD, passcode: '123456', recovery_code: code },
    ]) {
      expect((await login(body)).statusCode).toBe(400);
    }
    const ok = await login({ username: 'rc-user', password: PASSWORD, recovery_code: code });
    expect(ok.statusCode).toBe(201);
    expect(ok.json().session).toMatchObject({
      user: { name: 'rc-user' },
      project: { name: 'rc-proj' },
      methods: expect.arrayContaining(['password', 'recovery_code']),
    });
    const again = await login({ username: 'rc-user', password: PASSWORD, recovery_code: code });
    expect(again.statusCode).toBe(401);
    expect(again.body).toMatch(/authenticat/i);
    // Each code is checked with argon2: slow on a loaded host.
  }, 180_000);
});
