/**
 * WebAuthn in a real browser: Debian's Chromium, driven by playwright-core,
 * with Chromium's virtual authenticator (CDP WebAuthn domain), against the
 * real `bulwark serve` in its own network namespace. The browser runs in
 * that namespace too and trusts the daemon's CA through its own NSS database,
 * so the page is a secure context on https://localhost (the RP ID).
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DaemonProcess, startDaemonProcess, stopDaemon } from '../helpers/daemon-process.js';

describe('WebAuthn sign-in page in Chromium with a virtual authenticator', () => {
  let d: DaemonProcess;
  let browser: Browser;
  let page: Page;
  let home: string;
  let origin: string;
  beforeAll(async () => {
    d = await startDaemonProcess();
    await d.os('project', 'create', 'web');
    await d.os('user', 'create', '--password', 'Key-holder-pass-1', 'keyholder');
    await d.os('role', 'add', '--project', 'web', '--user', 'keyholder', 'member');
    home = mkdtempSync(join(tmpdir(), 'bulwark-chromium-'));
    const nss = `sql:${join(home, '.pki', 'nssdb')}`;
    execFileSync('mkdir', ['-p', join(home, '.pki', 'nssdb')]);
    execFileSync('certutil', ['-d', nss, '-N', '--empty-password']);
    execFileSync('certutil', [
      '-d',
      nss,
      '-A',
      '-n',
      'bulwark-test-ca',
      '-t',
      'C,,',
      '-i',
      join(d.dataDir, 'pki', 'ca.crt'),
    ]);
    const wrapper = join(home, 'chromium-in-netns');
    writeFileSync(wrapper, `#!/bin/sh\nexec nsenter --net=/run/netns/${d.netns} -- /usr/bin/chromium "$@"\n`);
    chmodSync(wrapper, 0o755);
    browser = await chromium.launch({
      executablePath: wrapper,
      env: { ...process.env, HOME: home },
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    page = await browser.newPage();
    origin = d.url.replace('127.0.0.1', 'localhost');
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('WebAuthn.enable');
    await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: {
        protocol: 'ctap2',
        transport: 'usb',
        hasResidentKey: false,
        hasUserVerification: true,
        isUserVerified: true,
        automaticPresenceSimulation: true,
      },
    });
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    await stopDaemon(d);
    if (home) rmSync(home, { recursive: true, force: true });
  });

  const status = () => page.locator('#status');

  it('serves the sign-in page under a strict CSP', async () => {
    const res = await page.goto(`${origin}/dashboard/webauthn`);
    expect(res?.status()).toBe(200);
    const csp = res?.headers()['content-security-policy'] ?? '';
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(await page.evaluate('window.isSecureContext')).toBe(true);
  }, 120_000);

  it('registers a security key after a password sign-in, then signs in with password + key', async () => {
    await page.fill('#user', 'keyholder');
    await page.fill('#password', 'Key-holder-pass-1');
    await page.fill('#project', 'web');
    await page.click('#password-login');
    await expect.poll(() => status().textContent(), { timeout: 30_000 }).toBe('Signed in with password.');
    await page.click('#register');
    await expect.poll(() => status().textContent(), { timeout: 30_000 }).toBe('Security key registered.');
    await page.click('#key-login');
    await expect
      .poll(() => status().textContent(), { timeout: 30_000 })
      .toBe('Signed in with security key: password,webauthn');
    const events = JSON.parse(
      (await d.bulwark(['audit', 'list', '--action', 'webauthn:login', '--format', 'json'])).stdout,
    );
    expect(events[0]).toMatchObject({ user_name: 'keyholder', outcome: 'success' });
  }, 120_000);

  it('refuses the key with a wrong password, and audits why', async () => {
    await page.fill('#password', 'not-the-password');
    await page.click('#key-login');
    await expect.poll(() => status().textContent(), { timeout: 30_000 }).toMatch(/^error: .*authentication/);
    const events = JSON.parse(
      (
        await d.bulwark([
          'audit',
          'list',
          '--action',
          'webauthn:login',
          '--outcome',
          'denied',
          '--format',
          'json',
        ])
      ).stdout,
    );
    expect(events[0]).toMatchObject({ user_name: 'keyholder', status: 401 });
    expect(events[0].reason).toMatch(/^wrong password/);
  }, 120_000);
});
