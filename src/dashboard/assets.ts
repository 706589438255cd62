import { readFile } from 'node:fs/promises';
import { extname, join, resolve } from 'node:path';

/** Where `npm run build:web` puts the built dashboard (web/dist), from src/ or dist/ alike. */
export const DEFAULT_WEB_DIR = resolve(import.meta.dirname, '..', '..', 'web', 'dist');

/**
 * The dashboard's Content-Security-Policy: only this origin's files run or
 * style the page (no inline script or style, no eval), nothing may frame it,
 * and it talks to nothing but this origin.
 */
export const DASHBOARD_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

/** Headers on every dashboard response. */
export const DASHBOARD_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': DASHBOARD_CSP,
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  'strict-transport-security': 'max-age=31536000',
};

const TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
};

export interface Asset {
  body: Buffer;
  type: string;
  /** Hashed build files never change; the page itself is never cached (it names the current ones). */
  cache: string;
}

/**
 * A file of the built dashboard for a path under /dashboard: a hashed file in
 * assets/, else the single page (the client routes). Names are matched, never
 * joined raw, so no path leaves the build directory. Null when not built.
 */
export async function dashboardAsset(webDir: string, path: string): Promise<Asset | null> {
  // A stale page asking for a file of an old build gets 404, not the page.
  const asset = path.startsWith('assets/');
  const name = /^assets\/([A-Za-z0-9_-][A-Za-z0-9_.-]*)$/.exec(path)?.[1];
  if (asset && (!name || !TYPES[extname(name)])) return null;
  const file = name ? join(webDir, 'assets', name) : join(webDir, 'index.html');
  const body = await readFile(file).catch(() => null);
  if (body === null) return null;
  return {
    body,
    type: TYPES[extname(file)] ?? 'application/octet-stream',
    cache: name ? 'public, max-age=31536000, immutable' : 'no-store',
  };
}
