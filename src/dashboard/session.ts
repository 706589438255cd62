import type { FastifyRequest } from 'fastify';
import { safeEqual, sha256Hex } from '../util/ids.js';

/**
 * The dashboard's browser session: the Keystone token lives in an HttpOnly
 * cookie script cannot read, and a second, readable cookie carries a CSRF
 * token derived from it that the page echoes in `X-CSRF-Token`. The API takes
 * the cookie only together with that header, on every method, so a request a
 * foreign page makes the browser send (which carries the cookie but cannot
 * read it or set the header) is unauthenticated. `__Host-` pins both cookies
 * to this origin, over HTTPS, for all paths (RFC 6265bis 4.1.3.2).
 */
export const SESSION_COOKIE = '__Host-bulwark-session';
export const CSRF_COOKIE = '__Host-bulwark-csrf';
export const CSRF_HEADER = 'x-csrf-token';

/** The CSRF token of a session: derived from the token, so it needs no storage and dies with it. */
export const csrfTokenFor = (token: string): string => sha256Hex(`bulwark-dashboard-csrf:${token}`);

/** Cookie header values by name (RFC 6265 5.2; the first of a repeated name wins). */
export function parseCookies(header: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    const name = part.slice(0, eq).trim();
    if (!out.has(name)) out.set(name, part.slice(eq + 1).trim());
  }
  return out;
}

/** The session cookie's token, only when the request also carries its CSRF token; else null. */
export function sessionToken(req: FastifyRequest): string | null {
  const token = parseCookies(req.headers.cookie).get(SESSION_COOKIE);
  const csrf = req.headers[CSRF_HEADER];
  if (!token || typeof csrf !== 'string' || csrf.length === 0) return null;
  return safeEqual(csrf, csrfTokenFor(token)) ? token : null;
}

/** Set-Cookie values that open a session lasting as long as its token. */
export function sessionCookies(token: string, expiresAt: string): string[] {
  const maxAge = Math.max(0, Math.floor((Date.parse(expiresAt) - Date.now()) / 1000));
  const attrs = `Path=/; Secure; SameSite=Strict; Max-Age=${maxAge}`;
  return [
    `${SESSION_COOKIE}=${token}; HttpOnly; ${attrs}`,
    `${CSRF_COOKIE}=${csrfTokenFor(token)}; ${attrs}`,
  ];
}

/** Set-Cookie values that end the session in the browser. */
export const clearedCookies = (): string[] => [
  `${SESSION_COOKIE}=; HttpOnly; Path=/; Secure; SameSite=Strict; Max-Age=0`,
  `${CSRF_COOKIE}=; Path=/; Secure; SameSite=Strict; Max-Age=0`,
];
