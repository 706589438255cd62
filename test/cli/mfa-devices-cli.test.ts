import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerIdentityCommands } from '../../src/cli/commands/identity.js';
import { PASSWORD, startTestApi, type TestApi } from '../helpers/api.js';
import { startCliHarness } from '../helpers/cli.js';
import { newSecret } from '../helpers/totp.js';

/** `bulwark user mfa list|revoke`: the cloud admin's view of another user's factors, in-process. */
describe('bulwark user mfa CLI (SQLite)', () => {
  let api: TestApi;
  let h: Awaited<ReturnType<typeof startCliHarness>>;

  beforeAll(async () => {
    api = await startTestApi('sqlite');
    const u = await api.persona('mfacli-p', 'mfacli-user', 'member');
    await api.call('POST', '/identity/v3/credentials', u.token, {
      credential: { type: 'totp', user_id: u.userId, blob: newSecret() },
    });
    await api.call('POST', '/bulwark/v1/recovery-codes', u.token);
    h = await startCliHarness(api, registerIdentityCommands);
  });
  afterAll(async () => {
    await h?.close();
    await api?.close();
  });

  it('the admin lists a user’s factors by name and revokes them; the user may not', async () => {
    const listed = await h.json('user', 'mfa', 'list', 'mfacli-user');
    expect(listed.map((d: { type: string }) => d.type)).toEqual(['totp', 'recovery_codes']);
    expect(listed[1]).toMatchObject({ id: 'recovery-codes', remaining: 10 });
    await h.cli('user', 'mfa', 'revoke', 'mfacli-user', 'recovery-codes');
    await h.cli('user', 'mfa', 'revoke', 'mfacli-user', listed[0].id);
    expect(await h.json('user', 'mfa', 'list', 'mfacli-user')).toEqual([]);
    expect((await h.failure('user', 'mfa', 'revoke', 'mfacli-user', 'recovery-codes')).message).toMatch(
      /Could not find MFA device/,
    );
    h.loginAs('mfacli-user', PASSWORD, 'mfacli-p');
    expect((await h.failure('user', 'mfa', 'list', 'mfacli-user')).message).toMatch(
      /403|not authorized|Policy/i,
    );
  });
});
