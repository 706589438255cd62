import type { Kysely } from 'kysely';

/**
 * Server migrations between hosts (issue 10, docs/multi-host.md): one row per
 * live migration, Nova's `os-migrations` and `server-migrations` views, with
 * its progress (bytes of RAM and disk moved) while it runs.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('migrations')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('server_id', 'text', (c) => c.notNull())
    .addColumn('project_id', 'text', (c) => c.notNull())
    .addColumn('migration_type', 'text', (c) => c.notNull())
    .addColumn('source_host', 'text', (c) => c.notNull())
    .addColumn('dest_host', 'text')
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('memory_total_bytes', 'bigint', (c) => c.notNull())
    .addColumn('memory_processed_bytes', 'bigint', (c) => c.notNull())
    .addColumn('memory_remaining_bytes', 'bigint', (c) => c.notNull())
    .addColumn('disk_total_bytes', 'bigint', (c) => c.notNull())
    .addColumn('disk_processed_bytes', 'bigint', (c) => c.notNull())
    .addColumn('error', 'text')
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('migrations_server').on('migrations').column('server_id').execute();
}
