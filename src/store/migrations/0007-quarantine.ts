import type { Kysely } from 'kysely';

/**
 * Incident response (issue 4): a quarantined server carries its quarantine
 * record (JSON: reason, who, when, each step's outcome, the forensic
 * snapshot's files and hashes); null when it is not quarantined.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('servers').addColumn('quarantine', 'text').execute();
}
