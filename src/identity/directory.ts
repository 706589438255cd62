import { type Selectable, sql } from 'kysely';
import { badRequest, conflict, notFound } from '../errors.js';
import type { Store } from '../store/database.js';
import type { Schema } from '../store/schema.js';
import { keystoneId, nowIso } from '../util/ids.js';
import { DEFAULT_DOMAIN_ID, type IdentityConfig } from './config.js';

type NamedPatch = {
  name?: string | undefined;
  description?: string | undefined;
  enabled?: boolean | undefined;
};

/** The columns a domain or project update touches: only what the caller sent. */
const namedPatch = (patch: NamedPatch) => ({
  ...(patch.name !== undefined ? { name: patch.name } : {}),
  ...(patch.description !== undefined ? { description: patch.description } : {}),
  ...(patch.enabled !== undefined ? { enabled: patch.enabled ? 1 : 0 } : {}),
});

/** The identity tables that hold named rows, listed by name and domain. */
type NamedTable = 'domains' | 'projects' | 'users';
type DomainScoped = 'projects' | 'users';

/**
 * Domains and the projects in them: the first layer of the identity service
 * (users.ts, roles.ts and service.ts build on it).
 */
export class Directory {
  constructor(
    protected readonly store: Store,
    readonly config: IdentityConfig,
  ) {}

  protected get db() {
    return this.store.db;
  }

  /** A domain's, project's or user's row, or a 404 naming what was asked for. */
  protected async rowOr404<T extends NamedTable>(
    table: T,
    kind: string,
    id: string,
  ): Promise<Selectable<Schema[T]>> {
    const row = await this.db
      .selectFrom(table as NamedTable)
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst();
    if (!row) throw notFound(kind, id);
    return row as Selectable<Schema[T]>;
  }

  /** Rows ordered by name, filtered by exact name, ids and (projects and users only) domain. */
  protected listNamed<T extends NamedTable>(
    table: T,
    filter: { name?: string | undefined; domainId?: string | undefined; ids?: readonly string[] },
  ): Promise<Selectable<Schema[T]>[]> {
    let q = this.db
      .selectFrom(table as NamedTable)
      .selectAll()
      .orderBy('name');
    if (filter.name !== undefined) q = q.where('name', '=', filter.name);
    if (filter.domainId !== undefined) q = q.where(sql.ref('domain_id'), '=', filter.domainId);
    if (filter.ids !== undefined) {
      if (filter.ids.length === 0) return Promise.resolve([]);
      q = q.where('id', 'in', filter.ids);
    }
    return q.execute() as Promise<Selectable<Schema[T]>[]>;
  }

  /** Whether a project or user of this name is already in the domain (names are unique per domain). */
  protected async nameTaken(table: DomainScoped, domainId: string, name: string): Promise<boolean> {
    const row = await this.db
      .selectFrom(table as DomainScoped)
      .select('id')
      .where('domain_id', '=', domainId)
      .where('name', '=', name)
      .executeTakeFirst();
    return row !== undefined;
  }

  // ---- domains -------------------------------------------------------------

  async resolveDomainId(
    ref: { id?: string | undefined; name?: string | undefined } | undefined,
  ): Promise<string> {
    if (!ref || (ref.id === undefined && ref.name === undefined)) return DEFAULT_DOMAIN_ID;
    const q = this.db.selectFrom('domains').select('id');
    const row = await (ref.id !== undefined
      ? q.where('id', '=', ref.id)
      : q.where('name', '=', ref.name ?? '')
    ).executeTakeFirst();
    if (!row) throw notFound('domain', ref.id ?? ref.name ?? '');
    return row.id;
  }

  listDomains(filter: { name?: string | undefined } = {}) {
    return this.listNamed('domains', filter);
  }

  getDomain(id: string) {
    return this.rowOr404('domains', 'domain', id);
  }

  async createDomain(input: {
    name: string;
    description?: string | undefined;
    enabled?: boolean | undefined;
  }) {
    if (await this.db.selectFrom('domains').select('id').where('name', '=', input.name).executeTakeFirst()) {
      throw conflict(
        `Conflict occurred attempting to store domain - Duplicate entry found with name ${input.name}.`,
      );
    }
    const row = {
      id: keystoneId(),
      name: input.name,
      description: input.description ?? '',
      enabled: input.enabled === false ? 0 : 1,
      created_at: nowIso(),
    };
    await this.db.insertInto('domains').values(row).execute();
    return row;
  }

  async updateDomain(
    id: string,
    patch: { name?: string | undefined; description?: string | undefined; enabled?: boolean | undefined },
  ) {
    await this.getDomain(id);
    await this.db.updateTable('domains').set(namedPatch(patch)).where('id', '=', id).execute();
    return this.getDomain(id);
  }

  async deleteDomain(id: string) {
    const d = await this.getDomain(id);
    if (id === DEFAULT_DOMAIN_ID) throw badRequest('The default domain cannot be deleted.');
    if (d.enabled === 1)
      throw badRequest('Disable the domain before deleting it (openstack domain set --disable).');
    const used = await this.db
      .selectFrom('projects')
      .select('id')
      .where('domain_id', '=', id)
      .executeTakeFirst();
    const usedU = await this.db
      .selectFrom('users')
      .select('id')
      .where('domain_id', '=', id)
      .executeTakeFirst();
    if (used || usedU) throw conflict('The domain still holds projects or users; delete them first.');
    await this.db.deleteFrom('domains').where('id', '=', id).execute();
  }

  // ---- projects ------------------------------------------------------------

  listProjects(
    filter: { name?: string | undefined; domainId?: string | undefined; ids?: readonly string[] } = {},
  ) {
    return this.listNamed('projects', filter);
  }

  getProject(id: string) {
    return this.rowOr404('projects', 'project', id);
  }

  async createProject(input: {
    name: string;
    domainId: string;
    description?: string | undefined;
    enabled?: boolean | undefined;
  }) {
    await this.getDomain(input.domainId);
    if (await this.nameTaken('projects', input.domainId, input.name))
      throw conflict(
        `Conflict occurred attempting to store project - it is not permitted to have two projects with the same name in the same domain : ${input.name}.`,
      );
    const row = {
      id: keystoneId(),
      name: input.name,
      domain_id: input.domainId,
      description: input.description ?? '',
      enabled: input.enabled === false ? 0 : 1,
      created_at: nowIso(),
    };
    await this.db.insertInto('projects').values(row).execute();
    return row;
  }

  async updateProject(
    id: string,
    patch: { name?: string | undefined; description?: string | undefined; enabled?: boolean | undefined },
  ) {
    const p = await this.getProject(id);
    if (patch.name !== undefined && patch.name !== p.name) {
      if (await this.nameTaken('projects', p.domain_id, patch.name))
        throw conflict(`A project named ${patch.name} already exists in this domain.`);
    }
    if (
      patch.enabled === false &&
      p.name === this.config.adminProjectName &&
      p.domain_id === DEFAULT_DOMAIN_ID
    ) {
      throw badRequest('The admin project cannot be disabled: it would lock every administrator out.');
    }
    await this.db.updateTable('projects').set(namedPatch(patch)).where('id', '=', id).execute();
    return this.getProject(id);
  }

  async deleteProject(id: string) {
    const p = await this.getProject(id);
    if (p.name === this.config.adminProjectName && p.domain_id === DEFAULT_DOMAIN_ID) {
      throw badRequest('The admin project cannot be deleted.');
    }
    await this.db.transaction().execute(async (tx) => {
      await tx.deleteFrom('tokens').where('project_id', '=', id).execute();
      await tx.deleteFrom('role_assignments').where('project_id', '=', id).execute();
      await tx
        .updateTable('users')
        .set({ default_project_id: null })
        .where('default_project_id', '=', id)
        .execute();
      await tx.deleteFrom('projects').where('id', '=', id).execute();
    });
  }
}
