import type { Kysely } from 'kysely';

/**
 * Scheduled backups (issue 6, docs/backups.md): a volume backed up every
 * `interval_minutes` by the backup identity, pruned to its retention policy.
 * `backups.schedule_id` marks the backups a schedule made (only those are pruned).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('backup_schedules')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('project_id', 'text', (c) => c.notNull())
    .addColumn('volume_id', 'text', (c) => c.notNull())
    .addColumn('name', 'text')
    .addColumn('interval_minutes', 'integer', (c) => c.notNull())
    .addColumn('keep_last', 'integer', (c) => c.notNull())
    .addColumn('keep_daily', 'integer', (c) => c.notNull())
    .addColumn('keep_weekly', 'integer', (c) => c.notNull())
    .addColumn('keep_monthly', 'integer', (c) => c.notNull())
    .addColumn('next_run_at', 'text', (c) => c.notNull())
    .addColumn('last_run_at', 'text')
    .addColumn('last_error', 'text')
    .addColumn('created_by', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .execute();
  await db.schema.alterTable('backups').addColumn('schedule_id', 'text').execute();
}
