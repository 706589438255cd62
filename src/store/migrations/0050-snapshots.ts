import type { Kysely } from 'kysely';

/**
 * Snapshots (issue 6, docs/snapshots.md): internal qcow2 snapshots of a
 * volume or of a server's root overlay (optionally with its memory), each
 * with a required description, and lifecycle policies (maximum count and
 * maximum age) per project and per server or volume.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('snapshots')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('resource_id', 'text', (c) => c.notNull())
    .addColumn('project_id', 'text', (c) => c.notNull())
    .addColumn('user_id', 'text', (c) => c.notNull())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('purpose', 'text', (c) => c.notNull())
    .addColumn('description', 'text', (c) => c.notNull())
    .addColumn('tag', 'text', (c) => c.notNull())
    .addColumn('memory', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('size', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('fault', 'text')
    .addColumn('metadata', 'text', (c) => c.notNull().defaultTo('{}'))
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .addColumn('deleted_at', 'text')
    .execute();
  await db.schema
    .createIndex('snapshots_resource')
    .on('snapshots')
    .columns(['kind', 'resource_id', 'deleted_at'])
    .execute();
  await db.schema.createIndex('snapshots_project').on('snapshots').columns(['project_id']).execute();
  await db.schema
    .createTable('snapshot_policies')
    .addColumn('scope', 'text', (c) => c.notNull())
    .addColumn('target_id', 'text', (c) => c.notNull())
    .addColumn('project_id', 'text', (c) => c.notNull())
    .addColumn('max_count', 'integer')
    .addColumn('max_age_days', 'integer')
    .addColumn('prune_oldest', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('updated_by', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('snapshot_policies_pk', ['scope', 'target_id'])
    .execute();
}
