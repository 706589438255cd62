import type { Kysely } from 'kysely';

/**
 * Server lists page newest first (`created_at`, then `id`, both descending:
 * Nova's default sort) within a project: the index now covers the order too,
 * so a page after a marker is an index range, not a sort of every server
 * (docs/compute.md). It replaces `servers_project`, a prefix of it.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createIndex('servers_project_created')
    .on('servers')
    .columns(['project_id', 'deleted_at', 'created_at', 'id'])
    .execute();
  await db.schema.dropIndex('servers_project').execute();
}
