/**
 * Identity hardening (issue 8) with the site's defaults on: TOTP credentials
 * sealed at rest, MFA rules answered with Keystone receipts, TOTP replay,
 * admins must use MFA, lockout and password rules.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { totpCode, totpStep } from '../../src/identity/totp.js';
import { PASSWORD, startTestApi, type TestApi } from '../helpers/api.js';
import { dialects } from '../helpers/store.js';
import { newSecret } from '../helpers/totp.js';

const TOKENS = '/identity/v3/auth/tokens';
const code = (secret: string, stepOffset = 0) => totpCode(secret, totpStep(Date.now()) + stepOffset);
const uniq = (p: string) => `${p}-${randomBytes(3).toString('hex')}`;

describe.each(dialects())('identity hardening on %s', (dialect) => {
  let api: TestApi;
  beforeAll(async () => {
    api = await startTestApi(dialect, {
      identityPolicy: { adminMfaRequired: true, lockoutFailureAttempts: 3, lockoutDurationSeconds: 60 },
    });
  });
  afterAll(async () => api?.close());

  const ref = (name: string) => ({ name, domain: { id: 'default' } });
  const auth = (
    name: string,
    f: { password?: string; passcode?: string; project?: string },
    headers: Record<string, string> = {},
  ) =>
    api.app.inject({
      method: 'POST',
      url: TOKENS,
      headers: { 'content-type': 'application/json', ...headers },
      payload: {
        auth: {
          identity: {
            methods: [
              ...(f.password !== undefined ? ['password'] : []),
              ...(f.passcode !== undefined ? ['totp'] : []),
            ],
            ...(f.password !== undefined
              ? { password: { user: { ...ref(name), password: f.password } } }
              : {}),
            ...(f.passcode !== undefined ? { totp: { user: { ...ref(name), passcode: f.passcode } } } : {}),
          },
          ...(f.project ? { scope: { project: { name: f.project, domain: { id: 'default' } } } } : {}),
        },
      },
    });

  /** A member of a fresh project with a TOTP credential it enrolled itself and MFA rule password+totp. */
  async function mfaUser() {
    const name = uniq('mfa');
    const p = await api.persona(uniq('proj'), name, 'member');
    const secret = newSecret();
    const cred = await api.call('POST', '/identity/v3/credentials', p.token, {
      credential: { type: 'totp', user_id: p.userId, blob: secret },
    });
    expect(cred.status).toBe(201);
    const set = await api.call('PATCH', `/identity/v3/users/${p.userId}`, p.token, {
      user: { options: { multi_factor_auth_rules: [['password', 'totp']], multi_factor_auth_enabled: true } },
    });
    expect(set.status).toBe(200);
    expect(set.json.user.options.multi_factor_auth_rules).toEqual([['password', 'totp']]);
    return { ...p, name, secret, credentialId: cred.json.credential.id as string };
  }

  it('keeps TOTP secrets sealed by the key manager and shows them only once', async () => {
    const u = await mfaUser();
    const row = await api.store.db
      .selectFrom('credentials')
      .selectAll()
      .where('id', '=', u.credentialId)
      .executeTakeFirstOrThrow();
    expect(JSON.stringify(row)).not.toContain(u.secret);
    const sealed = await api.store.db
      .selectFrom('secrets')
      .selectAll()
      .where('id', '=', row.secret_id)
      .executeTakeFirstOrThrow();
    expect(JSON.stringify(sealed)).not.toContain(u.secret);
    expect(Buffer.from(sealed.payload_ct, 'base64').toString('latin1')).not.toContain(u.secret);
    const shown = await api.call('GET', `/identity/v3/credentials/${u.credentialId}`, u.token);
    expect(shown.status).toBe(200);
    expect(shown.json.credential.blob).not.toContain(u.secret);
    // Another user cannot read or delete it, nor list it.
    const other = await api.persona(uniq('proj'), uniq('other'), 'member');
    expect((await api.call('GET', `/identity/v3/credentials/${u.credentialId}`, other.token)).status).toBe(
      403,
    );
    expect((await api.call('DELETE', `/identity/v3/credentials/${u.credentialId}`, other.token)).status).toBe(
      403,
    );
    const list = await api.call('GET', `/identity/v3/credentials?user_id=${u.userId}`, other.token);
    expect(list.json.credentials).toEqual([]);
    // Nor enroll a credential for someone else; a weak or non-base32 secret is refused with the fix.
    const forOther = await api.call('POST', '/identity/v3/credentials', other.token, {
      credential: { type: 'totp', user_id: u.userId, blob: newSecret() },
    });
    expect(forOther.status).toBe(403);
    const weak = await api.call('POST', '/identity/v3/credentials', other.token, {
      credential: { type: 'totp', user_id: other.userId, blob: 'JBSWY3DPEHPK3PXP' },
    });
    expect(weak.status).toBe(400);
    expect(weak.json.error.message).toMatch(/80 bits; at least 128/);
  });

  it('answers a password-only login with a receipt, and finishes it with TOTP', async () => {
    const u = await mfaUser();
    const first = await auth(u.name, { password: PASSWORD });
    expect(first.statusCode).toBe(401);
    const receipt = first.headers['openstack-auth-receipt'];
    expect(typeof receipt).toBe('string');
    const body = first.json();
    expect(body.required_auth_methods).toEqual([['password', 'totp']]);
    expect(body.receipt.methods).toEqual(['password']);
    expect(body.receipt.user.id).toBe(u.userId);
    const ttl = Date.parse(body.receipt.expires_at) - Date.parse(body.receipt.issued_at);
    expect(ttl).toBe(300_000);
    // A wrong code with the receipt is refused; the right one completes the login.
    const wrong = await auth(u.name, { passcode: '000000' }, { 'openstack-auth-receipt': String(receipt) });
    expect(wrong.statusCode).toBe(401);
    const done = await auth(
      u.name,
      { passcode: code(u.secret) },
      { 'openstack-auth-receipt': String(receipt) },
    );
    expect(done.statusCode).toBe(201);
    expect(done.json().token.methods.sort()).toEqual(['password', 'totp']);
    // The receipt is spent; a forged one is refused.
    const again = await auth(
      u.name,
      { passcode: code(u.secret) },
      { 'openstack-auth-receipt': String(receipt) },
    );
    expect(again.statusCode).toBe(401);
    const forged = await auth(
      u.name,
      { passcode: code(u.secret) },
      { 'openstack-auth-receipt': 'x'.repeat(43) },
    );
    expect(forged.statusCode).toBe(401);
    // TOTP alone is not enough either: it gets a receipt, not a token.
    const w = await mfaUser();
    const totpOnly = await auth(w.name, { passcode: code(w.secret) });
    expect(totpOnly.statusCode).toBe(401);
    expect(totpOnly.json().receipt.methods).toEqual(['totp']);
  });

  it('refuses a replayed TOTP code, and a code from two steps ago', async () => {
    const u = await mfaUser();
    const c = code(u.secret);
    const ok = await auth(u.name, { password: PASSWORD, passcode: c });
    expect(ok.statusCode).toBe(201);
    const replay = await auth(u.name, { password: PASSWORD, passcode: c });
    expect(replay.statusCode).toBe(401);
    // The previous step is older than the one just used: also a replay.
    const previous = await auth(u.name, { password: PASSWORD, passcode: code(u.secret, -1) });
    expect(previous.statusCode).toBe(401);
    const v = await mfaUser();
    const stale = await auth(v.name, { password: PASSWORD, passcode: code(v.secret, -2) });
    expect(stale.statusCode).toBe(401);
    const reasons = (
      await api.store.db
        .selectFrom('audit_events')
        .select(['reason', 'source_ip', 'user_name'])
        .where('action', '=', 'identity:issue_token')
        .where('status', '=', 401)
        .where('user_name', 'in', [u.name, v.name])
        .execute()
    ).map((r) => r.reason);
    expect(reasons).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^TOTP passcode replayed/),
        expect.stringMatching(/^wrong TOTP passcode/),
      ]),
    );
  });

  it('lets a user weaken their own MFA only with a token that used a second factor', async () => {
    const u = await mfaUser();
    const off = { user: { options: { multi_factor_auth_enabled: false } } };
    // u.token predates the rule: password only.
    const refused = await api.call('PATCH', `/identity/v3/users/${u.userId}`, u.token, off);
    expect(refused.status).toBe(403);
    expect(refused.json.error.message).toMatch(/second factor/);
    const other = await api.call('PATCH', `/identity/v3/users/${u.userId}`, u.token, {
      user: { description: 'mine now' },
    });
    expect(other.status).toBe(403);
    expect(other.json.error.message).toMatch(/only your own MFA options.*description/);
    const strong = await auth(u.name, { password: PASSWORD, passcode: code(u.secret) });
    const token = String(strong.headers['x-subject-token']);
    const ok = await api.call('PATCH', `/identity/v3/users/${u.userId}`, token, off);
    expect(ok.status).toBe(200);
    expect(ok.json.user.options.multi_factor_auth_enabled).toBe(false);
  });

  it('lets an admin without a second factor only enroll one, then act once MFA is used', async () => {
    const pwOnly = await auth('admin', { password: api.adminPassword, project: 'admin' });
    expect(pwOnly.statusCode).toBe(201);
    const weak = String(pwOnly.headers['x-subject-token']);
    const refused = await api.call('GET', '/identity/v3/projects', weak);
    expect(refused.status).toBe(403);
    expect(refused.json.error.message).toMatch(/Administrators must use a second factor.*v3multifactor/s);
    expect((await api.call('POST', '/identity/v3/users', weak, { user: { name: uniq('x') } })).status).toBe(
      403,
    );
    expect((await api.call('GET', '/compute/v2.1/servers', weak)).status).toBe(403);
    // What it may do: find itself by name (as the CLI does), enroll TOTP, set its own MFA rule.
    const me = await api.call('GET', '/identity/v3/users?name=admin', weak);
    expect(me.status).toBe(200);
    const adminId = me.json.users[0].id as string;
    expect((await api.call('GET', '/identity/v3/users', weak)).status).toBe(403);
    const secret = newSecret();
    const cred = await api.call('POST', '/identity/v3/credentials', weak, {
      credential: { type: 'totp', user_id: adminId, blob: secret },
    });
    expect(cred.status).toBe(201);
    const rule = await api.call('PATCH', `/identity/v3/users/${adminId}`, weak, {
      user: { options: { multi_factor_auth_rules: [['password', 'totp']], multi_factor_auth_enabled: true } },
    });
    expect(rule.status).toBe(200);
    // Now a password alone gets a receipt, and password+TOTP a full admin token.
    expect((await auth('admin', { password: api.adminPassword, project: 'admin' })).statusCode).toBe(401);
    const strong = await auth('admin', {
      password: api.adminPassword,
      passcode: code(secret),
      project: 'admin',
    });
    expect(strong.statusCode).toBe(201);
    const token = String(strong.headers['x-subject-token']);
    expect((await api.call('GET', '/identity/v3/projects', token)).status).toBe(200);
    // The refusals are audited with the caller's address.
    const denied = await api.store.db
      .selectFrom('audit_events')
      .selectAll()
      .where('action', '=', 'identity:list_projects')
      .where('outcome', '=', 'denied')
      .execute();
    expect(denied.some((e) => e.user_name === 'admin' && e.source_ip === '127.0.0.1')).toBe(true);
  });

  it('locks an account after repeated failures, says so only to whoever knows the password, and unlocks', async () => {
    const name = uniq('lock');
    const p = await api.persona(uniq('proj'), name, 'member');
    for (let i = 0; i < 3; i++)
      expect((await auth(name, { password: 'wrong-password-x' })).statusCode).toBe(401);
    const locked = await auth(name, { password: PASSWORD });
    expect(locked.statusCode).toBe(401);
    expect(locked.json().error.message).toMatch(/account is locked/);
    const guess = await auth(name, { password: 'wrong-password-y' });
    expect(guess.json().error.message).not.toMatch(/locked/);
    const rows = await api.store.db
      .selectFrom('audit_events')
      .select('reason')
      .where('user_name', '=', name)
      .where('status', '=', 401)
      .orderBy('seq')
      .execute();
    expect(rows.map((r) => r.reason)).toEqual([
      'wrong password (failure 1 of 3 before lockout)',
      'wrong password (failure 2 of 3 before lockout)',
      expect.stringMatching(/^wrong password; 3 failures: account locked until /),
      expect.stringMatching(/^account locked until /),
      expect.stringMatching(/^login attempt while locked until /),
    ]);
    // The lock runs out (lockout_duration 60 s here: long enough that a loaded host cannot end it
    // mid-test; the clock is moved past it) and the count starts again.
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      vi.setSystemTime(Date.now() + 61_000);
      expect((await auth(name, { password: PASSWORD })).statusCode).toBe(201);
    } finally {
      vi.useRealTimers();
    }
    // An administrator lifts a lock by enabling the user.
    for (let i = 0; i < 3; i++) await auth(name, { password: 'wrong-password-x' });
    expect((await auth(name, { password: PASSWORD })).statusCode).toBe(401);
    await api.identity.updateUser(p.userId, { enabled: true });
    expect((await auth(name, { password: PASSWORD })).statusCode).toBe(201);
  });

  it('applies the password rules: length, history and expiry', async () => {
    const name = uniq('pw');
    const p = await api.persona(uniq('proj'), name, 'member');
    const change = (original: string, password: string) =>
      api.call('POST', `/identity/v3/users/${p.userId}/password`, p.token, {
        user: { original_password: original, password },
      });
    const short = await change(PASSWORD, 'Short-pw-1');
    expect(short.status).toBe(400);
    expect(short.json.error.message).toMatch(/at least 12 characters/);
    const same = await change(PASSWORD, PASSWORD);
    expect(same.status).toBe(400);
    expect(same.json.error.message).toMatch(/previous password/);
    expect((await change(PASSWORD, 'Second-password-2')).status).toBe(204);
    const token = await api.login(name, 'Second-password-2');
    const back = await api.call('POST', `/identity/v3/users/${p.userId}/password`, token, {
      user: { original_password: 'Second-password-2', password: PASSWORD },
    });
    expect(back.status).toBe(400);
    // An expired password no longer logs in, and the answer says how to fix it.
    await api.store.db
      .updateTable('users')
      .set({ password_expires_at: '2000-01-01T00:00:00.000Z' })
      .where('id', '=', p.userId)
      .execute();
    const expired = await auth(name, { password: 'Second-password-2' });
    expect(expired.statusCode).toBe(401);
    expect(expired.json().error.message).toMatch(/password is expired/);
  });

  // Ten argon2 hashes, then logins that each verify against them: about a minute at load 20+.
  it('accepts each recovery code once, with the password, in place of the second factor', {
    timeout: 180_000,
  }, async () => {
    const u = await mfaUser();
    const gen = await api.call('POST', '/bulwark/v1/recovery-codes', u.token, {});
    expect(gen.status).toBe(201);
    const codes = gen.json.recovery_codes as string[];
    expect(codes).toHaveLength(10);
    expect(new Set(codes).size).toBe(10);
    const stored = await api.store.db
      .selectFrom('recovery_codes')
      .selectAll()
      .where('user_id', '=', u.userId)
      .execute();
    expect(stored.every((r) => r.code_hash.startsWith('$argon2id$'))).toBe(true);
    expect(JSON.stringify(stored)).not.toContain(codes[0]);
    const use = (code: string, password = PASSWORD) =>
      api.call('POST', '/bulwark/v1/recovery-codes/login', null, { user: ref(u.name), password, code });
    const wrongPw = await use(codes[0]!, 'wrong-password-z');
    expect(wrongPw.status).toBe(401);
    const ok = await use(codes[0]!);
    expect(ok.status).toBe(201);
    // The user's rule is password+totp: the code stood in for the device.
    expect(ok.json.token.methods).toEqual(['password', 'recovery_code']);
    const again = await use(codes[0]!);
    expect(again.status).toBe(401);
    expect((await api.call('GET', '/bulwark/v1/recovery-codes', u.token)).json.remaining).toBe(9);
    const reasons = (
      await api.store.db
        .selectFrom('audit_events')
        .select('reason')
        .where('action', '=', 'recovery_codes:login')
        .where('user_name', '=', u.name)
        .where('status', '=', 401)
        .orderBy('seq')
        .execute()
    ).map((r) => r.reason);
    expect(reasons).toEqual([
      expect.stringMatching(/^wrong password/),
      expect.stringMatching(/^recovery code already used|^wrong recovery code/),
    ]);
  });

  it('refuses control characters in the names a login looks up (400, nothing queried)', async () => {
    const res = await auth('evil\u0000name', { password: 'whatever-password' });
    expect(res.statusCode).toBe(400);
    expect(res.json().error.message).toMatch(/Invalid input/);
  });
});
