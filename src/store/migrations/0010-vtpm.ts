import type { Kysely } from 'kysely';

/**
 * vTPM (issue 5): a server with a vTPM records the key manager's id of the
 * key that encrypts its TPM state (swtpm `--key`); the key itself is never
 * stored here. Null: no vTPM.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('servers').addColumn('tpm_secret_id', 'text').execute();
}
