import type { Kysely } from 'kysely';

/**
 * The key manager (issue 5): Barbican-style secrets under envelope
 * encryption. A row holds only ciphertext: the payload sealed with the
 * secret's own data key (AES-256-GCM, AAD = secret id + project id), and that
 * data key wrapped by the KEK (AES-256-GCM, AAD = secret id + KEK id +
 * version), with the KEK id and version that wrapped it. Binary fields are
 * base64 text so both dialects store them the same way.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('secrets')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('project_id', 'text', (c) => c.notNull())
    .addColumn('creator_id', 'text')
    .addColumn('name', 'text')
    .addColumn('secret_type', 'text', (c) => c.notNull())
    .addColumn('algorithm', 'text')
    .addColumn('bit_length', 'integer')
    .addColumn('mode', 'text')
    .addColumn('content_type', 'text', (c) => c.notNull())
    .addColumn('expiration', 'text')
    .addColumn('payload_iv', 'text', (c) => c.notNull())
    .addColumn('payload_ct', 'text', (c) => c.notNull())
    .addColumn('payload_tag', 'text', (c) => c.notNull())
    .addColumn('dek_iv', 'text', (c) => c.notNull())
    .addColumn('dek_wrapped', 'text', (c) => c.notNull())
    .addColumn('dek_tag', 'text', (c) => c.notNull())
    .addColumn('kek_id', 'text', (c) => c.notNull())
    .addColumn('kek_version', 'integer', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .execute();
  await db.schema
    .createIndex('secrets_project')
    .on('secrets')
    .columns(['project_id', 'created_at'])
    .execute();
  await db.schema.createIndex('secrets_kek').on('secrets').columns(['kek_id', 'kek_version']).execute();
}
