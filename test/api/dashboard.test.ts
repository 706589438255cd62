/**
 * The dashboard's session (docs/dashboard.md): login with password then TOTP
 * on the receipt, the token in an HttpOnly cookie that the API accepts only
 * with its CSRF header, logout revoking the token, and the page served under
 * a strict CSP without leaving its build directory.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApi } from '../../src/api/server.js';
import { CSRF_COOKIE, csrfTokenFor, SESSION_COOKIE } from '../../src/dashboard/session.js';
import { totpCode, totpStep } from '../../src/identity/totp.js';
import { PASSWORD, PUBLIC_URL, startTestApi, type TestApi } from '../helpers/api.js';

const SECRET = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP';

/** Name=value pairs of a response's Set-Cookie headers, with their attributes. */
const setCookies = (h: unknown): Map<string, string> => {
  const list = Array.isArray(h) ? h : typeof h === 'string' ? [h] : [];
  return new Map(list.map((c: string) => [c.slice(0, c.indexOf('=')), c]));
};
const cookieValue = (cookie: string | undefined) =>
  cookie?.slice(cookie.indexOf('=') + 1).split(';')[0] ?? '';

describe('dashboard session', () => {
  let api: TestApi;
  let app: FastifyInstance;
  let webDir: string;
  let userId: string;

  beforeAll(async () => {
    api = await startTestApi('sqlite');
    webDir = mkdtempSync(join(tmpdir(), 'bulwark-web-'));
    mkdirSync(join(webDir, 'assets'));
    writeFileSync(join(webDir, 'index.html'), '<!doctype html><title>dash</title>');
    writeFileSync(join(webDir, 'assets', 'index-abc.js'), 'console.log(1)');
    writeFileSync(join(webDir, 'secret.txt'), 'not served');
    app = await buildApi({ ...api.platform, store: api.store, publicUrl: PUBLIC_URL }, { webDir });
    const { id: projectId } = await api.identity.createProject({ name: 'web', domainId: 'default' });
    userId = (await api.identity.createUser({ name: 'webby', domainId: 'default', password: PASSWORD })).id;
    const member = (await api.identity.listRoles({ name: 'member' }))[0]!.id;
    await api.identity.grant(projectId, userId, member);
    await api.platform.credentials.create({ userId, projectId: null, type: 'totp', blob: SECRET });
    await api.identity.updateUser(userId, {
      options: { multi_factor_auth_enabled: true, multi_factor_auth_rules: [['password', 'totp']] },
    });
  });
  afterAll(async () => {
    await app?.close();
    await api?.close();
    rmSync(webDir, { recursive: true, force: true });
  });

  const login = (body: Record<string, unknown>, receipt?: string) =>
    app.inject({
      method: 'POST',
      url: '/dashboard/session',
      headers: {
        'content-type': 'application/json',
        ...(receipt ? { 'openstack-auth-receipt': receipt } : {}),
      },
      payload: JSON.stringify(body),
    });
  let cookies: Map<string, string>;
  let token: string;
  let csrf: string;
  const cookieHeader = () => `${SESSION_COOKIE}=${token}; ${CSRF_COOKIE}=${csrf}`;

  it('answers the password with a receipt, refuses a wrong code, and opens a session on the right one', async () => {
    const first = await login({ username: 'webby', password: PASSWORD });
    expect(first.statusCode).toBe(401);
    expect(first.json().required_auth_methods).toEqual([['password', 'totp']]);
    expect(first.headers['set-cookie']).toBeUndefined();
    const receipt = String(first.headers['openstack-auth-receipt']);
    const right = totpCode(SECRET, totpStep(Date.now()));
    const wrong = await login(
      { username: 'webby', passcode: right === '000000' ? '111111' : '000000' },
      receipt,
    );
    expect(wrong.statusCode).toBe(401);
    expect(wrong.headers['set-cookie']).toBeUndefined();
    const ok = await login({ username: 'webby', passcode: right }, receipt);
    expect(ok.statusCode).toBe(201);
    // No project named: the user's only project.
    expect(ok.json().session).toMatchObject({ user: { name: 'webby' }, project: { name: 'web' } });
    expect(ok.json().session.methods).toEqual(expect.arrayContaining(['password', 'totp']));
    cookies = setCookies(ok.headers['set-cookie']);
    const session = cookies.get(SESSION_COOKIE)!;
    expect(session).toMatch(/; HttpOnly; Path=\/; Secure; SameSite=Strict; Max-Age=\d+/);
    expect(cookies.get(CSRF_COOKIE)).not.toMatch(/HttpOnly/);
    token = cookieValue(session);
    csrf = cookieValue(cookies.get(CSRF_COOKIE));
    expect(csrf).toBe(csrfTokenFor(token));
    expect(JSON.stringify(ok.json())).not.toContain(token);
    // The same code again is a replay, even with a fresh receipt.
    const again = await login({ username: 'webby', password: PASSWORD });
    const replay = await login(
      { username: 'webby', passcode: right },
      String(again.headers['openstack-auth-receipt']),
    );
    expect(replay.statusCode).toBe(401);
  });

  it('takes no login a cross-site form can send (JSON only)', async () => {
    const form = await app.inject({
      method: 'POST',
      url: '/dashboard/session',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: `username=webby&password=${PASSWORD}`,
    });
    expect(form.statusCode).toBe(415);
    expect(form.headers['set-cookie']).toBeUndefined();
  });

  it('takes the cookie only with its CSRF header, on reads and writes alike', async () => {
    const call = (method: 'GET' | 'POST', headers: Record<string, string>) =>
      app.inject({
        method,
        url: '/network/v2.0/security-groups',
        headers: { ...headers, ...(method === 'POST' ? { 'content-type': 'application/json' } : {}) },
        ...(method === 'POST' ? { payload: JSON.stringify({ security_group: { name: 'csrf-probe' } }) } : {}),
      });
    expect((await call('GET', { cookie: cookieHeader() })).statusCode).toBe(401);
    expect((await call('POST', { cookie: cookieHeader() })).statusCode).toBe(401);
    expect((await call('POST', { cookie: cookieHeader(), 'x-csrf-token': 'forged' })).statusCode).toBe(401);
    // The CSRF token of another session does not fit this one.
    expect(
      (await call('POST', { cookie: cookieHeader(), 'x-csrf-token': csrfTokenFor('other-token') }))
        .statusCode,
    ).toBe(401);
    const auth = (await api.identity.validateToken(token))!;
    const groups = await api.platform.network.securityGroups.list(auth, {});
    expect(groups.map((g) => g.name)).not.toContain('csrf-probe');
    expect((await call('GET', { cookie: cookieHeader(), 'x-csrf-token': csrf })).statusCode).toBe(200);
    const made = await call('POST', { cookie: cookieHeader(), 'x-csrf-token': csrf });
    expect(made.statusCode).toBe(201);
    // Refusals are audited like any other.
    const denied = await api.store.db
      .selectFrom('audit_events')
      .select(['action', 'status'])
      .where('path', '=', '/network/v2.0/security-groups')
      .where('outcome', '=', 'denied')
      .execute();
    expect(denied.length).toBeGreaterThanOrEqual(4);
  });

  it('shows the session, and logs out by revoking the token', async () => {
    const show = await app.inject({
      method: 'GET',
      url: '/dashboard/session',
      headers: { cookie: cookieHeader(), 'x-csrf-token': csrf },
    });
    expect(show.statusCode).toBe(200);
    expect(show.headers['cache-control']).toBe('no-store');
    expect(Date.parse(show.json().session.expires_at)).toBeGreaterThan(Date.now());
    const noCsrf = await app.inject({
      method: 'DELETE',
      url: '/dashboard/session',
      headers: { cookie: cookieHeader() },
    });
    expect(noCsrf.statusCode).toBe(401);
    expect(await api.identity.validateToken(token)).not.toBeNull();
    const out = await app.inject({
      method: 'DELETE',
      url: '/dashboard/session',
      headers: { cookie: cookieHeader(), 'x-csrf-token': csrf },
    });
    expect(out.statusCode).toBe(204);
    expect(setCookies(out.headers['set-cookie']).get(SESSION_COOKIE)).toMatch(/Max-Age=0/);
    expect(await api.identity.validateToken(token)).toBeNull();
  });

  it('serves the page under a strict CSP, and nothing outside the build', async () => {
    const page = await app.inject({ method: 'GET', url: '/dashboard/project/compute/instances' });
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain('<title>dash</title>');
    expect(page.headers['cache-control']).toBe('no-store');
    const csp = String(page.headers['content-security-policy']);
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain('unsafe');
    expect(page.headers['x-frame-options']).toBe('DENY');
    const js = await app.inject({ method: 'GET', url: '/dashboard/assets/index-abc.js' });
    expect(js.headers['content-type']).toMatch(/^text\/javascript/);
    expect(js.headers['cache-control']).toMatch(/immutable/);
    for (const url of [
      '/dashboard/assets/../secret.txt',
      '/dashboard/assets/%2e%2e%2fsecret.txt',
      '/dashboard/assets/..%2f..%2fpackage.json',
      '/dashboard/assets/missing.js',
      '/dashboard/assets/index-abc.exe',
    ]) {
      const r = await app.inject({ method: 'GET', url });
      expect(r.body, url).not.toContain('not served');
      expect(r.body, url).not.toContain('"name": "bulwark"');
      if (url.includes('/assets/')) expect([200, 404], url).toContain(r.statusCode);
    }
    const missing = await app.inject({ method: 'GET', url: '/dashboard/assets/missing.js' });
    expect(missing.statusCode).toBe(404);
  });

  it('says how to build the dashboard when it is not built', async () => {
    const bare = await buildApi(
      { ...api.platform, store: api.store, publicUrl: PUBLIC_URL },
      { webDir: join(webDir, 'nope') },
    );
    const r = await bare.inject({ method: 'GET', url: '/dashboard' });
    expect(r.statusCode).toBe(404);
    expect(r.json().error.message).toMatch(/npm run build:web/);
    await bare.close();
  });
});
