/**
 * Break-glass (guide 16) and the access review, with admins required to use
 * MFA: the sealed credential is shown once and stored hashed, a session
 * needs a reason, is short, raises a critical audit event and leaves an
 * open review item until another admin closes it with a note.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BREAK_GLASS_TTL_SECONDS, CRITICAL } from '../../src/identity/break-glass.js';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { dialects } from '../helpers/store.js';

const uniq = (p: string) => `${p}-${randomBytes(3).toString('hex')}`;

describe.each(dialects())('break-glass and access review on %s', (dialect) => {
  let api: TestApi;
  let admin: string;
  beforeAll(async () => {
    api = await startTestApi(dialect, { identityPolicy: { adminMfaRequired: true } });
    // A full admin session, as after an MFA login (the token method keeps its factors).
    const a = await api.identity.listUsers({ name: 'admin' });
    const project = (await api.identity.listProjects({ name: 'admin' }))[0]!;
    admin = (await api.identity.mintToken(a[0]!.id, project.id, ['password', 'totp'])).token;
  });
  afterAll(async () => api?.close());

  const open = (name: string, secret: string, reason: string) =>
    api.call('POST', '/bulwark/v1/break-glass/sessions', null, { session: { name, secret, reason } });

  it('creates an emergency admin whose secret is shown once and stored hashed', async () => {
    const name = uniq('emergency');
    const r = await api.call('POST', '/bulwark/v1/break-glass/accounts', admin, { account: { name } });
    expect(r.status).toBe(201);
    expect(r.json.secret).toMatch(/^bg-[A-Za-z0-9_-]{43}$/);
    expect(r.json.notice).toMatch(/shown once/);
    const row = await api.store.db
      .selectFrom('break_glass_accounts')
      .selectAll()
      .where('id', '=', r.json.account.id)
      .executeTakeFirstOrThrow();
    expect(row.secret_hash).toMatch(/^\$argon2id\$/);
    const list = await api.call('GET', '/bulwark/v1/break-glass/accounts', admin);
    expect(JSON.stringify(list.json)).not.toContain(r.json.secret);
    // The account has no password: a normal login never works for it.
    const login = await api.call('POST', '/identity/v3/auth/tokens', null, {
      auth: {
        identity: {
          methods: ['password'],
          password: { user: { name, domain: { id: 'default' }, password: r.json.secret } },
        },
      },
    });
    expect(login.status).toBe(401);
    // Only an MFA'd admin may make one; a member may not.
    const m = await api.persona(uniq('proj'), uniq('m'), 'member');
    expect(
      (await api.call('POST', '/bulwark/v1/break-glass/accounts', m.token, { account: { name: uniq('x') } }))
        .status,
    ).toBe(403);
  });

  it('opens a short admin session only with the secret and a reason, audited critical, with a review item', async () => {
    const name = uniq('emergency');
    const { secret } = (
      await api.call('POST', '/bulwark/v1/break-glass/accounts', admin, { account: { name } })
    ).json;
    expect((await open(name, secret, 'short')).status).toBe(400);
    const wrong = await open(name, `${secret}x`, 'Storage outage, MFA devices unreachable');
    expect(wrong.status).toBe(401);
    const s = await open(name, secret, 'Storage outage, MFA devices unreachable');
    expect(s.status).toBe(201);
    const ttl = (Date.parse(s.json.session.expires_at) - Date.now()) / 1000;
    expect(ttl).toBeGreaterThan(BREAK_GLASS_TTL_SECONDS - 30);
    expect(ttl).toBeLessThanOrEqual(BREAK_GLASS_TTL_SECONDS);
    const token = s.json.session.token as string;
    // Full admin (admins must use MFA: the sealed credential counts as the second factor).
    expect((await api.call('GET', '/identity/v3/projects', token)).status).toBe(200);
    const events = await api.store.db
      .selectFrom('audit_events')
      .selectAll()
      .where('action', '=', 'break_glass:use')
      .orderBy('seq')
      .execute();
    const mine = events.filter((e) => e.reason?.includes(name));
    expect(mine.map((e) => e.outcome)).toEqual(['denied', 'success']);
    for (const e of mine) expect(e.reason?.startsWith(`${CRITICAL}: `)).toBe(true);
    expect(mine[1]?.reason).toMatch(/Storage outage, MFA devices unreachable/);
    // The review item is open until another admin closes it with a note.
    const reviews = await api.call('GET', '/bulwark/v1/break-glass/reviews?open=true', admin);
    const item = reviews.json.reviews.find((r: { id: string }) => r.id === s.json.session.review_id);
    expect(item).toMatchObject({
      open: true,
      user_name: name,
      reason: 'Storage outage, MFA devices unreachable',
    });
    const self = await api.call('POST', `/bulwark/v1/break-glass/reviews/${item.id}/close`, token, {
      note: 'I closed my own review',
    });
    expect(self.status).toBe(403);
    expect(
      (await api.call('POST', `/bulwark/v1/break-glass/reviews/${item.id}/close`, admin, { note: 'ok' }))
        .status,
    ).toBe(400);
    const closed = await api.call('POST', `/bulwark/v1/break-glass/reviews/${item.id}/close`, admin, {
      note: 'Storage restored; break-glass used to restart the array. Secret rotated.',
    });
    expect(closed.status).toBe(200);
    expect(closed.json.review).toMatchObject({ open: false, closed_by: 'admin' });
    expect(
      (
        await api.call('POST', `/bulwark/v1/break-glass/reviews/${item.id}/close`, admin, {
          note: 'again and again',
        })
      ).status,
    ).toBe(409);
  });

  it('lists every user in the access review with roles, MFA, last login and credential age, and flags', async () => {
    const stale = uniq('stale');
    const p = await api.persona(uniq('proj'), stale, 'member');
    await api.store.db
      .updateTable('users')
      .set({ last_login_at: '2020-01-01T00:00:00.000Z', password_changed_at: '2019-01-01T00:00:00.000Z' })
      .where('id', '=', p.userId)
      .execute();
    const r = await api.call('GET', '/bulwark/v1/access-review', admin);
    expect(r.status).toBe(200);
    const users = r.json.access_review.users as { name: string; flags: string[]; [k: string]: unknown }[];
    const s = users.find((u) => u.name === stale)!;
    expect(s.roles).toEqual({ [Object.keys(s.roles as object)[0]!]: ['member'] });
    expect(s.flags).toEqual(expect.arrayContaining(['stale', 'password-old']));
    expect(s.password_age_days).toBeGreaterThan(365);
    const a = users.find((u) => u.name === 'admin')!;
    expect(a).toMatchObject({ cloud_admin: true, mfa_enabled: false, totp_credentials: 0 });
    expect(a.flags).toContain('admin-without-mfa');
    const bg = users.find((u) => u.break_glass === true)!;
    expect(bg.flags).toContain('break-glass');
    expect(bg.flags).not.toContain('admin-without-mfa');
    const member = await api.persona(uniq('proj'), uniq('m'), 'member');
    expect((await api.call('GET', '/bulwark/v1/access-review', member.token)).status).toBe(403);
  });
});
