import type { Kysely } from 'kysely';

/**
 * Identity hardening (issue 8): Keystone credentials (TOTP secrets live in the
 * key manager, sealed; the row holds only the secret's id and the last TOTP
 * step used, so a code is never accepted twice), auth receipts for a login
 * that still lacks a factor, lockout counters, last login and password age
 * for the access review, and password history.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('credentials')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('project_id', 'text')
    .addColumn('type', 'text', (c) => c.notNull())
    .addColumn('secret_id', 'text', (c) => c.notNull())
    .addColumn('totp_last_step', 'bigint')
    .addColumn('created_at', 'text', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('credentials_user').on('credentials').columns(['user_id', 'type']).execute();

  await db.schema
    .createTable('auth_receipts')
    .addColumn('id_hash', 'text', (c) => c.primaryKey())
    .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('methods', 'text', (c) => c.notNull())
    .addColumn('issued_at', 'text', (c) => c.notNull())
    .addColumn('expires_at', 'text', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('password_history')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('password_hash', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .execute();
  await db.schema
    .createIndex('password_history_user')
    .on('password_history')
    .columns(['user_id', 'created_at'])
    .execute();

  for (const [name, type] of [
    ['failed_auth_count', 'integer'],
    ['failed_auth_at', 'text'],
    ['last_login_at', 'text'],
    ['password_changed_at', 'text'],
  ] as const) {
    await db.schema
      .alterTable('users')
      .addColumn(name, type, (c) => (name === 'failed_auth_count' ? c.notNull().defaultTo(0) : c))
      .execute();
  }
}
