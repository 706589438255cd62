import type { FastifyRequest } from 'fastify';
import { tooManyRequests } from '../governance/rate-limits.js';

/** API request limits per minute (`--api-rate`, `--api-address-rate`; docs/rate-limits.md). */
export interface ApiRateLimits {
  /** Requests per minute per valid token (keyed by the token's hash); 0: no limit. */
  perToken: number;
  /** Requests per minute per source address (IPv6 per /64); 0: no limit. */
  perAddress: number;
}

export type Take = { ok: true } | { ok: false; retryAfterSeconds: number; first: boolean };

interface Bucket {
  tokens: number;
  at: number;
  /** Refused since it last admitted a request: later refusals are not audited again. */
  refused: boolean;
}

/** Most keys kept per limiter; past it the oldest are dropped (they restart full, never emptier). */
const MAX_KEYS = 100_000;

/**
 * An in-memory token bucket per key: `perMinute` requests in a burst, refilled
 * evenly over a minute. Full buckets are swept once a minute, so memory follows
 * the callers active in the last minute.
 */
export class TokenBuckets {
  private readonly buckets = new Map<string, Bucket>();
  private readonly ratePerMs: number;
  private lastSweep: number;

  constructor(
    readonly perMinute: number,
    private readonly now: () => number = Date.now,
  ) {
    this.ratePerMs = perMinute / 60_000;
    this.lastSweep = now();
  }

  take(key: string): Take {
    const now = this.now();
    if (now - this.lastSweep > 60_000 || this.buckets.size > MAX_KEYS) this.sweep(now);
    let b = this.buckets.get(key);
    if (!b) {
      b = { tokens: this.perMinute, at: now, refused: false };
      this.buckets.set(key, b);
    } else {
      b.tokens = Math.min(this.perMinute, b.tokens + (now - b.at) * this.ratePerMs);
      b.at = now;
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      b.refused = false;
      return { ok: true };
    }
    const first = !b.refused;
    b.refused = true;
    return { ok: false, retryAfterSeconds: (1 - b.tokens) / this.ratePerMs / 1000, first };
  }

  private sweep(now: number): void {
    this.lastSweep = now;
    for (const [k, b] of this.buckets) {
      if (b.tokens + (now - b.at) * this.ratePerMs >= this.perMinute) this.buckets.delete(k);
    }
    // Still too many: drop the oldest keys (Map order is insertion order).
    for (const k of this.buckets.keys()) {
      if (this.buckets.size <= MAX_KEYS) break;
      this.buckets.delete(k);
    }
  }
}

/** The key a source address is counted under: IPv4 as is, IPv6 by its /64 (one host's usual share). */
export function addressKey(ip: string): string {
  const addr = ip.replace(/%.*$/, '');
  if (!addr.includes(':')) return addr;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(addr);
  if (mapped?.[1]) return mapped[1];
  const [head = '', tail] = addr.split('::');
  const groups = (s: string) => (s ? s.split(':').flatMap((g) => (g.includes('.') ? ['0', '0'] : [g])) : []);
  const h = groups(head);
  const t = tail === undefined ? [] : groups(tail);
  const all =
    tail === undefined ? h : [...h, ...Array<string>(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t];
  return `${all
    .slice(0, 4)
    .map((g) => Number.parseInt(g, 16).toString(16))
    .join(':')}::/64`;
}

/** Refusals after the first in a run, per key: answered 429 but not audited again (docs/rate-limits.md). */
const quiet = new WeakSet<FastifyRequest>();
export const isQuietRefusal = (req: FastifyRequest): boolean => quiet.has(req);

/** Checks a request against the per-address and per-token limits; throws 429 with Retry-After. */
export class ApiRateLimiter {
  private readonly byAddress: TokenBuckets | null;
  private readonly byToken: TokenBuckets | null;

  constructor(limits: ApiRateLimits, now?: () => number) {
    this.byAddress = limits.perAddress > 0 ? new TokenBuckets(limits.perAddress, now) : null;
    this.byToken = limits.perToken > 0 ? new TokenBuckets(limits.perToken, now) : null;
  }

  /** Call after authentication: a valid token is counted by its hash, an invalid one only by address. */
  check(req: FastifyRequest): void {
    const checks: [TokenBuckets | null, string | undefined, string][] = [
      [this.byAddress, addressKey(req.ip), 'per source address'],
      [this.byToken, req.auth?.tokenHash || undefined, 'per token'],
    ];
    for (const [buckets, key, per] of checks) {
      if (!buckets || !key) continue;
      const r = buckets.take(key);
      if (r.ok) continue;
      if (!r.first) quiet.add(req);
      throw tooManyRequests(
        `API rate limit exceeded: at most ${buckets.perMinute} requests per minute ${per}.`,
        r.retryAfterSeconds,
      );
    }
  }
}
