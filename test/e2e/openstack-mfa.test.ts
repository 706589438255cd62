/**
 * MFA with the real `openstack` CLI against the real `bulwark serve`, admins
 * required to use MFA (the default): the bootstrap admin enrolls TOTP with
 * the token a password alone gives, then logs in with password + TOTP
 * (keystoneauth's v3multifactor plugin, receipts and all); a replayed code
 * is refused; a lockout triggers and expires.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
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
      extraArgs: ['--lockout-failure-attempts', '3', '--lockout-duration', '15'],
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
  }, 180_000);

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
  }, 180_000);

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
    await new Promise((r) => setTimeout(r, 15_100));
    expect((await as('Locky-password-1')).code).toBe(0);
    // A new login with password + TOTP in a later step works again for the admin, here through the
    // bulwark CLI (OS_PASSCODE), which the password alone no longer satisfies.
    expect((await d.bulwark(['project', 'list'])).stderr).toMatch(/Insufficient auth methods/);
    await nextStep();
    const fresh = await d.bulwark(['project', 'list', '-f', 'value'], { OS_PASSCODE: code() });
    expect(fresh.code, fresh.stderr).toBe(0);
    expect(fresh.stdout).toMatch(/ops/);
  }, 180_000);

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
  }, 180_000);

  it('bulwark break-glass: sealed credential, session with a reason, critical event, review closed with a note', async () => {
    const made = await d.bulwark(['break-glass', 'create', 'emergency', '-f', 'json'], session);
    expect(made.code, made.stderr).toBe(0);
    const { secret, notice } = JSON.parse(made.stdout);
    expect(notice).toMatch(/shown once/);
    const file = join(d.dataDir, 'sealed-envelope');
    writeFileSync(file, `${secret}\n`, { mode: 0o600 });
    const out = { OS_CLOUD: '', OS_AUTH_URL: `${d.url}/identity/v3`, OS_CACERT: `${d.dataDir}/pki/ca.crt` };
    const noReason = await d.bulwark(['break-glass', 'use', 'emergency', '--secret-file', file], out);
    expect(noReason.code).not.toBe(0);
    expect(noReason.stderr).toMatch(/--reason/);
    const used = await d.bulwark(
      [
        'break-glass',
        'use',
        'emergency',
        '--reason',
        'Primary admin MFA devices lost in outage',
        '--secret-file',
        file,
        '-f',
        'json',
      ],
      out,
    );
    expect(used.code, used.stderr).toBe(0);
    const s = JSON.parse(used.stdout);
    expect(Date.parse(s.expires_at) - Date.now()).toBeLessThanOrEqual(900_000);
    // The emergency token is a full admin for the real CLI too.
    const users = await d.openstack(['user', 'list', '-f', 'value', '-c', 'Name'], {
      ...session,
      OS_TOKEN: s.token,
    });
    expect(users.stdout).toMatch(/emergency/);
    const events = JSON.parse(
      (await d.bulwark(['audit', 'list', '--action', 'break_glass:use', '--format', 'json'], session)).stdout,
    );
    expect(events[0].reason).toMatch(
      /^severity=critical: break-glass session for emergency .*Primary admin MFA devices lost/,
    );
    const open = JSON.parse(
      (await d.bulwark(['break-glass', 'reviews', '--open', '-f', 'json'], session)).stdout,
    );
    expect(open).toHaveLength(1);
    expect(open[0]).toMatchObject({ id: s.review_id, open: true, user_name: 'emergency' });
    const closed = await d.bulwark(
      ['break-glass', 'close', s.review_id, '--note', 'Outage over; credential rotated.', '-f', 'json'],
      session,
    );
    expect(closed.code, closed.stderr).toBe(0);
    expect(JSON.parse(closed.stdout)).toMatchObject({ open: false, closed_by: 'admin' });
    expect(
      JSON.parse((await d.bulwark(['break-glass', 'reviews', '--open', '-f', 'json'], session)).stdout),
    ).toEqual([]);
  }, 180_000);

  it('bulwark access review lists users with roles, MFA and flags, as CSV and JSON', async () => {
    const csv = await d.bulwark(['access', 'review', '-f', 'csv'], session);
    expect(csv.code, csv.stderr).toBe(0);
    const lines = csv.stdout.trim().split('\r\n');
    expect(lines[0]).toBe(
      'name,enabled,cloud_admin,roles,mfa_enabled,totp_credentials,application_credentials,last_login_at,password_age_days,locked,flags',
    );
    expect(lines.find((l) => l.startsWith('admin,'))).toMatch(
      /^admin,true,true,"\{""admin"":\[""admin""\]\}",true,1,/,
    );
    const json = JSON.parse((await d.bulwark(['access', 'review', '-f', 'json'], session)).stdout);
    const locky = json.users.find((u: { name: string }) => u.name === 'locky');
    expect(locky).toMatchObject({
      roles: { ops: ['member'] },
      mfa_enabled: false,
      application_credentials: 1,
    });
    const emergency = json.users.find((u: { name: string }) => u.name === 'emergency');
    expect(emergency.flags).toContain('break-glass');
  }, 180_000);
});
