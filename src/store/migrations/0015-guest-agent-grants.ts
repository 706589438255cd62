import type { Kysely } from 'kysely';

/**
 * Guest agent grants (issue 7, guide 10): an admin's permission for commands
 * that run code or touch files in one server's guest (guest-exec,
 * guest-file-*), until `expires_at` or until revoked. Commands are a JSON array. Also the
 * host devices an admin passed through to a server (`servers.host_devices`).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('guest_agent_grants')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('server_id', 'text', (c) => c.notNull())
    .addColumn('commands', 'text', (c) => c.notNull())
    .addColumn('granted_by', 'text', (c) => c.notNull())
    .addColumn('granted_by_name', 'text', (c) => c.notNull())
    .addColumn('reason', 'text', (c) => c.notNull())
    .addColumn('expires_at', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('revoked_at', 'text')
    .execute();
  // Host devices passed through to the server (JSON PassthroughPlan, compute/passthrough-policy.ts); null: none.
  await db.schema.alterTable('servers').addColumn('host_devices', 'text').execute();
  await db.schema
    .createIndex('guest_agent_grants_by_server')
    .on('guest_agent_grants')
    .column('server_id')
    .execute();
}
