import type { Kysely } from 'kysely';

/**
 * Whole-server backups (issue 6, docs/backups.md): a backup of kind `server`
 * keeps its server's definition (flavor, image, metadata, user data,
 * networks, security groups, the volumes it held), so a restore can make a
 * new server like it. The disks themselves are in the repository.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('backups').addColumn('definition', 'text').execute();
}
