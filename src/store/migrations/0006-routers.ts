import type { Kysely } from 'kysely';

/**
 * Neutron routers (issue 4): `networks.router_external` marks an external
 * network (admin-made, the host uplink's range); a router may have one as its
 * external gateway (SNAT out of the uplink), and subnets attached to it as
 * interfaces. A subnet is attached to at most one router (its gateway address
 * is the interface's), hence the primary key.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('networks')
    .addColumn('router_external', 'integer', (c) => c.notNull().defaultTo(0))
    .execute();

  await db.schema
    .createTable('routers')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('project_id', 'text', (c) => c.notNull())
    .addColumn('description', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('admin_state_up', 'integer', (c) => c.notNull().defaultTo(1))
    .addColumn('external_network_id', 'text', (c) => c.references('networks.id'))
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('routers_project').on('routers').column('project_id').execute();

  await db.schema
    .createTable('router_interfaces')
    .addColumn('subnet_id', 'text', (c) => c.primaryKey().references('subnets.id'))
    .addColumn('router_id', 'text', (c) => c.notNull().references('routers.id'))
    .addColumn('network_id', 'text', (c) => c.notNull().references('networks.id'))
    .addColumn('created_at', 'text', (c) => c.notNull())
    .execute();
  await db.schema
    .createIndex('router_interfaces_router')
    .on('router_interfaces')
    .column('router_id')
    .execute();
}
