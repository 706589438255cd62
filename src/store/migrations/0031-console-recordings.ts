import type { Kysely } from 'kysely';

/**
 * Console recordings (issue 9): who opened which server's console when, and
 * where the encrypted asciicast is. The recording's data key is a key
 * manager secret of the admin project (`key_id`); deleting it shreds the file.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('console_recordings')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('server_id', 'text', (c) => c.notNull())
    .addColumn('server_name', 'text', (c) => c.notNull())
    .addColumn('project_id', 'text', (c) => c.notNull())
    .addColumn('user_id', 'text', (c) => c.notNull())
    .addColumn('user_name', 'text', (c) => c.notNull())
    .addColumn('started_at', 'text', (c) => c.notNull())
    .addColumn('ended_at', 'text')
    .addColumn('width', 'integer', (c) => c.notNull())
    .addColumn('height', 'integer', (c) => c.notNull())
    .addColumn('bytes_in', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('bytes_out', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('key_id', 'text', (c) => c.notNull())
    .addColumn('file', 'text', (c) => c.notNull())
    /** 1 when the daemon stopped mid-session: the file has no closing record. */
    .addColumn('interrupted', 'integer', (c) => c.notNull().defaultTo(0))
    .execute();
  await db.schema
    .createIndex('console_recordings_ended')
    .on('console_recordings')
    .column('ended_at')
    .execute();
  await db.schema
    .createIndex('console_recordings_server')
    .on('console_recordings')
    .column('server_id')
    .execute();
}
