/**
 * MFA with the real `openstack` CLI against the real `bulwark serve`, admins
 * required to use MFA (the default): the bootstrap admin enrolls TOTP with
 * the token a password alone gives, then logs in with password + TOTP
 * (keystoneauth's v3multifactor plugin, receipts and all); a replayed code
 * is refused; a lockout triggers and expires.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { totpCode, totpStep } from '../../src/identity/totp.js';
import { type DaemonProcess, startDaemonProcess, stopDaemon } from '../helpers/daemon-process.js';

const SECRET = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP'; // 160 bits, base32
const code = () => totpCode(SECRET, totpStep(Date.now()));
/** Waits for the next 30 s TOTP step, so a fresh code exists (each step logs in once). */
const nextStep = async () => {
  const now = Date.now();
  await new Promise((r) => setTimeout(r, (totpStep(now) + 1) * 30_000 - now + 50));
};

describe('openstack CLI: MFA, receipts, replay and lockout', () => {
  let d: DaemonProcess;
  let session: NodeJS.ProcessEnv;
  /** The CLI's environment for user `locky` of project `ops`, with no clouds.yaml. */
  let locky: (password: string) => NodeJS.ProcessEnv;
  beforeAll(async () => {
    d = await startDaemonProcess({
      adminMfa: true,
      extraArgs: ['--lockout-failure-attempts', '3', '--lockout-duration', '3'],
    });
  });
  afterAll(() => stopDaemon(d));

  it('lets the bootstrap admin, with a password only, enroll TOTP and nothing else', async () => {
    expect(d.output).toMatch(/admins must use MFA/);
    const refused = await d.openstack(['user', 'list']);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/Administrators must use a second factor.*HTTP 403/s);
    const cred = await d.osJson('credential', 'create', '--type', 'totp', 'admin', SECRET);
    expect(cred.type).toBe('totp');
    expect((await d.osJson('credential', 'list')).map((c: { Blob: string }) => c.Blob)).not.toContain(SECRET);
    await d.os(
      'user',
      'set',
      '--multi-factor-auth-rule',
      'password,totp',
      '--enable-multi-factor-auth',
      'admin',
    );
  });

  it('answers a password-only login with a receipt, and logs in with v3multifactor', async () => {
    const pw = await d.openstack(['token', 'issue']);
    expect(pw.code).not.toBe(0);
    expect(pw.stderr).toMatch(/Not all required auth rules were satisfied: \[\['password', 'totp'\]\]/);
    const c = code();
    const t = JSON.parse(
      (
        await d.openstack(
          ['--os-auth-type', 'v3multifactor', '--os-passcode', c, 'token', 'issue', '-f', 'json'],
          { OS_CLOUD: 'bulwark-mfa' },
        )
      ).stdout,
    );
    expect(t.id).toBeTruthy();
    // The same code again is a replay.
    const again = await d.openstack(['--os-auth-type', 'v3multifactor', '--os-passcode', c, 'user', 'list'], {
      OS_CLOUD: 'bulwark-mfa',
    });
    expect(again.code).not.toBe(0);
    expect(again.stderr).toMatch(/HTTP 401/);
    // Keystone's token method keeps the factors: admin work goes on in this session.
    session = {
      OS_CLOUD: '',
      OS_CLIENT_CONFIG_FILE: `${d.dataDir}/no-clouds.yaml`,
      OS_AUTH_URL: `${d.url}/identity/v3`,
      OS_CACERT: `${d.dataDir}/pki/ca.crt`,
      OS_IDENTITY_API_VERSION: '3',
      OS_PROJECT_NAME: 'admin',
      OS_PROJECT_DOMAIN_NAME: 'Default',
      OS_AUTH_TYPE: 'v3token',
      OS_TOKEN: t.id,
    };
    const users = await d.openstack(['user', 'list', '-f', 'json'], session);
    expect(users.code).toBe(0);
    expect(JSON.parse(users.stdout).map((u: { Name: string }) => u.Name)).toContain('admin');
    const audit = await d.bulwark(['audit', 'list', '--format', 'json'], session);
    expect(audit.stdout).toMatch(/TOTP passcode replayed/);
  }, 120_000);

  it('locks an account after repeated failures and lets it in after lockout_duration', async () => {
    await d.openstack(['project', 'create', 'ops'], session);
    await d.openstack(['user', 'create', '--password', 'Locky-password-1', 'locky'], session);
    await d.openstack(['role', 'add', '--project', 'ops', '--user', 'locky', 'member'], session);
    locky = (password: string) => ({
      OS_CLOUD: '',
      OS_CLIENT_CONFIG_FILE: `${d.dataDir}/no-clouds.yaml`,
      OS_AUTH_URL: `${d.url}/identity/v3`,
      OS_CACERT: `${d.dataDir}/pki/ca.crt`,
      OS_IDENTITY_API_VERSION: '3',
      OS_USERNAME: 'locky',
      OS_USER_DOMAIN_NAME: 'Default',
      OS_PASSWORD: password,
      OS_PROJECT_NAME: 'ops',
      OS_PROJECT_DOMAIN_NAME: 'Default',
    });
    const as = (password: string) =>
      d.openstack(['token', 'issue', '-f', 'value', '-c', 'id'], locky(password));
    expect((await as('Locky-password-1')).code).toBe(0);
    for (let i = 0; i < 3; i++) expect((await as('wrong-password-123')).code).not.toBe(0);
    const locked = await as('Locky-password-1');
    expect(locked.code).not.toBe(0);
    expect(locked.stderr).toMatch(/account is locked/);
    await new Promise((r) => setTimeout(r, 3100));
    expect((await as('Locky-password-1')).code).toBe(0);
    // A new login with password + TOTP in a later step works again for the admin.
    await nextStep();
    const fresh = await d.openstack(
      ['--os-auth-type', 'v3multifactor', '--os-passcode', code(), 'project', 'list', '-f', 'value'],
      { OS_CLOUD: 'bulwark-mfa' },
    );
    expect(fresh.stdout).toMatch(/ops/);
  }, 120_000);

  it('creates an application credential with expiry and access rules, and logs in with it', async () => {
    const rules = JSON.stringify([{ service: 'compute', method: 'GET', path: '/v2.1/servers/**' }]);
    const ac = JSON.parse(
      (
        await d.openstack(
          [
            'application',
            'credential',
            'create',
            '--expiration',
            '2099-01-01T00:00:00',
            '--access-rules',
            rules,
            'ci-bot',
            '-f',
            'json',
          ],
          locky('Locky-password-1'),
        )
      ).stdout,
    );
    expect(ac.secret).toBeTruthy();
    expect(ac.expires_at).toMatch(/^2099-01-01T00:00:00/);
    const bot = {
      OS_CLOUD: '',
      OS_CLIENT_CONFIG_FILE: `${d.dataDir}/no-clouds.yaml`,
      OS_AUTH_URL: `${d.url}/identity/v3`,
      OS_CACERT: `${d.dataDir}/pki/ca.crt`,
      OS_IDENTITY_API_VERSION: '3',
      OS_AUTH_TYPE: 'v3applicationcredential',
      OS_APPLICATION_CREDENTIAL_ID: ac.id,
      OS_APPLICATION_CREDENTIAL_SECRET: ac.secret,
    };
    const servers = await d.openstack(['server', 'list', '-f', 'json'], bot);
    expect(servers.code).toBe(0);
    expect(JSON.parse(servers.stdout)).toEqual([]);
    const net = await d.openstack(['network', 'list'], bot);
    expect(net.code).not.toBe(0);
    expect(net.stderr).toMatch(/access rules do not allow GET network/);
    const listed = await d.openstack(
      ['application', 'credential', 'list', '-f', 'json'],
      locky('Locky-password-1'),
    );
    expect(JSON.parse(listed.stdout).map((c: { Name: string }) => c.Name)).toEqual(['ci-bot']);
    expect(listed.stdout).not.toContain(ac.secret);
  });
});
