/**
 * Keystone application credentials: secret shown once and kept hashed,
 * expiry, role subsets, access rules enforced on every request, and no
 * credential-making from a restricted credential's token.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { dialects } from '../helpers/store.js';

const uniq = (p: string) => `${p}-${randomBytes(3).toString('hex')}`;

describe.each(dialects())('application credentials on %s', (dialect) => {
  let api: TestApi;
  beforeAll(async () => {
    api = await startTestApi(dialect);
  });
  afterAll(async () => api?.close());

  const acLogin = (id: string, secret: string) =>
    api.app.inject({
      method: 'POST',
      url: '/identity/v3/auth/tokens',
      headers: { 'content-type': 'application/json' },
      payload: {
        auth: { identity: { methods: ['application_credential'], application_credential: { id, secret } } },
      },
    });

  it('shows the secret once, keeps a hash, and logs in to the credential project only', async () => {
    const m = await api.persona(uniq('proj'), uniq('bot-owner'), 'member');
    const created = await api.call(
      'POST',
      `/identity/v3/users/${m.userId}/application_credentials`,
      m.token,
      {
        application_credential: { name: 'ci', expires_at: '2099-01-01T00:00:00' },
      },
    );
    expect(created.status).toBe(201);
    const ac = created.json.application_credential;
    expect(ac.secret.length).toBeGreaterThanOrEqual(40);
    expect(ac.expires_at).toBe('2099-01-01T00:00:00.000Z');
    expect(ac.roles.map((r: { name: string }) => r.name)).toEqual(['member']);
    const row = await api.store.db
      .selectFrom('application_credentials')
      .selectAll()
      .where('id', '=', ac.id)
      .executeTakeFirstOrThrow();
    expect(row.secret_hash).toMatch(/^\$argon2id\$/);
    expect(JSON.stringify(row)).not.toContain(ac.secret);
    const shown = await api.call(
      'GET',
      `/identity/v3/users/${m.userId}/application_credentials/${ac.id}`,
      m.token,
    );
    expect(shown.json.application_credential.secret).toBeUndefined();
    expect((await acLogin(ac.id, 'not-the-secret')).statusCode).toBe(401);
    const ok = await acLogin(ac.id, ac.secret);
    expect(ok.statusCode).toBe(201);
    expect(ok.json().token.methods).toEqual(['application_credential']);
    expect(ok.json().token.project.id).toBe(m.projectId);
    const token = String(ok.headers['x-subject-token']);
    // A restricted credential's token makes no credentials.
    const again = await api.call('POST', `/identity/v3/users/${m.userId}/application_credentials`, token, {
      application_credential: { name: 'ci-2' },
    });
    expect(again.status).toBe(403);
    expect(again.json.error.message).toMatch(/application credential cannot do this/);
    // Another user neither reads nor deletes it.
    const o = await api.persona(uniq('proj'), uniq('other'), 'member');
    expect(
      (await api.call('GET', `/identity/v3/users/${m.userId}/application_credentials`, o.token)).status,
    ).toBe(403);
    // Deleting it ends its tokens.
    expect(
      (await api.call('DELETE', `/identity/v3/users/${m.userId}/application_credentials/${ac.id}`, m.token))
        .status,
    ).toBe(204);
    expect((await api.call('GET', '/compute/v2.1/servers', token)).status).toBe(401);
  });

  it('enforces access rules, the role subset and expiry on every request', async () => {
    const m = await api.persona(uniq('proj'), uniq('bot-owner'), 'member');
    const url = `/identity/v3/users/${m.userId}/application_credentials`;
    const tooMuch = await api.call('POST', url, m.token, {
      application_credential: { name: 'x', roles: [{ name: 'admin' }] },
    });
    expect(tooMuch.status).toBe(403);
    const past = await api.call('POST', url, m.token, {
      application_credential: { name: 'x', expires_at: '2001-01-01T00:00:00Z' },
    });
    expect(past.status).toBe(400);
    const created = await api.call('POST', url, m.token, {
      application_credential: {
        name: 'lister',
        roles: [{ name: 'reader' }],
        access_rules: [{ service: 'compute', method: 'GET', path: '/v2.1/servers/**' }],
      },
    });
    expect(created.status).toBe(201);
    const ac = created.json.application_credential;
    expect(ac.access_rules[0]).toMatchObject({ service: 'compute', method: 'GET', path: '/v2.1/servers/**' });
    const token = String((await acLogin(ac.id, ac.secret)).headers['x-subject-token']);
    expect((await api.call('GET', '/compute/v2.1/servers', token)).status).toBe(200);
    expect((await api.call('GET', '/compute/v2.1/servers/detail', token)).status).toBe(200);
    const net = await api.call('GET', '/network/v2.0/networks', token);
    expect(net.status).toBe(403);
    expect(JSON.stringify(net.json)).toMatch(/access rules do not allow GET network \/v2.0\/networks/);
    expect((await api.call('GET', '/compute/v2.1/flavors', token)).status).toBe(403);
    // Reader only: even a rule-matching write is the role's to refuse.
    const unruled = await api.call('POST', url, m.token, {
      application_credential: { name: 'reader-any', roles: [{ name: 'reader' }] },
    });
    const readerToken = String(
      (await acLogin(unruled.json.application_credential.id, unruled.json.application_credential.secret))
        .headers['x-subject-token'],
    );
    expect((await api.call('GET', '/network/v2.0/networks', readerToken)).status).toBe(200);
    expect(
      (await api.call('POST', '/network/v2.0/networks', readerToken, { network: { name: 'n' } })).status,
    ).toBe(403);
    // Expiry ends the credential and every token made from it.
    await api.store.db
      .updateTable('application_credentials')
      .set({ expires_at: '2001-01-01T00:00:00.000Z' })
      .where('id', '=', ac.id)
      .execute();
    expect((await api.call('GET', '/compute/v2.1/servers', token)).status).toBe(401);
    const expired = await acLogin(ac.id, ac.secret);
    expect(expired.statusCode).toBe(401);
    expect(expired.json().error.message).toMatch(/expired/);
  });
});
