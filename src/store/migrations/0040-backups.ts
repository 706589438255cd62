import type { Kysely } from 'kysely';

/**
 * Backups (issue 6, docs/backups.md): the one repository (where it is, the
 * recovery public key, the key-manager id of the chunk-id key) and the
 * catalog of backups. `seal_sha256` vouches for the backup's chunk list in
 * the repository, so the store cannot swap or drop chunks unnoticed.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('backup_repositories')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('target', 'text', (c) => c.notNull())
    .addColumn('recipient_public_key', 'text', (c) => c.notNull())
    .addColumn('id_key_secret_id', 'text', (c) => c.notNull())
    .addColumn('id_key_project_id', 'text', (c) => c.notNull())
    .addColumn('created_by', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .execute();
  await db.schema
    .createTable('backups')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('project_id', 'text', (c) => c.notNull())
    .addColumn('user_id', 'text', (c) => c.notNull())
    .addColumn('name', 'text')
    .addColumn('description', 'text')
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('source_id', 'text', (c) => c.notNull())
    .addColumn('source_type_id', 'text')
    .addColumn('size', 'integer', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('fault', 'text')
    .addColumn('is_incremental', 'integer', (c) => c.notNull())
    .addColumn('parent_id', 'text')
    .addColumn('seal_sha256', 'text')
    .addColumn('object_count', 'integer', (c) => c.notNull())
    .addColumn('read_bytes', 'integer', (c) => c.notNull())
    .addColumn('stored_bytes', 'integer', (c) => c.notNull())
    .addColumn('duration_ms', 'integer', (c) => c.notNull())
    .addColumn('data_timestamp', 'text')
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .addColumn('deleted_at', 'text')
    .execute();
  await db.schema.createIndex('backups_source').on('backups').columns(['source_id', 'created_at']).execute();
  await db.schema.createIndex('backups_project').on('backups').columns(['project_id']).execute();
}
