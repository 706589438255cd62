import { type Kysely, sql } from 'kysely';

/**
 * Security zones (docs/network.md, "Security zones"): a zone is its own
 * isolated domain; networks belong to one (`networks.zone`); admin-managed
 * rules say which zone may open connections to which, for what protocol and
 * destination ports. Zones referenced by existing networks are created with
 * host access so nothing changes for them; `default` is self-contained.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('zones')
    .addColumn('name', 'text', (c) => c.primaryKey())
    .addColumn('description', 'text', (c) => c.notNull().defaultTo(''))
    /** 1: the zone's ports may reach host services (DNS, ICMP echo); 0: DHCP and neighbour discovery only. */
    .addColumn('host_access', 'integer', (c) => c.notNull().defaultTo(1))
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('zone_rules')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('from_zone', 'text', (c) => c.notNull().references('zones.name').onDelete('cascade'))
    .addColumn('to_zone', 'text', (c) => c.notNull().references('zones.name').onDelete('cascade'))
    /** `any`, `tcp`, `udp`, `icmp` or an IP protocol number as text. */
    .addColumn('protocol', 'text', (c) => c.notNull())
    .addColumn('port_range_min', 'integer')
    .addColumn('port_range_max', 'integer')
    .addColumn('description', 'text', (c) => c.notNull().defaultTo(''))
    /** Canonical form: a duplicate rule is a 409, decided by the database. */
    .addColumn('rule_key', 'text', (c) => c.notNull().unique())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('zone_rules_to').on('zone_rules').column('to_zone').execute();

  const now = new Date().toISOString();
  await sql`insert into zones (name, description, host_access, created_at, updated_at)
    values ('default', 'Default zone: self-contained, host services reachable', 1, ${now}, ${now})`.execute(
    db,
  );
  await sql`insert into zones (name, description, host_access, created_at, updated_at)
    select distinct zone, '', 1, ${now}, ${now} from networks where zone <> 'default'`.execute(db);
}
