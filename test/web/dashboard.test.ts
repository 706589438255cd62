/**
 * The web dashboard in Debian's Chromium (playwright-core) against the real
 * `bulwark serve`: the spec's dashboard flows end to end on one real tiny
 * guest, axe-core on every page, and the screenshots docs/dashboard.md shows.
 * What the browser did is checked again with the real openstack CLI, using
 * the session's own Keystone token.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { totpCode, totpStep } from '../../src/identity/totp.js';
import { launchBrowser, seriousA11yViolations, type TestBrowser, tokenCliEnv } from '../helpers/browser.js';
import { type DaemonProcess, REPO, startDaemonProcess, stopDaemon } from '../helpers/daemon-process.js';
import { guestImage } from '../helpers/guests.js';
import { privateNetwork } from '../helpers/networks.js';

const SECRET = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP';
const SHOTS = join(REPO, 'docs', 'screenshots');
/** How long a page may take to show an API answer on a busy, shared host. */
const SLOW = { timeout: 30_000, interval: 250 };

describe.runIf(process.getuid?.() === 0)('web dashboard in Chromium', { timeout: 240_000 }, () => {
  let d: DaemonProcess;
  let b: TestBrowser;
  let page: Page;
  /** The openstack CLI as the browser's session (its token, read from the HttpOnly cookie). */
  let asSession: NodeJS.ProcessEnv;
  const osJson = async (...args: string[]) => {
    const r = await d.openstack([...args, '-f', 'json'], asSession);
    if (r.code !== 0) throw new Error(`openstack ${args.join(' ')}: ${r.stderr}`);
    return JSON.parse(r.stdout);
  };
  const go = async (path: string) => {
    await page.goto(`${d.url}/dashboard${path}`);
    await page.getByRole('heading', { level: 1 }).waitFor();
    await expect.poll(() => page.getByText(/^Loading/).count(), { timeout: 30_000 }).toBe(0);
  };
  const accessible = async (name: string) => {
    expect(await seriousA11yViolations(page), `axe on ${name}`).toEqual([]);
    await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
  };

  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    d = await startDaemonProcess();
    await d.os('flavor', 'create', '--vcpus', '1', '--ram', '128', '--disk', '1', 'tiny');
    await d.os('image', 'create', '--disk-format', 'raw', '--file', guestImage('bios.raw'), 'tiny-bios');
    await d.os(
      'image',
      'create',
      '--disk-format',
      'raw',
      '--file',
      guestImage('uefi-signed.raw'),
      'tiny-uefi',
    );
    await privateNetwork(d);
    // From here the admin logs in with password and TOTP (Keystone MFA rules, docs/identity.md).
    await d.os('credential', 'create', '--type', 'totp', 'admin', SECRET);
    await d.os(
      'user',
      'set',
      '--multi-factor-auth-rule',
      'password,totp',
      '--enable-multi-factor-auth',
      'admin',
    );
    b = await launchBrowser(d.netns);
    page = b.page;
  }, 180_000);
  afterAll(async () => {
    await b?.close();
    if (d && asSession) {
      const left = await d.openstack(['server', 'list', '-f', 'value', '-c', 'ID'], asSession);
      for (const id of left.stdout.split('\n').filter(Boolean))
        await d.openstack(['server', 'delete', '--wait', id], asSession);
    }
    await stopDaemon(d);
  });

  it('logs in with password, then TOTP on the receipt; a wrong code shows the API reason', async () => {
    const res = await page.goto(`${d.url}/dashboard/`);
    await page.getByRole('heading', { name: 'Log in to Bulwark' }).waitFor();
    expect(res?.headers()['cache-control']).toBe('no-store');
    expect(res?.headers()['content-security-policy']).toMatch(/default-src 'self'.*frame-ancestors 'none'/);
    expect(res?.headers()['x-frame-options']).toBe('DENY');
    await accessible('login');
    const password = readFileSync(join(d.dataDir, 'admin-password'), 'utf8').trim();
    await page.locator('input[name=username]').fill('admin');
    await page.locator('input[name=password]').fill(password);
    await page.getByRole('button', { name: 'Log in', exact: true }).click();
    const passcode = page.locator('input[name=passcode]');
    await passcode.waitFor();
    await accessible('login-totp');
    const right = totpCode(SECRET, totpStep(Date.now()));
    await passcode.fill(right === '000000' ? '111111' : '000000');
    await page.getByRole('button', { name: 'Verify' }).click();
    await expect
      .poll(() => page.getByRole('alert').textContent(), SLOW)
      .toMatch(/authentication|TOTP|passcode/i);
    await passcode.fill(right);
    await page.getByRole('button', { name: 'Verify' }).click();
    await page.getByRole('heading', { name: 'Instances' }).waitFor();
    await expect.poll(() => page.getByText(/Session expires in \d+/).count(), SLOW).toBe(1);

    // The token is HttpOnly (script sees only the CSRF cookie), Secure and SameSite=Strict.
    const cookies = await b.context.cookies();
    const session = cookies.find((c) => c.name === '__Host-bulwark-session');
    expect(session).toMatchObject({ httpOnly: true, secure: true, sameSite: 'Strict', path: '/' });
    expect(await page.evaluate('document.cookie')).not.toContain(session!.value);
    asSession = tokenCliEnv(d, session!.value);
    const token = await osJson('token', 'issue');
    expect(token.project_id).toBeTruthy();
  });

  it('creates web-servers with the HTTPS-from-10.0.0.0/8 rule, and shows the reason for a bad CIDR', async () => {
    await go('/project/network/security-groups');
    const create = page.getByRole('form', { name: 'Create Security Group' });
    await create.locator('input[name=name]').fill('web-servers');
    await create.locator('input[name=description]').fill('Web server security group');
    await create.getByRole('button', { name: 'Create Security Group' }).click();
    await page.getByRole('link', { name: 'Manage Rules of web-servers' }).click();
    await page.getByRole('heading', { name: /Manage Security Group Rules: web-servers/ }).waitFor();
    const add = page.getByRole('form', { name: 'Add Rule' });
    await add.locator('select[name=rule]').selectOption('HTTPS');
    await add.locator('select[name=direction]').selectOption('ingress');
    await add.locator('select[name=remote]').selectOption('cidr');
    await add.locator('input[name=cidr]').fill('10.0.0.0/33');
    await add.getByRole('button', { name: 'Add' }).click();
    await expect.poll(() => add.getByRole('alert').textContent(), SLOW).toMatch(/10\.0\.0\.0\/33.*HTTP 400/);
    await add.locator('input[name=cidr]').fill('10.0.0.0/8');
    await add.getByRole('button', { name: 'Add' }).click();
    const row = page.getByRole('row', { name: /Ingress IPv4 tcp 443 10\.0\.0\.0\/8/ });
    await row.waitFor();
    const rules = await osJson('security', 'group', 'rule', 'list', 'web-servers');
    expect(rules).toContainEqual(
      expect.objectContaining({
        'IP Protocol': 'tcp',
        'Port Range': '443:443',
        'IP Range': '10.0.0.0/8',
        Direction: 'ingress',
      }),
    );
  });

  it('launches one real guest and attaches web-servers to it with Edit Security Groups', async () => {
    await go('/project/compute/instances');
    const launch = page.getByRole('form', { name: 'Launch Instance' });
    await launch.locator('input[name=name]').fill('web1');
    await launch.locator('select[name=flavor]').selectOption({ label: 'tiny' });
    await launch.locator('select[name=image]').selectOption({ label: 'tiny-bios' });
    await launch.locator('select[name=network]').selectOption({ label: 'private-net' });
    await launch.getByLabel('Key 1').fill('role');
    await launch.getByLabel('Value 1').fill('web');
    await launch.getByRole('button', { name: 'Launch Instance' }).click();
    await page.getByRole('link', { name: 'web1' }).waitFor();
    await expect
      .poll(() => page.getByRole('row', { name: /web1/ }).textContent(), { timeout: 120_000, interval: 1000 })
      .toMatch(/ACTIVE/);
    await page.getByRole('link', { name: 'web1' }).click();
    await page.getByRole('heading', { name: 'Instance: web1' }).waitFor();
    const edit = page.getByRole('group', { name: 'Edit Security Groups' });
    await edit.getByRole('checkbox', { name: 'web-servers' }).check();
    await expect.poll(() => page.locator('dd').nth(4).textContent(), SLOW).toMatch(/web-servers/);
    await edit.getByRole('checkbox', { name: 'default' }).uncheck();
    await expect.poll(() => page.locator('dd').nth(4).textContent(), SLOW).toBe('web-servers');
    const server = await osJson('server', 'show', 'web1');
    expect(server.status).toBe('ACTIVE');
    expect(JSON.stringify(server.security_groups)).toContain('web-servers');
    expect(JSON.stringify(server.security_groups)).not.toContain('default');
    expect(server.properties).toMatchObject({ role: 'web' });
  });

  it('creates a vTPM flavor with the extra specs preset', async () => {
    await go('/admin/compute/flavors');
    const form = page.getByRole('form', { name: 'Create Flavor' });
    await form.locator('input[name=name]').fill('secure-vm-medium');
    await form.locator('input[name=vcpus]').fill('4');
    await form.locator('input[name=ram]').fill('8192');
    await form.locator('input[name=disk]').fill('50');
    await form.getByRole('button', { name: 'Add vTPM 2.0 (CRB)' }).click();
    await form.getByRole('button', { name: 'Create Flavor' }).click();
    await page
      .getByRole('row', { name: /secure-vm-medium.*hw:tpm_model=tpm-crb, hw:tpm_version=2\.0/ })
      .waitFor();
    const flavor = await osJson('flavor', 'show', 'secure-vm-medium');
    expect(flavor.properties).toMatchObject({ 'hw:tpm_model': 'tpm-crb', 'hw:tpm_version': '2.0' });
  });

  it('sets the Secure Boot properties of an image', async () => {
    await go('/admin/compute/images');
    const form = page.getByRole('form', { name: 'Set Boot Properties' });
    await form.locator('select[name=image]').selectOption({ label: 'tiny-uefi' });
    await form.locator('select[name=hw_firmware_type]').selectOption('uefi');
    await form.locator('select[name=hw_machine_type]').selectOption('q35');
    await form.locator('select[name=os_secure_boot]').selectOption('required');
    await form.getByRole('button', { name: 'Save' }).click();
    await page.getByRole('row', { name: /tiny-uefi active .* uefi q35 required/ }).waitFor();
    const image = await osJson('image', 'show', 'tiny-uefi');
    expect(image.properties).toMatchObject({
      hw_firmware_type: 'uefi',
      hw_machine_type: 'q35',
      os_secure_boot: 'required',
    });
  });

  it('creates an encrypted volume type and volume: Encryption: Yes; attaches it', async () => {
    await go('/admin/volume/volume-types');
    const form = page.getByRole('form', { name: 'Create Volume Type' });
    await form.locator('input[name=name]').fill('encrypted-ssd');
    await form.getByRole('button', { name: 'Create Volume Type' }).click();
    await page
      .getByRole('row', { name: /encrypted-ssd Yes \(luks\) aes-xts-plain64 256 front-end/ })
      .waitFor();
    await go('/project/volumes');
    const vol = page.getByRole('form', { name: 'Create Volume' });
    await vol.locator('input[name=name]').fill('secret-data');
    await vol.locator('select[name=type]').selectOption('encrypted-ssd');
    await vol.getByRole('button', { name: 'Create Volume' }).click();
    await expect
      .poll(() => page.getByRole('row', { name: /secret-data/ }).textContent(), {
        timeout: 90_000,
        interval: 1000,
      })
      .toMatch(/available/);
    await page.getByRole('link', { name: 'secret-data' }).click();
    await page.getByRole('heading', { name: 'Volume: secret-data' }).waitFor();
    await expect.poll(() => page.locator('dl').textContent(), SLOW).toMatch(/Encryption\s*Yes/);
    const attach = page.getByRole('form', { name: 'Attach Volume' });
    await attach.locator('select[name=server]').selectOption({ label: 'web1' });
    await attach.getByRole('button', { name: 'Attach Volume' }).click();
    await expect
      .poll(() => page.locator('dl').textContent(), { timeout: 90_000, interval: 1000 })
      .toMatch(/Status\s*in-use/);
    const v = await osJson('volume', 'show', 'secret-data');
    expect(v.encrypted).toBe(true);
    expect(v.status).toBe('in-use');
  });

  it('passes axe-core on every page, under the strict CSP', async () => {
    const server = (await osJson('server', 'show', 'web1')).id as string;
    const volume = (await osJson('volume', 'show', 'secret-data')).id as string;
    const group = (await osJson('security', 'group', 'show', 'web-servers')).id as string;
    const pages: [string, string][] = [
      ['instances', '/project/compute/instances'],
      ['instance-detail', `/project/compute/instances/${server}`],
      ['security-groups', '/project/network/security-groups'],
      ['security-group-rules', `/project/network/security-groups/${group}`],
      ['volumes', '/project/volumes'],
      ['volume-detail', `/project/volumes/${volume}`],
      ['flavors', '/admin/compute/flavors'],
      ['images', '/admin/compute/images'],
      ['volume-types', '/admin/volume/volume-types'],
      ['quotas', '/admin/quotas'],
      ['users', '/admin/users'],
      ['compliance', '/admin/compliance'],
      // last: the chain status below is read off this page
      ['audit-log', '/admin/audit'],
    ];
    for (const [name, path] of pages) {
      await go(path);
      await accessible(name);
    }
    await expect
      .poll(() => page.getByRole('status').first().textContent())
      .toMatch(/Chain verified: \d+ records intact/);
    await go('/admin/users');
    await page.getByRole('row', { name: /admin Yes Yes password \+ totp Yes/ }).waitFor();
    expect(b.cspViolations).toEqual([]);
    // The check can fail: an unlabelled field is a critical violation.
    await page.evaluate("document.querySelector('main').append(document.createElement('input'))");
    expect((await seriousA11yViolations(page)).map((v) => v.id)).toContain('label');
  });

  it('gives a member only the project pages, their own resources, and the API refusal on admin actions', async () => {
    await d.openstack(['project', 'create', 'web'], asSession);
    await d.openstack(['user', 'create', '--password', 'Alice-password-1', 'alice'], asSession);
    await d.openstack(['role', 'add', '--project', 'web', '--user', 'alice', 'member'], asSession);
    const ctx = await b.browser.newContext({ ignoreHTTPSErrors: true });
    try {
      const p = await ctx.newPage();
      await p.goto(`${d.url}/dashboard/`);
      await p.locator('input[name=username]').fill('alice');
      await p.locator('input[name=password]').fill('Alice-password-1');
      await p.getByRole('button', { name: 'Log in', exact: true }).click();
      await p.getByRole('heading', { name: 'Instances' }).waitFor();
      expect(await p.getByText('project web').count()).toBe(1);
      expect(await p.getByRole('navigation').getByRole('link', { name: 'Flavors' }).count()).toBe(0);
      await p.goto(`${d.url}/dashboard/project/network/security-groups`);
      await p.getByRole('link', { name: 'Manage Rules of default' }).waitFor();
      expect(await p.getByText('web-servers').count()).toBe(0);
      // The page is there for anyone; the API says no, and the page shows why.
      await p.goto(`${d.url}/dashboard/admin/compute/flavors`);
      const form = p.getByRole('form', { name: 'Create Flavor' });
      await form.locator('input[name=name]').fill('not-allowed');
      await form.getByRole('button', { name: 'Create Flavor' }).click();
      await expect.poll(() => form.getByRole('alert').textContent(), SLOW).toMatch(/HTTP 403/);
      expect((await osJson('flavor', 'list')).map((f: { Name: string }) => f.Name)).not.toContain(
        'not-allowed',
      );
      // A session revoked while the page is open sends the page back to the login.
      const token = (await ctx.cookies()).find((c) => c.name === '__Host-bulwark-session')!.value;
      expect((await d.openstack(['token', 'revoke', token], asSession)).code).toBe(0);
      const ended = p.waitForResponse((r) => r.url().includes('/volume/v3/volumes'));
      await p.getByRole('navigation').getByRole('link', { name: 'Volumes' }).click();
      expect((await ended).status()).toBe(401);
      await p.getByRole('heading', { name: 'Log in to Bulwark' }).waitFor();
      await p.getByText('Your session expired; log in again.').waitFor();
    } finally {
      await ctx.close();
    }
  });

  it('deletes the instance, then logs out: the session token is revoked', async () => {
    const server = (await osJson('server', 'show', 'web1')).id as string;
    await d.openstack(['server', 'remove', 'volume', 'web1', 'secret-data'], asSession);
    await go(`/project/compute/instances/${server}`);
    await page.getByRole('button', { name: 'Delete Instance' }).click();
    await page.getByRole('heading', { name: 'Instances' }).waitFor();
    await expect
      .poll(async () => (await osJson('server', 'list')).length, { timeout: 60_000, interval: 1000 })
      .toBe(0);
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.getByRole('heading', { name: 'Log in to Bulwark' }).waitFor();
    const after = await d.openstack(['token', 'issue'], asSession);
    expect(after.code).not.toBe(0);
    expect(after.stderr).toMatch(/HTTP 401/);
  });
});
