import type { Kysely } from 'kysely';

/**
 * Approvals, the two-person rule (issue 7): a request a trigger holds back is
 * stored here as pending (who asked, in which project, what to run as JSON),
 * and decided once by another admin. `status` moves pending -> approved ->
 * executed | failed, or pending -> rejected, each step by check-and-set on
 * the status so two deciders cannot both win. `approval_triggers` holds the
 * triggers an admin has changed from their defaults (governance/approvals.ts).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('approvals')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('project_id', 'text', (c) => c.notNull())
    .addColumn('requester_id', 'text', (c) => c.notNull())
    .addColumn('requester_name', 'text', (c) => c.notNull())
    .addColumn('summary', 'text', (c) => c.notNull())
    .addColumn('payload', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('decided_by', 'text')
    .addColumn('decided_by_name', 'text')
    .addColumn('decided_at', 'text')
    .addColumn('decision_reason', 'text')
    .addColumn('result', 'text')
    .addColumn('error', 'text')
    .addColumn('finished_at', 'text')
    .execute();
  await db.schema
    .createIndex('approvals_by_project')
    .on('approvals')
    .columns(['project_id', 'status'])
    .execute();
  await db.schema
    .createTable('approval_triggers')
    .addColumn('kind', 'text', (c) => c.primaryKey())
    .addColumn('enabled', 'integer', (c) => c.notNull())
    .addColumn('params', 'text', (c) => c.notNull())
    .addColumn('updated_by', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .execute();
}
