import { type Kysely, sql } from 'kysely';
import { BulwarkError } from '../errors.js';
import type { Store } from '../store/database.js';
import type { Schema } from '../store/schema.js';
import { uuid } from '../util/ids.js';

/** Advisory-lock class for persistent rate limits on PostgreSQL (the second key is the subject's hash). */
const PG_LOCK_CLASS = 0x62_77_72_6c; // "bwrl"

/** The answer to a caller over a limit: 429, `Retry-After` in whole seconds, never less than 1. */
export function tooManyRequests(what: string, retryAfterSeconds: number): BulwarkError {
  const s = Math.max(1, Math.ceil(retryAfterSeconds));
  return new BulwarkError('TooManyRequests', `${what} Retry after ${s} seconds.`, {
    headers: { 'retry-after': String(s) },
    details: { retryAfter: String(s) },
  });
}

export interface PersistentLimitOptions {
  /** Which limit, stored with each event, e.g. "server-create". */
  bucket: string;
  /** Most events per subject in any window. */
  limit: number;
  windowSeconds: number;
  /** Says what was refused, e.g. "at most 20 servers per user per hour". */
  describe: string;
  /** For tests. */
  now?: () => number;
}

/**
 * A sliding-window limit counted from events in the store, so it survives a
 * daemon restart. The check, the new event and the caller's own write run in
 * one transaction; on PostgreSQL a transaction-scoped advisory lock on the
 * subject serialises concurrent callers (also across daemons), and SQLite
 * has a single writer, so two requests can never both take the last slot.
 */
export class PersistentRateLimit {
  private readonly now: () => number;

  constructor(
    private readonly store: Store,
    readonly opts: PersistentLimitOptions,
  ) {
    if (!Number.isInteger(opts.limit) || opts.limit < 1)
      throw new Error('rate limit must be a positive integer');
    this.now = opts.now ?? Date.now;
  }

  /** Counts one event for `subject` and runs `work` in the same transaction; 429 if over the limit. */
  async within<T>(subject: string, work: (db: Kysely<Schema>) => Promise<T>): Promise<T> {
    const { bucket, limit, windowSeconds } = this.opts;
    return this.store.db.transaction().execute(async (trx) => {
      if (this.store.dialect === 'postgres') {
        await sql`select pg_advisory_xact_lock(${PG_LOCK_CLASS}::int, hashtext(${`${bucket}:${subject}`}))`.execute(
          trx,
        );
      }
      const now = this.now();
      const windowMs = windowSeconds * 1000;
      const since = new Date(now - windowMs).toISOString();
      await trx
        .deleteFrom('rate_limit_events')
        .where('bucket', '=', bucket)
        .where('subject', '=', subject)
        .where('at', '<=', since)
        .execute();
      const recent = await trx
        .selectFrom('rate_limit_events')
        .select('at')
        .where('bucket', '=', bucket)
        .where('subject', '=', subject)
        .where('at', '>', since)
        .orderBy('at', 'asc')
        .execute();
      if (recent.length >= limit) {
        // A slot frees when the event that puts the subject at the limit leaves the window.
        const freeing = recent[recent.length - limit]?.at ?? since;
        throw tooManyRequests(
          `Rate limit exceeded: ${this.opts.describe}.`,
          (Date.parse(freeing) + windowMs - now) / 1000,
        );
      }
      await trx
        .insertInto('rate_limit_events')
        .values({ id: uuid(), bucket, subject, at: new Date(now).toISOString() })
        .execute();
      return work(trx);
    });
  }
}

/** Server creations per user in a sliding hour (`--server-create-rate`). */
export function serverCreateLimit(store: Store, perHour: number, now?: () => number): PersistentRateLimit {
  return new PersistentRateLimit(store, {
    bucket: 'server-create',
    limit: perHour,
    windowSeconds: 3600,
    describe: `at most ${perHour} server creations per user per hour`,
    ...(now ? { now } : {}),
  });
}
