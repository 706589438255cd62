/**
 * Security-key refusals through the API (a real authenticator signs in
 * test/e2e/webauthn-browser.test.ts): no challenge, no login; a challenge
 * works once; garbage never registers; unknown users learn nothing.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { relyingParty } from '../../src/identity/webauthn.js';
import { PASSWORD, startTestApi, type TestApi } from '../helpers/api.js';
import { dialects } from '../helpers/store.js';

const uniq = (p: string) => `${p}-${randomBytes(3).toString('hex')}`;
const fakeAssertion = {
  id: 'AAAA',
  rawId: 'AAAA',
  type: 'public-key',
  clientExtensionResults: {},
  response: { clientDataJSON: 'AAAA', authenticatorData: 'AAAA', signature: 'AAAA' },
};

describe.each(dialects())('security keys on %s', (dialect) => {
  let api: TestApi;
  beforeAll(async () => {
    api = await startTestApi(dialect);
  });
  afterAll(async () => api?.close());

  it('names the relying party from the configured public URL, loopback as localhost', () => {
    expect(relyingParty('https://127.0.0.1:8443')).toEqual({
      rpId: 'localhost',
      origin: 'https://localhost:8443',
    });
    expect(relyingParty('https://cloud.example.org')).toEqual({
      rpId: 'cloud.example.org',
      origin: 'https://cloud.example.org',
    });
  });

  it('refuses a registration without pending options, or with a response that does not verify', async () => {
    const u = await api.persona(uniq('proj'), uniq('k'), 'member');
    const body = {
      name: 'key',
      response: { ...fakeAssertion, response: { clientDataJSON: 'AAAA', attestationObject: 'AAAA' } },
    };
    const none = await api.call('POST', '/bulwark/v1/webauthn/registration', u.token, body);
    expect(none.status).toBe(400);
    expect(JSON.stringify(none.json)).toMatch(/No registration is pending/);
    const opts = await api.call('POST', '/bulwark/v1/webauthn/registration/options', u.token, {});
    expect(opts.status).toBe(200);
    expect(opts.json.rp.id).toBe('bulwark.test');
    const bad = await api.call('POST', '/bulwark/v1/webauthn/registration', u.token, body);
    expect(bad.status).toBe(400);
    expect(JSON.stringify(bad.json)).toMatch(/did not verify/);
    // The challenge was spent by that attempt.
    expect((await api.call('POST', '/bulwark/v1/webauthn/registration', u.token, body)).json).toMatchObject({
      error: { message: expect.stringMatching(/No registration is pending/) },
    });
    expect((await api.call('GET', '/bulwark/v1/webauthn/credentials', u.token)).json.credentials).toEqual([]);
  });

  it('gives unknown users options that can never verify, and refuses a login without a challenge', async () => {
    const ghost = await api.call('POST', '/bulwark/v1/webauthn/login/options', null, {
      user: { name: 'nobody-here' },
    });
    expect(ghost.status).toBe(200);
    expect(ghost.json.allowCredentials).toEqual([]);
    const name = uniq('k');
    await api.persona(uniq('proj'), name, 'member');
    const login = await api.call('POST', '/bulwark/v1/webauthn/login', null, {
      user: { name },
      password: PASSWORD,
      response: fakeAssertion,
    });
    expect(login.status).toBe(401);
    const row = await api.store.db
      .selectFrom('audit_events')
      .select(['reason', 'source_ip'])
      .where('action', '=', 'webauthn:login')
      .where('user_name', '=', name)
      .executeTakeFirstOrThrow();
    expect(row.reason).toMatch(/^no pending security-key challenge.*failure 1 of 5/);
    expect(row.source_ip).toBe('127.0.0.1');
  });
});
