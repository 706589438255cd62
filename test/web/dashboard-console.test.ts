/**
 * The dashboard's bootstrap-admin enrollment, security-key login, server
 * groups and serial console in Debian's Chromium against the real
 * `bulwark serve` with admin MFA required (the default), on one real tiny
 * guest. Chromium's virtual authenticator (CDP WebAuthn) is the key; the page
 * is https://localhost (the RP ID) with the daemon's CA trusted, so WebAuthn
 * runs. What the browser did is checked again with the openstack and bulwark
 * CLIs on the session's own token.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  addVirtualAuthenticator,
  launchBrowser,
  seriousA11yViolations,
  type TestBrowser,
  tokenCliEnv,
} from '../helpers/browser.js';
import { type DaemonProcess, REPO, startDaemonProcess, stopDaemon } from '../helpers/daemon-process.js';
import { guestImage } from '../helpers/guests.js';

const SHOTS = join(REPO, 'docs', 'screenshots');
const SLOW = { timeout: 30_000, interval: 250 };
const CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

describe.runIf(process.getuid?.() === 0)(
  'dashboard enrollment, security key and console',
  { timeout: 300_000 },
  () => {
    let d: DaemonProcess;
    let b: TestBrowser;
    let page: Page;
    let origin: string;
    let password: string;
    let asSession: NodeJS.ProcessEnv;
    const go = async (path: string) => {
      const res = await page.goto(`${origin}/dashboard${path}`);
      await page.getByRole('heading', { level: 1 }).waitFor();
      await expect.poll(() => page.getByText(/^Loading/).count(), { timeout: 30_000 }).toBe(0);
      return res;
    };
    const accessible = async (name: string) => {
      expect(await seriousA11yViolations(page), `axe on ${name}`).toEqual([]);
      await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
    };
    /** An API call from the page, as the dashboard makes it (session cookie + CSRF header). */
    const fromPage = (method: string, path: string) =>
      page.evaluate(
        async ([m, p]) => {
          const csrf =
            (globalThis as unknown as { document: { cookie: string } }).document.cookie.match(
              /__Host-bulwark-csrf=([^;]+)/,
            )?.[1] ?? '';
          const r = await fetch(p as string, { method: m as string, headers: { 'x-csrf-token': csrf } });
          return { status: r.status, body: await r.text() };
        },
        [method, path],
      );
    const osJson = async (...args: string[]) => {
      const r = await d.openstack([...args, '-f', 'json'], asSession);
      if (r.code !== 0) throw new Error(`openstack ${args.join(' ')}: ${r.stderr}`);
      return JSON.parse(r.stdout);
    };
    const logIn = async (withKey: boolean) => {
      await page.goto(`${origin}/dashboard/login`);
      await page.locator('input[name=username]').fill('admin');
      await page.locator('input[name=password]').fill(password);
      await page
        .getByRole('button', { name: withKey ? 'Log in with a security key' : 'Log in', exact: true })
        .click();
    };

    beforeAll(async () => {
      mkdirSync(SHOTS, { recursive: true });
      d = await startDaemonProcess({ adminMfa: true });
      origin = d.url.replace('127.0.0.1', 'localhost');
      password = readFileSync(join(d.dataDir, 'admin-password'), 'utf8').trim();
      b = await launchBrowser(d.netns, { trustCa: join(d.dataDir, 'pki', 'ca.crt') });
      page = b.page;
      await addVirtualAuthenticator(page);
    }, 180_000);
    afterAll(async () => {
      await b?.close();
      await stopDaemon(d);
    });

    it('lets the bootstrap admin without a factor only enroll one, then log in with password + security key', async () => {
      await logIn(false);
      await page.getByRole('heading', { name: 'Two-Factor Authentication' }).waitFor(SLOW);
      await page.getByText(/This session can only enroll one/).waitFor();
      expect(await page.getByRole('link', { name: 'Instances' }).count()).toBe(0);
      // The API refuses everything else to this session, with the reason; the page cannot get past it.
      for (const [m, p] of [
        ['GET', '/compute/v2.1/servers'],
        ['GET', '/bulwark/v1/audit/events'],
        ['POST', '/compute/v2.1/os-server-groups'],
      ] as const) {
        const r = await fromPage(m, p);
        expect(r.status, `${m} ${p}`).toBe(403);
        expect(r.body).toMatch(/Administrators must use a second factor/);
      }
      await go('/admin/users');
      expect(page.url()).toMatch(/\/account\/two-factor$/);
      // TOTP enrollment shows a QR code (a data: image the CSP allows) beside the secret.
      await page.getByRole('button', { name: 'Generate a new secret' }).click();
      const qr = page.getByRole('img', { name: /QR code of the key URI/ });
      await qr.waitFor(SLOW);
      expect(await qr.getAttribute('src')).toMatch(/^data:image\/png;base64,/);
      await accessible('two-factor-enroll');

      const register = page.getByRole('form', { name: 'Register a security key' });
      await register.locator('input[name=key-name]').fill('yubikey-desk');
      await register.getByRole('button', { name: 'Register a security key' }).click();
      await page.getByRole('row', { name: /yubikey-desk/ }).waitFor(SLOW);
      await page.getByRole('button', { name: 'Log out' }).click();

      // A wrong password with the key: the API's reason, no session.
      await page.locator('input[name=username]').fill('admin');
      await page.locator('input[name=password]').fill('not-the-password');
      await page.getByRole('button', { name: 'Log in with a security key' }).click();
      await expect.poll(() => page.getByRole('alert').textContent(), SLOW).toMatch(/authenticat/i);
      await logIn(true);
      await page.getByRole('heading', { name: 'Instances' }).waitFor(SLOW);
      await page.getByRole('link', { name: 'Audit Log' }).waitFor();
      const cookie = (await b.context.cookies()).find((c) => c.name === '__Host-bulwark-session')!;
      asSession = tokenCliEnv(d, cookie.value);
      expect((await osJson('token', 'issue')).project_id).toBeTruthy();
      const login = JSON.parse(
        (await d.bulwark(['audit', 'list', '--action', 'dashboard:session:create', '-f', 'json'], asSession))
          .stdout,
      );
      expect(login.length).toBeGreaterThanOrEqual(2);
    });

    it('creates a server group and launches a real guest into it from the Launch form', async () => {
      for (const args of [
        ['flavor', 'create', '--vcpus', '1', '--ram', '256', '--disk', '1', 'tiny'],
        ['image', 'create', '--disk-format', 'raw', '--file', guestImage('bios.raw'), 'tiny-bios'],
      ]) {
        const r = await d.openstack(args, asSession);
        expect(r.code, r.stderr).toBe(0);
      }
      await go('/project/compute/server-groups');
      const form = page.getByRole('form', { name: 'Create Server Group' });
      await form.locator('input[name=name]').fill('web-spread');
      await form.locator('select[name=policy]').selectOption('anti-affinity');
      await form.locator('input[name=max-per-host]').fill('0');
      await form.getByRole('button', { name: 'Create Server Group' }).click();
      await expect
        .poll(() => form.getByRole('alert').textContent(), SLOW)
        .toMatch(/max_server_per_host|HTTP 400/);
      await form.locator('input[name=max-per-host]').fill('1');
      await form.getByRole('button', { name: 'Create Server Group' }).click();
      await page
        .getByRole('row', { name: /web-spread\s*anti-affinity\s*max_server_per_host=1/ })
        .waitFor(SLOW);
      await accessible('server-groups');

      await go('/project/compute/instances');
      const launch = page.getByRole('form', { name: 'Launch Instance' });
      await launch.locator('input[name=name]').fill('con1');
      await launch.locator('select[name=flavor]').selectOption({ label: 'tiny' });
      await launch.locator('select[name=image]').selectOption({ label: 'tiny-bios' });
      await launch.locator('select[name=server-group]').selectOption({ label: 'web-spread (anti-affinity)' });
      // No network, so no security group either (the API refuses groups without a port).
      await launch.getByRole('checkbox', { name: 'default' }).uncheck();
      await launch.getByRole('button', { name: 'Launch Instance' }).click();
      await page.getByRole('link', { name: 'con1' }).waitFor(SLOW);
      await expect
        .poll(() => page.getByRole('row', { name: /con1/ }).textContent(), {
          timeout: 180_000,
          interval: 1000,
        })
        .toMatch(/ACTIVE/);
      const group = await osJson('server', 'group', 'show', 'web-spread');
      const server = await osJson('server', 'show', 'con1');
      expect(JSON.stringify(group.members)).toContain(server.id);
    }, 240_000);

    it('opens the guest’s serial console with the recording notice, types a command and sees its output', async () => {
      const server = await osJson('server', 'show', 'con1');
      await go(`/project/compute/instances/${server.id}`);
      expect(await page.getByRole('link', { name: 'Console' }).getAttribute('href')).toBe(
        `/dashboard/project/compute/instances/${server.id}/console`,
      );
      // xterm's styles go through the CSSOM: the page keeps the same strict CSP header.
      const res = await go(`/project/compute/instances/${server.id}/console`);
      expect(res?.headers()['content-security-policy']).toBe(CSP);
      await page.getByRole('heading', { name: 'Console: con1' }).waitFor(SLOW);
      await page.getByText('This session is recorded.').waitFor();
      await page.getByText(/^Connected\./).waitFor(SLOW);
      const screen = page.locator('.xterm-rows');
      await page.locator('.xterm').click();
      // Keys typed while the guest still boots are lost: wait for its shell's prompt first.
      await page.keyboard.press('Enter');
      await expect
        .poll(() => screen.textContent(), { timeout: 180_000, interval: 500 })
        .toMatch(/root@con1:\/#\s*$/);
      await page.keyboard.type('echo BW-$((6*7))-OK');
      await page.keyboard.press('Enter');
      await expect.poll(() => screen.textContent(), { timeout: 60_000, interval: 250 }).toContain('BW-42-OK');
      await accessible('console');
      // ... and the browser refused nothing.
      expect(b.cspViolations).toEqual([]);
      await go('/project/compute/instances');

      // The admin finds the recording and replays what was typed and shown.
      const recs = await (async () => {
        const deadline = Date.now() + 30_000;
        for (;;) {
          const r = await d.bulwark(
            ['console', 'recordings', '--server', server.id, '-f', 'json'],
            asSession,
          );
          const list = JSON.parse(r.stdout) as { id: string; ended_at: string | null; user_name: string }[];
          if (list.length > 0 && list.every((x) => x.ended_at !== null)) return list;
          if (Date.now() > deadline) throw new Error(`recording not closed: ${r.stdout} ${r.stderr}`);
          await new Promise((ok) => setTimeout(ok, 500));
        }
      })();
      expect(recs).toHaveLength(1);
      expect(recs[0]).toMatchObject({ user_name: 'admin' });
      const cast = join(d.dataDir, 'con1.cast');
      const replay = await d.bulwark(['console', 'replay', recs[0]!.id, '--output', cast], asSession);
      expect(replay.code, replay.stderr).toBe(0);
      const events = readFileSync(cast, 'utf8')
        .trim()
        .split('\n')
        .slice(1)
        .map((l) => JSON.parse(l));
      expect(
        events
          .filter((e) => e[1] === 'i')
          .map((e) => e[2])
          .join(''),
      ).toContain('echo BW-$((6*7))-OK');
      expect(
        events
          .filter((e) => e[1] === 'o')
          .map((e) => e[2])
          .join(''),
      ).toContain('BW-42-OK');
      await d.openstack(['server', 'delete', '--wait', 'con1'], asSession);
    }, 360_000);

    it('logs in with the password and a one-time recovery code', async () => {
      await go('/account/two-factor');
      await page.getByRole('button', { name: 'Generate new recovery codes' }).click();
      const code = (await page
        .getByRole('list', { name: 'Recovery codes' })
        .locator('code')
        .first()
        .textContent())!;
      const withCode = async () => {
        await page.locator('input[name=username]').fill('admin');
        await page.locator('input[name=password]').fill(password);
        await page.locator('input[name=recovery-code]').fill(code);
        await page.getByRole('button', { name: 'Log in', exact: true }).click();
      };
      await page.getByRole('button', { name: 'Log out' }).click();
      await withCode();
      await page.getByRole('heading', { name: 'Instances' }).waitFor(SLOW);
      await page.getByRole('link', { name: 'Audit Log' }).waitFor();
      await page.getByRole('button', { name: 'Log out' }).click();
      // Spent: the same code again shows the API's refusal.
      await withCode();
      await expect.poll(() => page.getByRole('alert').textContent(), SLOW).toMatch(/authenticat/i);
    });
  },
);
