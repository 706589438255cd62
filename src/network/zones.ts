import type { Kysely, Selectable } from 'kysely';
import { badRequest, conflict, notFound } from '../errors.js';
import type { Dialect, Store } from '../store/database.js';
import type { Schema, ZoneRulesTable, ZonesTable } from '../store/schema.js';
import { nowIso, uuid } from '../util/ids.js';
import type { ZonePolicy } from './compile.js';
import { ZONE_NAME } from './model.js';
import { type DataplaneSync, isUniqueViolation } from './networks.js';
import { normaliseZoneAllow } from './zone-sets.js';

export type Zone = Selectable<ZonesTable>;
export type ZoneRule = Selectable<ZoneRulesTable>;

/** The zone every network starts in; it cannot be deleted. */
export const DEFAULT_ZONE = 'default';
/** The packet mark has 12 bits for zones (docs/network.md). */
export const MAX_ZONES = 4095;

const checkName = (name: string) => {
  if (!ZONE_NAME.test(name))
    throw badRequest(
      `Zone name '${name}' must start with a lowercase letter and have at most 32 lowercase letters, digits and dashes.`,
    );
};

/**
 * Inside a transaction: the zone must exist (400 otherwise, it is named in a
 * request body). On PostgreSQL the row is share-locked, so a concurrent zone
 * delete waits and then sees the network; SQLite serialises writers anyway.
 */
export async function requireZone(tx: Kysely<Schema>, dialect: Dialect, name: string): Promise<void> {
  let q = tx.selectFrom('zones').select('name').where('name', '=', name);
  if (dialect === 'postgres') q = q.forShare();
  if (!(await q.executeTakeFirst()))
    throw badRequest(`Security zone '${name}' does not exist; an administrator creates it first.`);
}

/**
 * Security zones and the inter-zone policy. Administrators manage them (the
 * policy table says so); everyone may read them. Every change is pushed to
 * the dataplane at once.
 */
export class ZoneService {
  constructor(
    private readonly store: Store,
    private readonly dataplane: DataplaneSync,
  ) {}

  private get db() {
    return this.store.db;
  }

  // ---- zones ----------------------------------------------------------------

  list(): Promise<Zone[]> {
    return this.db.selectFrom('zones').selectAll().orderBy('name').execute();
  }

  async get(name: string): Promise<Zone> {
    const z = await this.db.selectFrom('zones').selectAll().where('name', '=', name).executeTakeFirst();
    if (!z) throw notFound('security zone', name);
    return z;
  }

  async create(input: { name: string; description?: string; hostAccess?: boolean }): Promise<Zone> {
    checkName(input.name);
    const now = nowIso();
    const row: Zone = {
      name: input.name,
      description: input.description ?? '',
      host_access: input.hostAccess === false ? 0 : 1,
      created_at: now,
      updated_at: now,
    };
    const count = await this.db
      .selectFrom('zones')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow();
    if (Number(count.n) >= MAX_ZONES) throw conflict(`At most ${MAX_ZONES} security zones can exist.`);
    try {
      await this.db.insertInto('zones').values(row).execute();
    } catch (err) {
      if (isUniqueViolation(err)) throw conflict(`Security zone '${input.name}' already exists.`);
      throw err;
    }
    await this.dataplane.sync(`zone ${row.name} created`);
    return row;
  }

  async update(name: string, patch: { description?: string; hostAccess?: boolean }): Promise<Zone> {
    const z = await this.get(name);
    await this.db
      .updateTable('zones')
      .set({
        ...(patch.description !== undefined ? { description: patch.description } : {}),
        ...(patch.hostAccess !== undefined ? { host_access: patch.hostAccess ? 1 : 0 } : {}),
        updated_at: nowIso(),
      })
      .where('name', '=', name)
      .execute();
    if (patch.hostAccess !== undefined && (patch.hostAccess ? 1 : 0) !== z.host_access)
      await this.dataplane.sync(`zone ${name} host access changed`);
    return this.get(name);
  }

  /** Refused while a network is in the zone; its rules go with it. */
  async delete(name: string): Promise<void> {
    await this.get(name);
    if (name === DEFAULT_ZONE) throw conflict(`The '${DEFAULT_ZONE}' zone cannot be deleted.`);
    await this.db.transaction().execute(async (tx) => {
      // Lock the zone first (PostgreSQL), so a network being placed in it concurrently is seen below.
      let lock = tx.selectFrom('zones').select('name').where('name', '=', name);
      if (this.store.dialect === 'postgres') lock = lock.forUpdate();
      if (!(await lock.executeTakeFirst())) throw notFound('security zone', name);
      const used = await tx
        .selectFrom('networks')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('zone', '=', name)
        .executeTakeFirstOrThrow();
      if (Number(used.n) > 0)
        throw conflict(
          `Security zone '${name}' is used by ${Number(used.n)} network(s); move or delete them first.`,
        );
      await tx
        .deleteFrom('zone_rules')
        .where((eb) => eb.or([eb('from_zone', '=', name), eb('to_zone', '=', name)]))
        .execute();
      await tx.deleteFrom('zones').where('name', '=', name).execute();
    });
    await this.dataplane.sync(`zone ${name} deleted`);
  }

  // ---- inter-zone rules ---------------------------------------------------------

  async listRules(filter: { fromZone?: string | undefined; toZone?: string | undefined } = {}) {
    let q = this.db.selectFrom('zone_rules').selectAll().orderBy('created_at').orderBy('id');
    if (filter.fromZone !== undefined) q = q.where('from_zone', '=', filter.fromZone);
    if (filter.toZone !== undefined) q = q.where('to_zone', '=', filter.toZone);
    return q.execute();
  }

  async getRule(id: string): Promise<ZoneRule> {
    const r = await this.db.selectFrom('zone_rules').selectAll().where('id', '=', id).executeTakeFirst();
    if (!r) throw notFound('security zone rule', id);
    return r;
  }

  /** Lets `fromZone` open connections to `toZone` (optionally one protocol and destination port range). */
  async addRule(input: {
    fromZone: string;
    toZone: string;
    protocol?: string | number | null;
    portMin?: number | null;
    portMax?: number | null;
    description?: string;
  }): Promise<ZoneRule> {
    checkName(input.fromZone);
    checkName(input.toZone);
    if (input.fromZone === input.toZone)
      throw badRequest('A zone always reaches itself; within a zone only security groups decide.');
    const a = normaliseZoneAllow({
      from: input.fromZone,
      protocol: input.protocol ?? 'any',
      portMin: input.portMin ?? null,
      portMax: input.portMax ?? null,
    });
    const row: ZoneRule = {
      id: uuid(),
      from_zone: input.fromZone,
      to_zone: input.toZone,
      protocol: a.protocol,
      port_range_min: a.portMin,
      port_range_max: a.portMax,
      description: input.description ?? '',
      rule_key: [input.fromZone, input.toZone, a.protocol, a.portMin ?? '', a.portMax ?? ''].join('|'),
      created_at: nowIso(),
    };
    await this.db.transaction().execute(async (tx) => {
      await requireZone(tx, this.store.dialect, input.fromZone);
      await requireZone(tx, this.store.dialect, input.toZone);
      try {
        await tx.insertInto('zone_rules').values(row).execute();
      } catch (err) {
        if (isUniqueViolation(err))
          throw conflict(
            `Zone rule ${input.fromZone} -> ${input.toZone} ${a.protocol}` +
              `${a.portMin === null ? '' : ` ${a.portMin}-${a.portMax}`} already exists.`,
          );
        throw err;
      }
    });
    await this.dataplane.sync(`zone rule ${row.id} created`);
    return row;
  }

  async removeRule(id: string): Promise<void> {
    await this.getRule(id);
    await this.db.deleteFrom('zone_rules').where('id', '=', id).execute();
    await this.dataplane.sync(`zone rule ${id} deleted`);
  }

  // ---- for the dataplane ------------------------------------------------------------

  /** Every zone's policy for the compiler (see `loadZonePolicies`). */
  policies(): Promise<ZonePolicy[]> {
    return loadZonePolicies(this.store);
  }
}

/**
 * Zone policies as stored, for `compileRuleset`. A network whose zone row is
 * missing (it cannot happen through the API) gets a closed policy: no allows
 * in or out, no host access.
 */
export async function loadZonePolicies(store: Store): Promise<ZonePolicy[]> {
  const [zones, rules, used] = await Promise.all([
    store.db.selectFrom('zones').select(['name', 'host_access']).orderBy('name').execute(),
    store.db.selectFrom('zone_rules').selectAll().orderBy('created_at').orderBy('id').execute(),
    store.db.selectFrom('networks').select('zone').distinct().execute(),
  ]);
  const out = new Map<string, ZonePolicy>();
  for (const z of zones) out.set(z.name, { name: z.name, hostAccess: z.host_access === 1, rules: [] });
  for (const u of used)
    if (!out.has(u.zone) && ZONE_NAME.test(u.zone))
      out.set(u.zone, { name: u.zone, hostAccess: false, rules: [] });
  for (const r of rules)
    out.get(r.to_zone)?.rules?.push({
      from: r.from_zone,
      protocol: r.protocol,
      portMin: r.port_range_min,
      portMax: r.port_range_max,
    });
  return [...out.values()];
}
