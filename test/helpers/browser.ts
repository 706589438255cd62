import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';

const require = createRequire(import.meta.url);
/** axe-core's browser bundle, evaluated in the page (CDP evaluation is not subject to the page's CSP). */
const AXE_SOURCE: string = (require('axe-core') as { source: string }).source;

export const CHROMIUM = '/usr/bin/chromium';

/** Debian's Chromium, headless, run inside a daemon's network namespace so it reaches its loopback. */
export interface TestBrowser {
  browser: Browser;
  context: BrowserContext;
  page: Page;
  /** Content-Security-Policy violations the pages reported (none is expected). */
  cspViolations: string[];
  close(): Promise<void>;
}

/**
 * `trustCa`: a CA certificate Chromium trusts through its own NSS database (in
 * a throwaway HOME), so pages are free of certificate errors: WebAuthn refuses
 * to run on a page with one, whatever `ignoreHTTPSErrors` says.
 */
export async function launchBrowser(netns: string, opts: { trustCa?: string } = {}): Promise<TestBrowser> {
  const dir = mkdtempSync(join(tmpdir(), 'bulwark-chromium-'));
  if (opts.trustCa) {
    const db = join(dir, '.pki', 'nssdb');
    mkdirSync(db, { recursive: true });
    execFileSync('certutil', ['-d', `sql:${db}`, '-N', '--empty-password']);
    execFileSync('certutil', [
      '-d',
      `sql:${db}`,
      '-A',
      '-n',
      'bulwark-test-ca',
      '-t',
      'C,,',
      '-i',
      opts.trustCa,
    ]);
  }
  // Playwright drives Chromium over a pipe, which survives nsenter's exec.
  const wrapper = join(dir, 'chromium-in-netns');
  writeFileSync(wrapper, `#!/bin/sh\nexec nsenter --net=/run/netns/${netns} -- ${CHROMIUM} "$@"\n`);
  chmodSync(wrapper, 0o755);
  // launch() gives Chromium a fresh throwaway profile (user data dir) of its own.
  const browser = await chromium.launch({
    executablePath: wrapper,
    headless: true,
    ...(opts.trustCa ? { env: { ...process.env, HOME: dir } } : {}),
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  // The daemon's certificate is signed by its own test CA.
  const context = await browser.newContext({
    ignoreHTTPSErrors: true,
    viewport: { width: 1280, height: 860 },
  });
  const page = await context.newPage();
  const cspViolations: string[] = [];
  page.on('console', (m) => {
    if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
  });
  return {
    browser,
    context,
    page,
    cspViolations,
    close: async () => {
      await browser.close().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: { target: unknown[] }[];
}

/** Runs axe-core (WCAG 2.x A/AA rules) on the page; returns the serious and critical violations. */
export async function seriousA11yViolations(page: Page): Promise<AxeViolation[]> {
  await page.evaluate(AXE_SOURCE);
  const violations = await page.evaluate(async () => {
    const axe = (
      globalThis as unknown as { axe: { run(o: unknown): Promise<{ violations: AxeViolation[] }> } }
    ).axe;
    const r = await axe.run({
      runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] },
    });
    return r.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.map((n) => ({ target: n.target })),
    }));
  });
  return violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

/** Chromium's virtual security key (CDP WebAuthn domain) for `page`: user-verifying, always present. */
export async function addVirtualAuthenticator(page: Page): Promise<void> {
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
}

/** The openstack/bulwark CLIs' environment for a Keystone token, e.g. a dashboard session's. */
export const tokenCliEnv = (d: { url: string; dataDir: string }, token: string): NodeJS.ProcessEnv => ({
  OS_CLOUD: '',
  OS_CLIENT_CONFIG_FILE: join(d.dataDir, 'no-clouds.yaml'),
  OS_AUTH_URL: `${d.url}/identity/v3`,
  OS_CACERT: join(d.dataDir, 'pki', 'ca.crt'),
  OS_IDENTITY_API_VERSION: '3',
  OS_AUTH_TYPE: 'v3token',
  OS_TOKEN: token,
  OS_PROJECT_NAME: 'admin',
  OS_PROJECT_DOMAIN_NAME: 'Default',
});
