import type { Kysely } from 'kysely';

/**
 * SIEM forwarding (issue 9): one cursor per destination on the audit
 * sequence. The audit table is the queue: rows after the cursor are still to
 * be delivered, so delivery survives restarts and SIEM outages in order,
 * with no second copy of the events.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('siem_cursors')
    .addColumn('destination', 'text', (c) => c.primaryKey())
    .addColumn('seq', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .execute();
}
