import type { Kysely } from 'kysely';

/**
 * Compliance runs (issue 12; docs/compliance.md): each evaluation of the
 * control catalogue against the running platform, with every verdict and its
 * evidence, so posture has a history over time.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('compliance_runs')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('created_by', 'text', (c) => c.notNull())
    .addColumn('created_by_name', 'text', (c) => c.notNull())
    .addColumn('passed', 'integer', (c) => c.notNull())
    .addColumn('failed', 'integer', (c) => c.notNull())
    .addColumn('not_applicable', 'integer', (c) => c.notNull())
    .addColumn('results', 'text', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('compliance_runs_created').on('compliance_runs').column('created_at').execute();
}
