import type { Kysely } from 'kysely';

/**
 * Multi-host (issue 10). `hosts`: the hypervisor hosts the scheduler places
 * on (the single machine registers itself as the one local host; agents join
 * with a one-time token). `placements`: one claim row per placed server,
 * written in the transaction that creates the server, under the host row's
 * lock, so concurrent creates never overcommit a host. `server_groups` and
 * `server_group_members`: Nova server groups, whose members are added under
 * the group row's lock, so concurrent creates never break the policy.
 * `host_join_tokens`: SHA-256 of one-time agent join tokens, with expiry.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('hosts')
    .addColumn('name', 'text', (c) => c.primaryKey())
    .addColumn('zone', 'text', (c) => c.notNull())
    .addColumn('aggregates', 'text', (c) => c.notNull())
    .addColumn('features', 'text', (c) => c.notNull())
    .addColumn('vcpus', 'integer', (c) => c.notNull())
    .addColumn('ram_mib', 'integer', (c) => c.notNull())
    .addColumn('disk_gib', 'integer', (c) => c.notNull())
    .addColumn('ratios', 'text', (c) => c.notNull())
    .addColumn('state', 'text', (c) => c.notNull())
    .addColumn('health', 'text', (c) => c.notNull())
    .addColumn('local', 'integer', (c) => c.notNull())
    .addColumn('cert_fingerprint', 'text')
    .addColumn('last_heartbeat', 'text')
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .execute();
  await db.schema
    .createTable('placements')
    .addColumn('server_id', 'text', (c) => c.primaryKey())
    .addColumn('host', 'text', (c) => c.notNull())
    .addColumn('vcpus', 'integer', (c) => c.notNull())
    .addColumn('ram_mib', 'integer', (c) => c.notNull())
    .addColumn('disk_gib', 'integer', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('placements_host').on('placements').column('host').execute();
  await db.schema
    .createTable('server_groups')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('project_id', 'text', (c) => c.notNull())
    .addColumn('user_id', 'text', (c) => c.notNull())
    .addColumn('policy', 'text', (c) => c.notNull())
    .addColumn('rules', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('server_groups_project').on('server_groups').column('project_id').execute();
  await db.schema
    .createTable('server_group_members')
    .addColumn('server_id', 'text', (c) => c.primaryKey())
    .addColumn('group_id', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .execute();
  await db.schema
    .createIndex('server_group_members_group')
    .on('server_group_members')
    .column('group_id')
    .execute();
  await db.schema
    .createTable('host_join_tokens')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('token_hash', 'text', (c) => c.notNull().unique())
    .addColumn('host_name', 'text', (c) => c.notNull())
    .addColumn('created_by', 'text', (c) => c.notNull())
    .addColumn('expires_at', 'text', (c) => c.notNull())
    .addColumn('used_at', 'text')
    .addColumn('created_at', 'text', (c) => c.notNull())
    .execute();
}
