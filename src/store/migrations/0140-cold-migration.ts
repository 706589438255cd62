import type { Kysely } from 'kysely';

/**
 * Cold migration and host evacuation (issue 10, docs/multi-host.md).
 * `migrations.old_vm_state`: what a cold-migrated server was (active or
 * stopped) before it moved, so a revert brings it back as it was.
 * `host_evacuations`: one row per `bulwark host evacuate`, its progress and
 * each server's result.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('migrations').addColumn('old_vm_state', 'text').execute();
  await db.schema
    .createTable('host_evacuations')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('host', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('total', 'integer', (c) => c.notNull())
    .addColumn('done', 'integer', (c) => c.notNull())
    .addColumn('results', 'text', (c) => c.notNull())
    .addColumn('requested_by', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .execute();
}
