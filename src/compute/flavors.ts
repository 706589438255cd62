import type { Selectable } from 'kysely';
import { badRequest, conflict, notFound } from '../errors.js';
import type { Store } from '../store/database.js';
import type { FlavorsTable } from '../store/schema.js';
import { nowIso, uuid } from '../util/ids.js';
import { validateExtraSpecs } from './properties.js';

export type Flavor = Selectable<FlavorsTable>;

export interface FlavorInput {
  name: string;
  id?: string | null | undefined;
  vcpus: number;
  ram: number;
  disk: number;
  ephemeral?: number | undefined;
  swap?: number | undefined;
  rxtxFactor?: number | undefined;
  isPublic?: boolean | undefined;
  description?: string | null | undefined;
}

export const extraSpecsOf = (f: Flavor): Record<string, string> =>
  JSON.parse(f.extra_specs) as Record<string, string>;

/** Nova flavors: admin-managed machine sizes with extra specs. */
export class FlavorService {
  constructor(private readonly store: Store) {}

  list(opts: { includePrivate: boolean }) {
    let q = this.store.db.selectFrom('flavors').selectAll().orderBy('ram').orderBy('name');
    if (!opts.includePrivate) q = q.where('is_public', '=', 1);
    return q.execute();
  }

  /**
   * A private flavor exists only for the cloud admin (there are no per-project access lists yet):
   * to anyone else it is not found, as in Nova without access, not shown or booted by id.
   */
  async get(id: string, opts: { includePrivate: boolean } = { includePrivate: true }): Promise<Flavor> {
    const f = await this.store.db.selectFrom('flavors').selectAll().where('id', '=', id).executeTakeFirst();
    if (!f || (Number(f.is_public) !== 1 && !opts.includePrivate)) throw notFound('flavor', id);
    return f;
  }

  async create(input: FlavorInput): Promise<Flavor> {
    if (input.ephemeral)
      throw badRequest('Ephemeral disks are not supported; use 0 (volumes give extra storage).');
    if (input.swap) throw badRequest('Swap disks are not supported; use 0.');
    const id = input.id ?? uuid();
    const db = this.store.db;
    if (await db.selectFrom('flavors').select('id').where('id', '=', id).executeTakeFirst()) {
      throw conflict(`Flavor with ID ${id} already exists.`);
    }
    if (await db.selectFrom('flavors').select('id').where('name', '=', input.name).executeTakeFirst()) {
      throw conflict(`Flavor with name ${input.name} already exists.`);
    }
    const row = {
      id,
      name: input.name,
      vcpus: input.vcpus,
      ram: input.ram,
      disk: input.disk,
      ephemeral: 0,
      swap: 0,
      rxtx_factor: input.rxtxFactor ?? 1,
      is_public: input.isPublic === false ? 0 : 1,
      description: input.description ?? null,
      extra_specs: '{}',
      created_at: nowIso(),
    };
    await db.insertInto('flavors').values(row).execute();
    return row;
  }

  async delete(id: string): Promise<void> {
    await this.get(id);
    await this.store.db.deleteFrom('flavors').where('id', '=', id).execute();
  }

  async setExtraSpecs(id: string, specs: Record<string, unknown>): Promise<Record<string, string>> {
    validateExtraSpecs(specs);
    const f = await this.get(id);
    const merged = { ...extraSpecsOf(f), ...(specs as Record<string, string>) };
    await this.store.db
      .updateTable('flavors')
      .set({ extra_specs: JSON.stringify(merged) })
      .where('id', '=', id)
      .execute();
    return merged;
  }

  async unsetExtraSpec(id: string, key: string): Promise<void> {
    const specs = extraSpecsOf(await this.get(id));
    if (!Object.hasOwn(specs, key)) throw notFound('flavor extra spec', key);
    delete specs[key];
    await this.store.db
      .updateTable('flavors')
      .set({ extra_specs: JSON.stringify(specs) })
      .where('id', '=', id)
      .execute();
  }
}
