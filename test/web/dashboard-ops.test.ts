/**
 * The dashboard's Approvals queue and the volume Snapshot / Back up actions in
 * Debian's Chromium against the real `bulwark serve` (docs/dashboard.md).
 * What the browser did is checked again with the real openstack and bulwark CLIs.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { totpCode, totpStep } from '../../src/identity/totp.js';
import { launchBrowser, seriousA11yViolations, type TestBrowser } from '../helpers/browser.js';
import { type DaemonProcess, REPO, startDaemonProcess, stopDaemon } from '../helpers/daemon-process.js';
import { guestImage } from '../helpers/guests.js';
import { newSecret } from '../helpers/totp.js';

const SHOTS = join(REPO, 'docs', 'screenshots');
const SLOW = { timeout: 30_000, interval: 250 };
const OPS_PASSWORD = 'Ops-admin-password-1';

describe.runIf(process.getuid?.() === 0)(
  'dashboard approvals, snapshots and backups',
  { timeout: 240_000 },
  () => {
    let d: DaemonProcess;
    let b: TestBrowser;
    let page: Page;
    const go = async (path: string) => {
      await page.goto(`${d.url}/dashboard${path}`);
      await page.getByRole('heading', { level: 1 }).waitFor();
      await expect.poll(() => page.getByText(/^Loading/).count(), { timeout: 30_000 }).toBe(0);
    };
    const accessible = async (name: string) => {
      expect(await seriousA11yViolations(page), `axe on ${name}`).toEqual([]);
      await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
    };
    const bulwarkJson = async (...args: string[]) => {
      const r = await d.bulwark([...args, '-f', 'json']);
      if (r.code !== 0) throw new Error(`bulwark ${args.join(' ')}: ${r.stderr}`);
      return JSON.parse(r.stdout);
    };
    /** The openstack CLI as the second admin, who needs no second factor. */
    const asOps = (): NodeJS.ProcessEnv => ({
      OS_CLOUD: '',
      OS_CLIENT_CONFIG_FILE: join(d.dataDir, 'no-clouds.yaml'),
      OS_AUTH_URL: `${d.url}/identity/v3`,
      OS_CACERT: join(d.dataDir, 'pki', 'ca.crt'),
      OS_IDENTITY_API_VERSION: '3',
      OS_USERNAME: 'opsadmin',
      OS_PASSWORD: OPS_PASSWORD,
      OS_PROJECT_NAME: 'admin',
      OS_USER_DOMAIN_NAME: 'Default',
      OS_PROJECT_DOMAIN_NAME: 'Default',
    });
    const heldServer = (name: string, env?: NodeJS.ProcessEnv) =>
      d.openstack(['server', 'create', '--flavor', 'huge', '--image', 'tiny-bios', name], env);

    beforeAll(async () => {
      mkdirSync(SHOTS, { recursive: true });
      d = await startDaemonProcess();
      await d.os('flavor', 'create', '--vcpus', '32', '--ram', '256', '--disk', '1', 'huge');
      await d.os('image', 'create', '--disk-format', 'raw', '--file', guestImage('bios.raw'), 'tiny-bios');
      await d.os('user', 'create', '--password', OPS_PASSWORD, 'opsadmin');
      await d.os('role', 'add', '--project', 'admin', '--user', 'opsadmin', 'admin');
      // Two held requests: the browser's admin's own, and another admin's.
      await heldServer('vm-mine');
      await heldServer('vm-ops', asOps());
      const init = await d.bulwark([
        'backup',
        'repository',
        'init',
        '--recovery-key-out',
        join(d.dataDir, 'recovery.pem'),
      ]);
      expect(init.code, init.stderr).toBe(0);
      b = await launchBrowser(d.netns);
      page = b.page;
      await page.goto(`${d.url}/dashboard/`);
      await page.locator('input[name=username]').fill('admin');
      await page
        .locator('input[name=password]')
        .fill(readFileSync(join(d.dataDir, 'admin-password'), 'utf8').trim());
      await page.getByRole('button', { name: 'Log in', exact: true }).click();
      await page.getByRole('heading', { name: 'Instances' }).waitFor();
    }, 180_000);
    afterAll(async () => {
      await b?.close();
      await stopDaemon(d);
    });

    it('rejects another admin’s request with a reason, and shows the API refusing the admin’s own', async () => {
      const held = await bulwarkJson('approval', 'list', '--status', 'pending');
      expect(held).toHaveLength(2);
      await go('/admin/approvals');
      const ops = page.getByRole('form', { name: /Decide .*vm-ops/ });
      await ops.locator('input[name=reason]').fill('use a smaller flavor, OPS-9');
      await ops.getByRole('button', { name: 'Reject' }).click();
      await page
        .getByRole('row', {
          name: /create server vm-ops: .* server-create opsadmin rejected admin use a smaller flavor, OPS-9/,
        })
        .waitFor();
      const mine = page.getByRole('form', { name: /Decide .*vm-mine/ });
      await mine.locator('input[name=reason]').fill('mine');
      await mine.getByRole('button', { name: 'Approve' }).click();
      await expect
        .poll(() => mine.getByRole('alert').textContent(), SLOW)
        .toMatch(/two-person rule.*HTTP 403/);
      await accessible('approvals');
      const after = await bulwarkJson('approval', 'list');
      const byName = (n: string) => after.find((a: { summary: string }) => a.summary.includes(n));
      expect(byName('vm-ops')).toMatchObject({ status: 'rejected' });
      expect(await bulwarkJson('approval', 'show', byName('vm-ops').id)).toMatchObject({
        status: 'rejected',
        decided_by_name: 'admin',
        decision_reason: 'use a smaller flavor, OPS-9',
      });
      expect(byName('vm-mine')).toMatchObject({ status: 'pending' });
      expect(await d.osJson('server', 'list')).toEqual([]);
    });

    it('snapshots a volume (a blank description shows the API reason) and backs it up, with status', async () => {
      await d.os('volume', 'create', '--size', '1', 'db-data');
      await expect
        .poll(async () => (await d.osJson('volume', 'show', 'db-data')).status, {
          timeout: 60_000,
          interval: 1000,
        })
        .toBe('available');
      const volume = (await d.osJson('volume', 'show', 'db-data')).id as string;
      await go(`/project/volumes/${volume}`);
      const snap = page.getByRole('form', { name: 'Create Snapshot' });
      await snap.locator('input[name=snapshot-name]').fill('pre-upgrade');
      await snap.locator('input[name=snapshot-description]').fill('   ');
      await snap.getByRole('button', { name: 'Create Snapshot' }).click();
      await expect.poll(() => snap.getByRole('alert').textContent(), SLOW).toMatch(/description.*HTTP 400/i);
      expect(await d.osJson('volume', 'snapshot', 'list')).toEqual([]);
      await snap.locator('input[name=snapshot-description]').fill('Before the schema upgrade');
      await snap.getByRole('button', { name: 'Create Snapshot' }).click();
      await expect
        .poll(() => page.getByRole('row', { name: /pre-upgrade-\d{8}T\d{6}Z/ }).textContent(), {
          timeout: 60_000,
          interval: 500,
        })
        .toMatch(/Before the schema upgrade\s*available/);
      const snaps = await d.osJson('volume', 'snapshot', 'list', '--long');
      expect(snaps).toEqual([
        expect.objectContaining({ Description: 'Before the schema upgrade', Status: 'available' }),
      ]);

      const backup = page.getByRole('form', { name: 'Back Up Volume' });
      await backup.locator('input[name=backup-name]').fill('nightly');
      await backup.getByRole('button', { name: 'Back Up' }).click();
      await expect
        .poll(() => page.getByRole('row', { name: /^nightly/ }).textContent(), {
          timeout: 120_000,
          interval: 1000,
        })
        .toMatch(/nightly\s*available\s*No\s*\d+ bytes/);
      await accessible('volume-protection');
      const shown = await d.osJson('volume', 'backup', 'show', 'nightly');
      expect(shown).toMatchObject({ status: 'available', volume_id: volume });
    });

    it('runs the compliance checks from Admin → Compliance: verdicts with evidence per framework, and history', async () => {
      await d.os('security', 'group', 'create', 'cmp-open');
      await d.os(
        'security',
        'group',
        'rule',
        'create',
        '--ingress',
        '--protocol',
        'tcp',
        '--dst-port',
        '22',
        '--remote-ip',
        '0.0.0.0/0',
        'cmp-open',
      );
      await go('/admin/compliance');
      await page.getByText(/No compliance run yet/).waitFor(SLOW);
      await page.getByRole('button', { name: 'Run checks now' }).click();
      const ssh = page.getByRole('row', { name: /^admin-ports-exposed/ });
      await expect
        .poll(() => ssh.textContent(), SLOW)
        .toMatch(/1\.3\.1, 1\.4\.2\s*Fail.*ingress tcp 22 from 0\.0\.0\.0\/0/);
      await page.getByLabel('Framework').selectOption('hipaa');
      await expect
        .poll(() => page.getByRole('row', { name: /^disk-encryption/ }).textContent(), SLOW)
        // db-data (made above from the default, unencrypted type) is the evidence.
        .toMatch(/164\.312\(a\)\(2\)\(iv\)\s*Fail.*db-data/);
      expect(await page.getByRole('row', { name: /^resource-quotas/ }).count()).toBe(0);
      await accessible('compliance');
      const runs = await bulwarkJson('compliance', 'history');
      expect(runs).toHaveLength(1);
      const shown = await page.getByRole('status').first().textContent();
      expect(shown).toContain(runs[0].created_at);
    });

    it('Admin → Users: lists another user’s second factors (no secret shown) and revokes one, audited', async () => {
      const secret = newSecret();
      await d.os('user', 'create', '--password', OPS_PASSWORD, 'keyuser');
      await d.os('credential', 'create', '--type', 'totp', 'keyuser', secret);
      await go('/admin/users');
      await page.getByRole('button', { name: 'Show second factors of keyuser' }).click();
      const table = page.getByRole('table', { name: /Second factors of keyuser/ });
      await table.getByRole('row', { name: /TOTP/ }).waitFor(SLOW);
      expect(await page.locator('main').textContent()).not.toContain(secret);
      await accessible('user-factors');
      await page.getByRole('button', { name: 'Revoke TOTP of keyuser' }).click();
      await page.getByText('keyuser has no second factor.').waitFor(SLOW);
      const user = await d.osJson('user', 'show', 'keyuser');
      expect(await d.osJson('credential', 'list', '--type', 'totp', '--user', user.id)).toEqual([]);
      const audit = await bulwarkJson('audit', 'list', '--action', 'identity:mfa_devices:revoke');
      expect(audit).toEqual([expect.objectContaining({ outcome: 'success', user_name: 'admin' })]);
    });

    // Last: from here a password alone no longer logs the admin in.
    it('enrolls TOTP for the logged-in user and requires it; a wrong code enrolls nothing', async () => {
      const opsJson = async (...args: string[]) => {
        const r = await d.openstack([...args, '-f', 'json'], asOps());
        if (r.code !== 0) throw new Error(`openstack ${args.join(' ')}: ${r.stderr}`);
        return JSON.parse(r.stdout);
      };
      await go('/account/two-factor');
      await page.getByRole('button', { name: 'Generate a new secret' }).click();
      const form = page.getByRole('form', { name: 'Enroll TOTP' });
      const secret = (await form.locator('code').first().textContent())!;
      expect(secret).toMatch(/^[A-Z2-7]{32}$/);
      await accessible('two-factor');
      const right = totpCode(secret, totpStep(Date.now()));
      await form.locator('input[name=code]').fill(right === '000000' ? '111111' : '000000');
      await form.getByRole('button', { name: 'Enroll and require TOTP' }).click();
      await expect.poll(() => page.getByRole('alert').textContent(), SLOW).toMatch(/does not match/);
      expect(await opsJson('credential', 'list', '--type', 'totp')).toEqual([]);
      await form.locator('input[name=code]').fill(totpCode(secret, totpStep(Date.now())));
      await form.getByRole('button', { name: 'Enroll and require TOTP' }).click();
      await page.getByText(/TOTP is enrolled and required/).waitFor(SLOW);
      await expect
        .poll(() => page.locator('dl').first().textContent(), SLOW)
        .toMatch(/TOTP enrolled\s*Yes \(1\)\s*MFA required\s*Yes\s*MFA rules\s*password \+ totp/);
      const admin = await opsJson('user', 'show', 'admin');
      expect(await opsJson('credential', 'list', '--type', 'totp', '--user', admin.id)).toHaveLength(1);
      expect(JSON.stringify(admin.options)).toMatch(/"multi_factor_auth_enabled": ?true/);
      // A password alone now gets Keystone's receipt, not a token.
      const pw = await d.openstack(['token', 'issue']);
      expect(pw.code).not.toBe(0);
      expect(pw.stderr).toMatch(/auth rules|401/i);
    });
  },
);
