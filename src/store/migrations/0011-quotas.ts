import type { Kysely } from 'kysely';

/**
 * Quotas (issue 7): per-project limits, optionally per user within a project
 * (user_id '' = the whole project); a resource with no row has the default.
 * `quota_projects` holds one row per project that has ever been checked: the
 * row enforcement locks (`SELECT ... FOR UPDATE` on PostgreSQL) so checks and
 * inserts for one project are serialised.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('quota_projects')
    .addColumn('project_id', 'text', (c) => c.primaryKey())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .execute();
  await db.schema
    .createTable('quota_limits')
    .addColumn('project_id', 'text', (c) => c.notNull())
    .addColumn('user_id', 'text', (c) => c.notNull())
    .addColumn('resource', 'text', (c) => c.notNull())
    .addColumn('hard_limit', 'integer', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('quota_limits_pk', ['project_id', 'user_id', 'resource'])
    .execute();
}
