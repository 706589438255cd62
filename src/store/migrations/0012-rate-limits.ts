import type { Kysely } from 'kysely';

/**
 * Rate limits (issue 7): events counted against a persistent limit, e.g. one
 * row per server created, keyed by bucket ("server-create") and subject (the
 * user id). Kept in the store so a daemon restart does not reset the window;
 * rows older than the window are pruned as new ones are written.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('rate_limit_events')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('bucket', 'text', (c) => c.notNull())
    .addColumn('subject', 'text', (c) => c.notNull())
    .addColumn('at', 'text', (c) => c.notNull())
    .execute();
  await db.schema
    .createIndex('rate_limit_events_window')
    .on('rate_limit_events')
    .columns(['bucket', 'subject', 'at'])
    .execute();
}
