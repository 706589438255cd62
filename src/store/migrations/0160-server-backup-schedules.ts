import type { Kysely } from 'kysely';

/**
 * Schedules for whole-server backups too (issue 6, docs/backups.md): a
 * schedule now names its `kind` (`volume` or `server`, as a backup does) and
 * its `source_id`, which was `volume_id` while only volumes had schedules.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('backup_schedules').renameColumn('volume_id', 'source_id').execute();
  await db.schema
    .alterTable('backup_schedules')
    .addColumn('kind', 'text', (c) => c.notNull().defaultTo('volume'))
    .execute();
}
