import { readFileSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { Agent, fetch } from 'undici';
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

/** A small client for the Bulwark API: authenticates once and routes by service type. */
export class BulwarkClient {
  private token: string | undefined;
  private catalog: CatalogEntry[] = [];
  tokenInfo: Record<string, unknown> = {};
  private readonly dispatcher: Agent;

  constructor(private readonly cloud: CloudConfig) {
    this.dispatcher = new Agent({ connect: cloud.cacert ? { ca: readFileSync(cloud.cacert, 'utf8') } : {} });
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

  async close(): Promise<void> {
    await this.dispatcher.close();
  }
}
