import { readFileSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { Agent, fetch } from 'undici';
import WebSocket from 'ws';
import type { CloudConfig } from './cloud-config.js';

interface CatalogEntry {
  type: string;
  endpoints: { interface: string; url: string }[];
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** Pulls the human message out of any OpenStack-style error body. */
function errorMessage(status: number, body: unknown): string {
  if (body && typeof body === 'object') {
    // Barbican's style: {code, title, description}.
    if ('description' in body && typeof body.description === 'string') return body.description;
    for (const v of Object.values(body)) {
      if (v && typeof v === 'object' && 'message' in v && typeof v.message === 'string') return v.message;
    }
  }
  return `HTTP ${status}`;
}

/** An error body as JSON when it is JSON (a proxy's HTML error page is not). */
function jsonOrUndefined(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** A small client for the Bulwark API: authenticates once and routes by service type. */
export class BulwarkClient {
  private token: string | undefined;
  private catalog: CatalogEntry[] = [];
  tokenInfo: Record<string, unknown> = {};
  private readonly dispatcher: Agent;
  private readonly ca: string | undefined;

  constructor(private readonly cloud: CloudConfig) {
    this.ca = cloud.cacert ? readFileSync(cloud.cacert, 'utf8') : undefined;
    this.dispatcher = new Agent({ connect: this.ca ? { ca: this.ca } : {} });
  }

  async authenticate(): Promise<void> {
    const user = { name: this.cloud.username, domain: { name: this.cloud.userDomainName } };
    const { token: existing, passcode } = this.cloud;
    const identity =
      existing !== undefined
        ? { methods: ['token'], token: { id: existing } }
        : {
            methods: passcode === undefined ? ['password'] : ['password', 'totp'],
            password: { user: { ...user, password: this.cloud.password } },
            ...(passcode === undefined ? {} : { totp: { user: { ...user, passcode } } }),
          };
    const body = {
      auth: {
        identity,
        ...(this.cloud.projectName
          ? {
              scope: {
                project: { name: this.cloud.projectName, domain: { name: this.cloud.projectDomainName } },
              },
            }
          : {}),
      },
    };
    const res = await fetch(`${this.cloud.authUrl}/auth/tokens`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      dispatcher: this.dispatcher,
    });
    const json: unknown = await res.json().catch(() => ({}));
    if (res.status !== 201)
      throw new ApiError(res.status, `Authentication failed: ${errorMessage(res.status, json)}`);
    this.token = res.headers.get('x-subject-token') ?? undefined;
    const token = (json as { token?: Record<string, unknown> }).token ?? {};
    this.tokenInfo = token;
    this.catalog = Array.isArray(token.catalog) ? (token.catalog as CatalogEntry[]) : [];
  }

  endpoint(type: string): string {
    const svc = this.catalog.find((s) => s.type === type);
    const url = svc?.endpoints.find((e) => e.interface === 'public')?.url;
    if (!url) throw new Error(`The service catalog has no ${type} endpoint; is the token project-scoped?`);
    return url;
  }

  /**
   * Opens a WebSocket to a service path, the token in the X-Auth-Token header
   * (never in the URL). Rejects with the API's refusal when the upgrade is refused.
   */
  async websocket(service: string, path: string): Promise<WebSocket> {
    if (!this.token) await this.authenticate();
    const url = `${this.endpoint(service)}${path}`.replace(/^http/, 'ws');
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, {
        headers: { 'x-auth-token': this.token ?? '' },
        ...(this.ca ? { ca: this.ca } : {}),
      });
      ws.once('open', () => resolve(ws));
      ws.once('unexpected-response', (_req, res) => {
        let text = '';
        res.on('data', (c: Buffer) => {
          text += c.toString('utf8');
        });
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          reject(new ApiError(status, errorMessage(status, jsonOrUndefined(text))));
        });
      });
      ws.once('error', reject);
    });
  }

  /** A request whose answer is text (e.g. an asciicast), not JSON. */
  async text(service: string, path: string): Promise<string> {
    if (!this.token) await this.authenticate();
    const res = await fetch(`${this.endpoint(service)}${path}`, {
      headers: { 'x-auth-token': this.token ?? '' },
      dispatcher: this.dispatcher,
    });
    const text = await res.text();
    if (res.status >= 400) throw new ApiError(res.status, errorMessage(res.status, jsonOrUndefined(text)));
    return text;
  }

  async request<T = unknown>(
    service: string,
    method: string,
    path: string,
    body?: unknown,
    opts: { contentType?: string; stream?: Readable; length?: number } = {},
  ): Promise<T> {
    if (!this.token) await this.authenticate();
    const contentType =
      opts.contentType ?? (body === undefined && !opts.stream ? undefined : 'application/json');
    const res = await fetch(`${this.endpoint(service)}${path}`, {
      method,
      headers: {
        'x-auth-token': this.token ?? '',
        ...(contentType ? { 'content-type': contentType } : {}),
        ...(opts.length !== undefined ? { 'content-length': String(opts.length) } : {}),
      },
      ...(opts.stream
        ? { body: opts.stream, duplex: 'half' as const }
        : body === undefined
          ? {}
          : { body: JSON.stringify(body) }),
      dispatcher: this.dispatcher,
    });
    const text = await res.text();
    const json: unknown = text ? JSON.parse(text) : undefined;
    if (res.status >= 400) throw new ApiError(res.status, errorMessage(res.status, json));
    return json as T;
  }

  /**
   * Every page of a Nova-style list: follows the `<key>_links` next link
   * until a page has none (docs/compute.md, paging).
   */
  async listAll<T>(service: string, path: string, key: string): Promise<T[]> {
    const out: T[] = [];
    for (let next: string | undefined = path; next !== undefined; ) {
      const page: Record<string, unknown> = await this.request(service, 'GET', next);
      const base = this.endpoint(service);
      out.push(...((page[key] as T[] | undefined) ?? []));
      const links = (page[`${key}_links`] as { rel?: string; href?: string }[] | undefined) ?? [];
      const href = links.find((l) => l.rel === 'next')?.href;
      if (href !== undefined && !href.startsWith(`${base}/`))
        throw new Error(`The ${key} list links outside ${base}: ${href}`);
      next = href?.slice(base.length);
    }
    return out;
  }

  /**
   * A call that needs no token (opening a break-glass session), to the Bulwark
   * extension on the same origin as the auth URL.
   */
  async publicPost<T = unknown>(path: string, body: unknown): Promise<{ json: T; token: string | null }> {
    const res = await fetch(`${new URL(this.cloud.authUrl).origin}/bulwark/v1${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      dispatcher: this.dispatcher,
    });
    const json: unknown = await res.json().catch(() => ({}));
    if (res.status >= 400) throw new ApiError(res.status, errorMessage(res.status, json));
    return { json: json as T, token: res.headers.get('x-subject-token') };
  }

  async close(): Promise<void> {
    await this.dispatcher.close();
  }
}
