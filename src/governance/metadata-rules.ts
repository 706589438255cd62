import type { Selectable } from 'kysely';
import { badRequest, conflict, notFound } from '../errors.js';
import type { AuthContext } from '../policy/context.js';
import type { Store } from '../store/database.js';
import type { MetadataRulesTable } from '../store/schema.js';
import { nowIso } from '../util/ids.js';
import { checkUserMetadata, isPlatformKey, type MetadataRule, ruleViolations } from './server-metadata.js';

const KEY = /^[a-z][a-z0-9_]{0,63}$/;
const RULE_ID = /^[a-z0-9][a-z0-9-]{0,63}$/;

const ruleOf = (r: Selectable<MetadataRulesTable>): MetadataRule => ({
  id: r.id,
  when: { key: r.when_key, value: r.when_value },
  requires: JSON.parse(r.requires) as string[],
  created_by: r.created_by,
  created_at: r.created_at,
});

/**
 * The required-field rules (docs/metadata.md), kept in the store so every
 * daemon on it enforces the same ones; the cloud admin adds and removes them.
 */
export class MetadataRuleService {
  constructor(private readonly store: Store) {}

  async list(): Promise<MetadataRule[]> {
    return (await this.store.db.selectFrom('metadata_rules').selectAll().orderBy('id').execute()).map(ruleOf);
  }

  /** What the rules say a server's metadata lacks (empty: it may be stored). */
  async violations(md: Readonly<Record<string, string>>): Promise<string[]> {
    return ruleViolations(await this.list(), md);
  }

  async create(
    auth: AuthContext,
    input: { id: string; when: { key: string; value: string }; requires: string[] },
  ): Promise<MetadataRule> {
    if (!RULE_ID.test(input.id))
      throw badRequest('A rule id is lowercase letters, digits and -, e.g. pci-needs-owner.');
    for (const k of [input.when.key, ...input.requires]) {
      if (!KEY.test(k))
        throw badRequest(`Bad metadata key ${JSON.stringify(k)} in a rule: lowercase, digits and _.`);
      if (isPlatformKey(k)) throw badRequest(`${k} is set by the platform; a rule cannot name it.`);
    }
    if (input.requires.includes(input.when.key))
      throw badRequest('A rule cannot require the key it is about.');
    checkUserMetadata({ [input.when.key]: input.when.value });
    const row = {
      id: input.id,
      when_key: input.when.key,
      when_value: input.when.value,
      requires: JSON.stringify([...new Set(input.requires)]),
      created_by: auth.userName,
      created_at: nowIso(),
    };
    const inserted = await this.store.db
      .insertInto('metadata_rules')
      .values(row)
      .onConflict((oc) => oc.column('id').doNothing())
      .executeTakeFirst();
    if (Number(inserted.numInsertedOrUpdatedRows ?? 0) !== 1)
      throw conflict(`Metadata rule ${input.id} already exists.`);
    return ruleOf(row);
  }

  async delete(id: string): Promise<void> {
    const r = await this.store.db.deleteFrom('metadata_rules').where('id', '=', id).executeTakeFirst();
    if (Number(r.numDeletedRows) !== 1) throw notFound('metadata rule', id);
  }
}
