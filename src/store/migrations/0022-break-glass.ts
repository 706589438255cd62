import type { Kysely } from 'kysely';

/**
 * Break-glass (issue 8, guide section 16): emergency admin accounts whose
 * credential is generated once and sealed offline (only its argon2 hash is
 * kept), and the review items every use leaves open until an admin closes
 * them with a post-incident note.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('break_glass_accounts')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('user_id', 'text', (c) => c.notNull().unique().references('users.id').onDelete('cascade'))
    .addColumn('secret_hash', 'text', (c) => c.notNull())
    .addColumn('created_by', 'text')
    .addColumn('created_at', 'text', (c) => c.notNull())
    .execute();
  await db.schema
    .createTable('break_glass_reviews')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('account_id', 'text', (c) => c.notNull())
    .addColumn('user_name', 'text', (c) => c.notNull())
    .addColumn('reason', 'text', (c) => c.notNull())
    .addColumn('source_ip', 'text')
    .addColumn('token_audit_id', 'text', (c) => c.notNull())
    .addColumn('opened_at', 'text', (c) => c.notNull())
    .addColumn('expires_at', 'text', (c) => c.notNull())
    .addColumn('closed_at', 'text')
    .addColumn('closed_by', 'text')
    .addColumn('note', 'text')
    .execute();
  await db.schema
    .createIndex('break_glass_reviews_open')
    .on('break_glass_reviews')
    .column('closed_at')
    .execute();
}
