/**
 * Calls the daemon's OpenStack APIs with the session cookie. The token itself
 * is HttpOnly and never seen here; every request carries the CSRF token from
 * its readable cookie, without which the API ignores the session.
 */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly body: unknown,
    readonly headers: Headers,
  ) {
    super(message);
  }
}

const CSRF_COOKIE = '__Host-bulwark-csrf';
/** Fired when the API answers 401 to a session request. */
export const SESSION_ENDED = 'bulwark:session-ended';

export function csrfToken(): string {
  for (const part of document.cookie.split(';')) {
    const [k, v] = part.trim().split('=');
    if (k === CSRF_COOKIE && v) return v;
  }
  return '';
}

/** The API's own reason, whatever service style the error body has. */
export function reasonOf(body: unknown, fallback: string): string {
  if (body && typeof body === 'object') {
    const b = body as Record<string, unknown>;
    for (const v of [b.error, b.NeutronError, ...Object.values(b)]) {
      if (v && typeof v === 'object' && typeof (v as { message?: unknown }).message === 'string')
        return (v as { message: string }).message;
    }
    if (typeof b.description === 'string') return b.description;
  }
  return fallback;
}

// biome-ignore lint/suspicious/noExplicitAny: JSON from the API; callers that need more name its type
type Json = any;

export async function api<T = Json>(
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<T> {
  const res = await fetch(path, {
    method,
    credentials: 'same-origin',
    headers: {
      'x-csrf-token': csrfToken(),
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      ...headers,
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  let json: unknown = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  // The session ended (expired or revoked) while the page was open: the app goes back to the login.
  if (res.status === 401 && path !== '/dashboard/session') window.dispatchEvent(new Event(SESSION_ENDED));
  if (!res.ok)
    throw new ApiError(res.status, reasonOf(json, `${res.status} ${res.statusText}`), json, res.headers);
  return json as T;
}

export const get = <T = Json>(path: string) => api<T>('GET', path);
export const post = <T = Json>(path: string, body?: unknown) => api<T>('POST', path, body ?? {});
export const put = <T = Json>(path: string, body?: unknown) => api<T>('PUT', path, body ?? {});
export const del = (path: string) => api('DELETE', path);

export interface Session {
  user: { id: string; name: string };
  project: { id: string; name: string } | null;
  roles: string[];
  is_admin: boolean;
  methods: string[];
  /** An admin without a second factor while admins must use one: only enrollment works. */
  mfa_pending: boolean;
  issued_at: string;
  expires_at: string;
}
