import { type Kysely, sql } from 'kysely';

/**
 * VM metadata and change tracking (issue 7, guide 14). `metadata_rules`: when
 * a server's metadata has `when_key=when_value`, the keys in `requires` (JSON
 * array) must be set too; seeded with the default rule, production servers
 * need a ticket. `server_changes`: one row per change to a server (who, when,
 * what, the JSON diff), written in the transaction that makes the change.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('metadata_rules')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('when_key', 'text', (c) => c.notNull())
    .addColumn('when_value', 'text', (c) => c.notNull())
    .addColumn('requires', 'text', (c) => c.notNull())
    .addColumn('created_by', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .execute();
  await sql`insert into metadata_rules (id, when_key, when_value, requires, created_by, created_at)
    values ('production-needs-ticket', 'environment', 'production', '["ticket"]', 'bulwark', ${new Date().toISOString()})`.execute(
    db,
  );
  await db.schema
    .createTable('server_changes')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('server_id', 'text', (c) => c.notNull())
    .addColumn('project_id', 'text', (c) => c.notNull())
    .addColumn('at', 'text', (c) => c.notNull())
    .addColumn('user_id', 'text')
    .addColumn('user_name', 'text')
    .addColumn('change', 'text', (c) => c.notNull())
    .addColumn('diff', 'text', (c) => c.notNull())
    .execute();
  await db.schema
    .createIndex('server_changes_by_server')
    .on('server_changes')
    .columns(['server_id', 'at'])
    .execute();
}
