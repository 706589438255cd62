import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lastAuditEvent, startTestApi, type TestApi } from '../helpers/api.js';
import { dialects } from '../helpers/store.js';
import { newSecret } from '../helpers/totp.js';

/**
 * The cloud admin's view of other users' second factors (issue 11 gap,
 * docs/identity.md): listed without secrets, revoked one by one, audited;
 * refused for everyone else, including the user themself (they have their
 * own routes). The security key row is a fixture: real registration in
 * Chromium is test/web/dashboard-console.test.ts and test/api/webauthn.test.ts.
 */
describe.each(dialects())('admin view of users’ MFA devices on %s', (dialect) => {
  let api: TestApi;
  let admin: string;
  let user: { token: string; userId: string; projectId: string };
  let other: { token: string; userId: string };
  let projectAdmin: { token: string };
  const secret = newSecret();
  const publicKey = randomBytes(77).toString('base64url');
  let totpId = '';
  const keyId = randomBytes(16).toString('base64url');
  const devicesOf = (id: string) => `/bulwark/v1/users/${id}/mfa-devices`;

  beforeAll(async () => {
    api = await startTestApi(dialect);
    admin = await api.login('admin', api.adminPassword, 'admin');
    user = await api.persona('mfadev-a', 'mfadev-user', 'member');
    other = await api.persona('mfadev-b', 'mfadev-other', 'member');
    // An admin of a project is not the cloud admin.
    projectAdmin = await api.persona('mfadev-a', 'mfadev-padmin', 'admin');
    const cred = await api.call('POST', '/identity/v3/credentials', user.token, {
      credential: { type: 'totp', user_id: user.userId, blob: secret },
    });
    expect(cred.status).toBe(201);
    totpId = cred.json.credential.id;
    await api.store.db
      .insertInto('webauthn_credentials')
      .values({
        id: keyId,
        user_id: user.userId,
        name: 'yubikey-5',
        public_key: publicKey,
        counter: 3,
        transports: '["usb"]',
        created_at: new Date().toISOString(),
        last_used_at: null,
      })
      .execute();
    expect((await api.call('POST', '/bulwark/v1/recovery-codes', user.token)).status).toBe(201);
  });
  afterAll(async () => {
    await api?.close();
  });

  it('refuses everyone but the cloud admin, audited, and changes nothing', async () => {
    for (const t of [user.token, other.token, projectAdmin.token]) {
      expect((await api.call('GET', devicesOf(user.userId), t)).status).toBe(403);
      expect((await api.call('DELETE', `${devicesOf(user.userId)}/${keyId}`, t)).status).toBe(403);
    }
    expect((await api.call('GET', devicesOf(user.userId), null)).status).toBe(401);
    const refused = await lastAuditEvent(api, 'identity:mfa_devices:revoke');
    expect(refused).toMatchObject({ outcome: 'denied', user_name: 'mfadev-padmin' });
    expect((await api.call('GET', devicesOf(user.userId), admin)).json.mfa_devices).toHaveLength(3);
  });

  it('lists a user’s TOTP, security key and recovery codes, without any secret', async () => {
    const r = await api.call('GET', devicesOf(user.userId), admin);
    expect(r.status).toBe(200);
    expect(r.json.mfa_devices).toEqual([
      expect.objectContaining({ id: totpId, type: 'totp' }),
      expect.objectContaining({ id: keyId, type: 'webauthn', name: 'yubikey-5', last_used_at: null }),
      expect.objectContaining({ id: 'recovery-codes', type: 'recovery_codes', remaining: 10 }),
    ]);
    const body = JSON.stringify(r.json);
    expect(body).not.toContain(secret);
    expect(body).not.toContain(publicKey);
    expect(body).not.toMatch(/blob|public_key|code_hash|secret/);
    expect((await api.call('GET', devicesOf(other.userId), admin)).json.mfa_devices).toEqual([]);
    expect((await api.call('GET', devicesOf('no-such-user'), admin)).status).toBe(404);
  });

  it('revokes one factor at a time, audited as the admin; another user’s device id is 404', async () => {
    // A device named under the wrong user changes nothing.
    const wrong = await api.call('DELETE', `${devicesOf(other.userId)}/${keyId}`, admin);
    expect(wrong.status).toBe(404);
    expect((await api.call('DELETE', `${devicesOf(user.userId)}/nope`, admin)).status).toBe(404);
    expect((await api.call('GET', devicesOf(user.userId), admin)).json.mfa_devices).toHaveLength(3);

    expect((await api.call('DELETE', `${devicesOf(user.userId)}/${keyId}`, admin)).status).toBe(204);
    expect(await lastAuditEvent(api, 'identity:mfa_devices:revoke')).toMatchObject({
      outcome: 'success',
      user_name: 'admin',
      target_type: 'mfa_device',
      target_id: `${keyId}@${user.userId}`,
    });
    // The user sees it gone from their own list too.
    expect((await api.call('GET', '/bulwark/v1/webauthn/credentials', user.token)).json.credentials).toEqual(
      [],
    );

    expect((await api.call('DELETE', `${devicesOf(user.userId)}/${totpId}`, admin)).status).toBe(204);
    expect((await api.call('GET', `/identity/v3/credentials/${totpId}`, admin)).status).toBe(404);

    expect((await api.call('DELETE', `${devicesOf(user.userId)}/recovery-codes`, admin)).status).toBe(204);
    expect((await api.call('GET', '/bulwark/v1/recovery-codes', user.token)).json.remaining).toBe(0);
    expect((await api.call('GET', devicesOf(user.userId), admin)).json.mfa_devices).toEqual([]);
    expect((await api.call('DELETE', `${devicesOf(user.userId)}/recovery-codes`, admin)).status).toBe(404);
  });
});
