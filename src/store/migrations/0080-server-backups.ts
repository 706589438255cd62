import type { Kysely } from 'kysely';
import type { Dialect } from '../database.js';

/**
 * Whole-server backups (issue 6, docs/backups.md): a backup of kind `server`
 * keeps its server's definition (flavor, image, metadata, user data,
 * networks, security groups, the volumes it held), so a restore can make a
 * new server like it. The disks themselves are in the repository. Byte
 * counts outgrow 32 bits (a server with a 2 GiB disk): on PostgreSQL they
 * become bigint (SQLite's integer is 64-bit already).
 */
export function up(dialect: Dialect) {
  return async (db: Kysely<unknown>): Promise<void> => {
    await db.schema.alterTable('backups').addColumn('definition', 'text').execute();
    if (dialect === 'postgres')
      for (const column of ['read_bytes', 'stored_bytes'])
        await db.schema
          .alterTable('backups')
          .alterColumn(column, (c) => c.setDataType('bigint'))
          .execute();
  };
}
