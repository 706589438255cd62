/**
 * WebAuthn in a real browser: Debian's Chromium, driven by playwright-core,
 * with Chromium's virtual authenticator (CDP WebAuthn domain), against the
 * real `bulwark serve` in its own network namespace. The browser runs in
 * that namespace too and trusts the daemon's CA through its own NSS database,
 * so the page is a secure context on https://localhost (the RP ID).
 */
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addVirtualAuthenticator, launchBrowser, type TestBrowser } from '../helpers/browser.js';
import { type DaemonProcess, startDaemonProcess, stopDaemon } from '../helpers/daemon-process.js';

describe('WebAuthn sign-in page in Chromium with a virtual authenticator', () => {
  let d: DaemonProcess;
  let b: TestBrowser;
  let page: Page;
  let origin: string;
  beforeAll(async () => {
    d = await startDaemonProcess();
    await d.os('project', 'create', 'web');
    await d.os('user', 'create', '--password', 'Key-holder-pass-1', 'keyholder');
    await d.os('role', 'add', '--project', 'web', '--user', 'keyholder', 'member');
    b = await launchBrowser(d.netns, { trustCa: join(d.dataDir, 'pki', 'ca.crt') });
    page = b.page;
    origin = d.url.replace('127.0.0.1', 'localhost');
    await addVirtualAuthenticator(page);
  }, 120_000);
  afterAll(async () => {
    await b?.close();
    await stopDaemon(d);
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
