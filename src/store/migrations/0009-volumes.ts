import type { Kysely } from 'kysely';

/**
 * Block storage (issue 5): Cinder volume types, their encryption specs,
 * volumes and their attachments to servers. A volume of an encrypted type
 * holds only the id of its key in the key manager (`key_secret_id`), never
 * the key. `servers.root_key_secret_id` is the same for an encrypted root
 * disk (null: the root overlay is not encrypted).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('volume_types')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull().unique())
    .addColumn('description', 'text')
    .addColumn('is_public', 'integer', (c) => c.notNull().defaultTo(1))
    .addColumn('created_at', 'text', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('volume_encryption_types')
    .addColumn('volume_type_id', 'text', (c) => c.primaryKey().references('volume_types.id'))
    .addColumn('encryption_id', 'text', (c) => c.notNull())
    .addColumn('provider', 'text', (c) => c.notNull())
    .addColumn('cipher', 'text', (c) => c.notNull())
    .addColumn('key_size', 'integer', (c) => c.notNull())
    .addColumn('control_location', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('volumes')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text')
    .addColumn('description', 'text')
    .addColumn('project_id', 'text', (c) => c.notNull())
    .addColumn('user_id', 'text', (c) => c.notNull())
    .addColumn('size', 'integer', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('volume_type_id', 'text', (c) => c.references('volume_types.id'))
    .addColumn('encrypted', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('key_secret_id', 'text')
    .addColumn('fault', 'text')
    .addColumn('metadata', 'text', (c) => c.notNull().defaultTo('{}'))
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .addColumn('deleted_at', 'text')
    .execute();
  await db.schema.createIndex('volumes_project').on('volumes').column('project_id').execute();

  // One attachment per volume (no multi-attach): the primary key says so.
  await db.schema
    .createTable('volume_attachments')
    .addColumn('volume_id', 'text', (c) => c.primaryKey().references('volumes.id'))
    .addColumn('id', 'text', (c) => c.notNull().unique())
    .addColumn('server_id', 'text', (c) => c.notNull())
    .addColumn('device', 'text', (c) => c.notNull())
    .addColumn('attached_at', 'text', (c) => c.notNull())
    .execute();
  await db.schema
    .createIndex('volume_attachments_server')
    .on('volume_attachments')
    .column('server_id')
    .execute();

  await db.schema.alterTable('servers').addColumn('root_key_secret_id', 'text').execute();
}
