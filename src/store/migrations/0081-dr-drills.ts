import type { Kysely } from 'kysely';

/**
 * Disaster-recovery drills (issue 6, guide 19, docs/dr.md). `dr_policies`:
 * the servers that are protected, with their RPO/RTO targets and what their
 * console shows once booted. `dr_drills`: one row per server per drill, the
 * achieved RPO/RTO and the verdict (the compliance engine reads the last one).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('dr_policies')
    .addColumn('server_id', 'text', (c) => c.primaryKey())
    .addColumn('project_id', 'text', (c) => c.notNull())
    .addColumn('rpo_target_s', 'integer', (c) => c.notNull())
    .addColumn('rto_target_s', 'integer', (c) => c.notNull())
    .addColumn('boot_marker', 'text', (c) => c.notNull())
    .addColumn('set_by', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .execute();
  await db.schema
    .createTable('dr_drills')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('run_id', 'text', (c) => c.notNull())
    .addColumn('server_id', 'text', (c) => c.notNull())
    .addColumn('project_id', 'text', (c) => c.notNull())
    .addColumn('backup_id', 'text')
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('step', 'text')
    .addColumn('started_at', 'text', (c) => c.notNull())
    .addColumn('finished_at', 'text')
    .addColumn('rpo_s', 'integer')
    .addColumn('rto_s', 'integer')
    .addColumn('rpo_target_s', 'integer', (c) => c.notNull())
    .addColumn('rto_target_s', 'integer', (c) => c.notNull())
    .addColumn('verdict', 'text')
    .addColumn('reason', 'text')
    .addColumn('started_by', 'text', (c) => c.notNull())
    .execute();
  await db.schema
    .createIndex('dr_drills_server')
    .on('dr_drills')
    .columns(['server_id', 'started_at'])
    .execute();
  await db.schema.createIndex('dr_drills_run').on('dr_drills').columns(['run_id']).execute();
}
