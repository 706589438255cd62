import type { Selectable } from 'kysely';
import { BulwarkError, badRequest, conflict, notFound } from '../errors.js';
import { type AuthContext, expandRoles } from '../policy/context.js';
import type { Store } from '../store/database.js';
import type { ProjectsTable, UsersTable } from '../store/schema.js';
import { keystoneId, nowIso, randomSecret, sha256Hex } from '../util/ids.js';
import type { AccessRule } from './access-rules.js';
import { hashPassword, verifyPassword } from './passwords.js';

/** The site's login and password rules (docs/identity.md); `serve` flags set them. */
export interface IdentityPolicy {
  /** Admin-scoped tokens need a second factor; without one they may only enroll one. */
  adminMfaRequired: boolean;
  /** Keystone's `lockout_failure_attempts` (0: never lock) and `lockout_duration` in seconds. */
  lockoutFailureAttempts: number;
  lockoutDurationSeconds: number;
  /** Password rules: minimum length, how many previous passwords may not be reused, days until expiry (0: never). */
  passwordMinLength: number;
  passwordHistory: number;
  passwordExpiresDays: number;
}

export const DEFAULT_IDENTITY_POLICY: IdentityPolicy = {
  adminMfaRequired: true,
  lockoutFailureAttempts: 5,
  lockoutDurationSeconds: 1800,
  passwordMinLength: 12,
  passwordHistory: 3,
  passwordExpiresDays: 0,
};

export interface IdentityConfig extends IdentityPolicy {
  /** Token lifetime in seconds (Keystone's default is one hour). */
  tokenTtlSeconds: number;
  /** The project whose admin role makes a cloud administrator. */
  adminProjectName: string;
}

/**
 * Auth methods that count as a second factor for the admin MFA rule: TOTP,
 * security keys, recovery codes, and break-glass (its sealed, offline
 * credential is the factor; break-glass.ts).
 */
export const SECOND_FACTORS: ReadonlySet<string> = new Set([
  'totp',
  'webauthn',
  'recovery_code',
  'break_glass',
]);

export const DEFAULT_DOMAIN_ID = 'default';

/** Identifies a user as Keystone's password method allows: by id, or by name within a domain. */
export interface UserRef {
  id?: string | undefined;
  name?: string | undefined;
  domain?: { id?: string | undefined; name?: string | undefined } | undefined;
}

export interface ProjectRef {
  id?: string | undefined;
  name?: string | undefined;
  domain?: { id?: string | undefined; name?: string | undefined } | undefined;
}

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

/** Failed logins all look alike to the caller; the audit log keeps the real reason. */
export const loginFailed = (auditReason: string) =>
  new BulwarkError('Unauthorized', 'The request you have made requires authentication.', { auditReason });

/** Who a context is for, and whether they, their domain and their project are enabled (users u, domains d, projects p). */
const SUBJECT_COLUMNS = [
  'u.name as user_name',
  'u.domain_id as user_domain_id',
  'u.enabled as user_enabled',
  'd.enabled as domain_enabled',
  'p.name as project_name',
  'p.domain_id as project_domain_id',
  'p.enabled as project_enabled',
] as const;

export class IdentityService {
  constructor(
    private readonly store: Store,
    readonly config: IdentityConfig,
  ) {}

  private get db() {
    return this.store.db;
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
    let q = this.db.selectFrom('domains').selectAll().orderBy('name');
    if (filter.name !== undefined) q = q.where('name', '=', filter.name);
    return q.execute();
  }

  async getDomain(id: string) {
    const d = await this.db.selectFrom('domains').selectAll().where('id', '=', id).executeTakeFirst();
    if (!d) throw notFound('domain', id);
    return d;
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
    let q = this.db.selectFrom('projects').selectAll().orderBy('name');
    if (filter.name !== undefined) q = q.where('name', '=', filter.name);
    if (filter.domainId !== undefined) q = q.where('domain_id', '=', filter.domainId);
    if (filter.ids !== undefined) {
      if (filter.ids.length === 0) return Promise.resolve([]);
      q = q.where('id', 'in', filter.ids);
    }
    return q.execute();
  }

  async getProject(id: string): Promise<Selectable<ProjectsTable>> {
    const p = await this.db.selectFrom('projects').selectAll().where('id', '=', id).executeTakeFirst();
    if (!p) throw notFound('project', id);
    return p;
  }

  async createProject(input: {
    name: string;
    domainId: string;
    description?: string | undefined;
    enabled?: boolean | undefined;
  }) {
    await this.getDomain(input.domainId);
    const dup = await this.db
      .selectFrom('projects')
      .select('id')
      .where('domain_id', '=', input.domainId)
      .where('name', '=', input.name)
      .executeTakeFirst();
    if (dup)
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
      const dup = await this.db
        .selectFrom('projects')
        .select('id')
        .where('domain_id', '=', p.domain_id)
        .where('name', '=', patch.name)
        .executeTakeFirst();
      if (dup) throw conflict(`A project named ${patch.name} already exists in this domain.`);
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

  // ---- users ---------------------------------------------------------------

  listUsers(filter: { name?: string | undefined; domainId?: string | undefined } = {}) {
    let q = this.db.selectFrom('users').selectAll().orderBy('name');
    if (filter.name !== undefined) q = q.where('name', '=', filter.name);
    if (filter.domainId !== undefined) q = q.where('domain_id', '=', filter.domainId);
    return q.execute();
  }

  async getUser(id: string): Promise<Selectable<UsersTable>> {
    const u = await this.db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
    if (!u) throw notFound('user', id);
    return u;
  }

  async createUser(input: {
    name: string;
    domainId: string;
    password?: string | undefined;
    enabled?: boolean | undefined;
    defaultProjectId?: string | undefined;
    email?: string | undefined;
    description?: string | undefined;
  }) {
    await this.getDomain(input.domainId);
    if (input.defaultProjectId !== undefined) await this.getProject(input.defaultProjectId);
    const dup = await this.db
      .selectFrom('users')
      .select('id')
      .where('domain_id', '=', input.domainId)
      .where('name', '=', input.name)
      .executeTakeFirst();
    if (dup)
      throw conflict(
        `Conflict occurred attempting to store user - Duplicate entry found with name ${input.name} at domain ID ${input.domainId}.`,
      );
    const id = keystoneId();
    const pw = input.password === undefined ? null : await this.newPassword(id, input.password);
    await this.db.transaction().execute(async (tx) => {
      await tx
        .insertInto('users')
        .values({
          id,
          name: input.name,
          domain_id: input.domainId,
          enabled: input.enabled === false ? 0 : 1,
          default_project_id: input.defaultProjectId ?? null,
          email: input.email ?? null,
          description: input.description ?? '',
          options: '{}',
          created_at: nowIso(),
          ...(pw ? pw.columns : { password_hash: null, password_expires_at: null }),
        })
        .execute();
      if (pw) await tx.insertInto('password_history').values(pw.history).execute();
    });
    return this.getUser(id);
  }

  /**
   * Applies the password rules to a new password for `userId` (length, not one
   * of the last `passwordHistory`) and returns the columns and history row to write.
   */
  private async newPassword(userId: string, password: string) {
    const { passwordMinLength: min, passwordHistory: keep, passwordExpiresDays: days } = this.config;
    if (password.length < min)
      throw badRequest(
        `The password is too short: use at least ${min} characters (a passphrase works well).`,
      );
    if (keep > 0) {
      const previous = await this.db
        .selectFrom('password_history')
        .select('password_hash')
        .where('user_id', '=', userId)
        .orderBy('created_at', 'desc')
        .limit(keep)
        .execute();
      for (const p of previous) {
        if (await verifyPassword(p.password_hash, password))
          throw badRequest(
            `The new password cannot be identical to a previous password: the last ${keep} passwords may not be reused.`,
          );
      }
    }
    const hash = await hashPassword(password);
    const now = new Date();
    return {
      columns: {
        password_hash: hash,
        password_changed_at: now.toISOString(),
        password_expires_at: days > 0 ? new Date(now.getTime() + days * 86_400_000).toISOString() : null,
      },
      history: { id: keystoneId(), user_id: userId, password_hash: hash, created_at: now.toISOString() },
    };
  }

  async updateUser(
    id: string,
    patch: {
      name?: string | undefined;
      password?: string | undefined;
      enabled?: boolean | undefined;
      defaultProjectId?: string | null | undefined;
      email?: string | undefined;
      description?: string | undefined;
      /** The whole new options object (the API merges the caller's keys into the old one). */
      options?: Record<string, unknown> | undefined;
    },
  ) {
    const u = await this.getUser(id);
    if (patch.name !== undefined && patch.name !== u.name) {
      const dup = await this.db
        .selectFrom('users')
        .select('id')
        .where('domain_id', '=', u.domain_id)
        .where('name', '=', patch.name)
        .executeTakeFirst();
      if (dup) throw conflict(`A user named ${patch.name} already exists in this domain.`);
    }
    if (patch.defaultProjectId) await this.getProject(patch.defaultProjectId);
    const pw = patch.password === undefined ? null : await this.newPassword(id, patch.password);
    const keep = this.config.passwordHistory;
    await this.db.transaction().execute(async (tx) => {
      if (pw) {
        await tx.insertInto('password_history').values(pw.history).execute();
        const old = await tx
          .selectFrom('password_history')
          .select('id')
          .where('user_id', '=', id)
          .orderBy('created_at', 'desc')
          .offset(Math.max(keep, 1))
          .limit(1000)
          .execute();
        if (old.length > 0)
          await tx
            .deleteFrom('password_history')
            .where(
              'id',
              'in',
              old.map((o) => o.id),
            )
            .execute();
      }
      await tx
        .updateTable('users')
        .set({
          ...(patch.name !== undefined ? { name: patch.name } : {}),
          ...(pw ? pw.columns : {}),
          ...(patch.options !== undefined ? { options: JSON.stringify(patch.options) } : {}),
          // Enabling a user is how an administrator lifts a lockout (as in Keystone).
          ...(patch.enabled !== undefined
            ? { enabled: patch.enabled ? 1 : 0, ...(patch.enabled ? { failed_auth_count: 0 } : {}) }
            : {}),
          ...(patch.defaultProjectId !== undefined ? { default_project_id: patch.defaultProjectId } : {}),
          ...(patch.email !== undefined ? { email: patch.email } : {}),
          ...(patch.description !== undefined ? { description: patch.description } : {}),
        })
        .where('id', '=', id)
        .execute();
      // A new password or a disabled account ends every session the user had.
      if (patch.password !== undefined || patch.enabled === false) {
        await tx
          .updateTable('tokens')
          .set({ revoked_at: nowIso() })
          .where('user_id', '=', id)
          .where('revoked_at', 'is', null)
          .execute();
      }
    });
    return this.getUser(id);
  }

  async changePassword(id: string, original: string, password: string) {
    const u = await this.getUser(id);
    if (!(await verifyPassword(u.password_hash, original))) {
      throw new BulwarkError('Unauthorized', 'The original password is incorrect.');
    }
    await this.updateUser(id, { password });
  }

  async deleteUser(id: string, callerId: string, beforeDelete?: () => Promise<void>) {
    await this.getUser(id);
    if (id === callerId) throw badRequest('You cannot delete your own user; ask another administrator.');
    await beforeDelete?.();
    await this.db.transaction().execute(async (tx) => {
      await tx.deleteFrom('tokens').where('user_id', '=', id).execute();
      await tx.deleteFrom('role_assignments').where('user_id', '=', id).execute();
      await tx.deleteFrom('users').where('id', '=', id).execute();
    });
  }

  async listUserProjects(userId: string) {
    await this.getUser(userId);
    const ids = await this.db
      .selectFrom('role_assignments')
      .select('project_id')
      .distinct()
      .where('user_id', '=', userId)
      .execute();
    return this.listProjects({ ids: ids.map((r) => r.project_id) });
  }

  // ---- roles and assignments ---------------------------------------------

  listRoles(filter: { name?: string | undefined } = {}) {
    let q = this.db.selectFrom('roles').selectAll().orderBy('name');
    if (filter.name !== undefined) q = q.where('name', '=', filter.name);
    return q.execute();
  }

  async getRole(id: string) {
    const r = await this.db.selectFrom('roles').selectAll().where('id', '=', id).executeTakeFirst();
    if (!r) throw notFound('role', id);
    return r;
  }

  async createRole(input: { name: string; description?: string | undefined }) {
    if (await this.db.selectFrom('roles').select('id').where('name', '=', input.name).executeTakeFirst()) {
      throw conflict(
        `Conflict occurred attempting to store role - Duplicate entry found with name ${input.name}.`,
      );
    }
    const row = { id: keystoneId(), name: input.name, description: input.description ?? '' };
    await this.db.insertInto('roles').values(row).execute();
    return row;
  }

  async deleteRole(id: string) {
    const r = await this.getRole(id);
    if (['admin', 'member', 'reader', 'manager'].includes(r.name)) {
      throw badRequest(`The built-in role ${r.name} cannot be deleted.`);
    }
    await this.db.deleteFrom('roles').where('id', '=', id).execute();
  }

  async hasGrant(projectId: string, userId: string, roleId: string): Promise<boolean> {
    await Promise.all([this.getProject(projectId), this.getUser(userId), this.getRole(roleId)]);
    const row = await this.db
      .selectFrom('role_assignments')
      .select('role_id')
      .where('project_id', '=', projectId)
      .where('user_id', '=', userId)
      .where('role_id', '=', roleId)
      .executeTakeFirst();
    return row !== undefined;
  }

  async grant(projectId: string, userId: string, roleId: string) {
    if (await this.hasGrant(projectId, userId, roleId)) return;
    await this.db
      .insertInto('role_assignments')
      .values({ project_id: projectId, user_id: userId, role_id: roleId })
      .execute();
  }

  async revoke(projectId: string, userId: string, roleId: string, callerId: string) {
    if (!(await this.hasGrant(projectId, userId, roleId))) {
      throw notFound('role assignment', `${roleId} for user ${userId} on project ${projectId}`);
    }
    const role = await this.getRole(roleId);
    const project = await this.getProject(projectId);
    if (userId === callerId && role.name === 'admin' && project.name === this.config.adminProjectName) {
      throw badRequest(
        'You cannot remove your own admin role on the admin project; ask another administrator.',
      );
    }
    await this.db.transaction().execute(async (tx) => {
      await tx
        .deleteFrom('role_assignments')
        .where('project_id', '=', projectId)
        .where('user_id', '=', userId)
        .where('role_id', '=', roleId)
        .execute();
      // Tokens carry no roles of their own, but revoke them so no session outlives a lost role.
      await tx
        .updateTable('tokens')
        .set({ revoked_at: nowIso() })
        .where('user_id', '=', userId)
        .where('project_id', '=', projectId)
        .where('revoked_at', 'is', null)
        .execute();
    });
  }

  listAssignments(filter: {
    userId?: string | undefined;
    projectId?: string | undefined;
    roleId?: string | undefined;
  }) {
    let q = this.db
      .selectFrom('role_assignments as a')
      .innerJoin('roles as r', 'r.id', 'a.role_id')
      .innerJoin('users as u', 'u.id', 'a.user_id')
      .innerJoin('projects as p', 'p.id', 'a.project_id')
      .select([
        'a.user_id',
        'a.project_id',
        'a.role_id',
        'r.name as role_name',
        'u.name as user_name',
        'u.domain_id as user_domain_id',
        'p.name as project_name',
        'p.domain_id as project_domain_id',
      ])
      .orderBy('p.name')
      .orderBy('u.name')
      .orderBy('r.name');
    if (filter.userId !== undefined) q = q.where('a.user_id', '=', filter.userId);
    if (filter.projectId !== undefined) q = q.where('a.project_id', '=', filter.projectId);
    if (filter.roleId !== undefined) q = q.where('a.role_id', '=', filter.roleId);
    return q.execute();
  }

  private async roleNamesOn(userId: string, projectId: string): Promise<string[]> {
    const rows = await this.db
      .selectFrom('role_assignments as a')
      .innerJoin('roles as r', 'r.id', 'a.role_id')
      .select('r.name')
      .where('a.user_id', '=', userId)
      .where('a.project_id', '=', projectId)
      .execute();
    return rows.map((r) => r.name);
  }

  // ---- tokens ---------------------------------------------------------------

  /** The user a Keystone method names (by id, or by name within a domain); undefined when none matches. */
  async findUser(user: UserRef): Promise<Selectable<UsersTable> | undefined> {
    if (user.id !== undefined)
      return this.db.selectFrom('users').selectAll().where('id', '=', user.id).executeTakeFirst();
    if (user.name === undefined) throw badRequest('Expecting to find user id or name in the auth method.');
    const domainId = await this.resolveDomainId(user.domain).catch(() => undefined);
    if (domainId === undefined) return undefined;
    return this.db
      .selectFrom('users')
      .selectAll()
      .where('name', '=', user.name)
      .where('domain_id', '=', domainId)
      .executeTakeFirst();
  }

  /** Refuses a login for a disabled user or domain, or an expired password. */
  async checkUsable(row: Selectable<UsersTable>, usedPassword: boolean): Promise<void> {
    if (row.enabled !== 1) throw loginFailed('user is disabled');
    const domain = await this.db
      .selectFrom('domains')
      .select('enabled')
      .where('id', '=', row.domain_id)
      .executeTakeFirst();
    if (domain?.enabled !== 1) throw loginFailed('user domain is disabled');
    if (usedPassword && row.password_expires_at !== null && row.password_expires_at <= nowIso())
      throw new BulwarkError(
        'Unauthorized',
        'The password is expired and needs to be changed for user: ' +
          `${row.id}. Change it with \`openstack user password set\`, or ask an administrator.`,
        { auditReason: 'password expired' },
      );
  }

  /** The project a login asks to be scoped to; the user needs a role on it. */
  async resolveScope(userId: string, scope: ProjectRef | undefined): Promise<string | null> {
    if (!scope || (scope.id === undefined && scope.name === undefined)) return null;
    let project: Selectable<ProjectsTable> | undefined;
    if (scope.id !== undefined) {
      project = await this.db
        .selectFrom('projects')
        .selectAll()
        .where('id', '=', scope.id)
        .executeTakeFirst();
    } else {
      const domainId = await this.resolveDomainId(scope.domain).catch(() => undefined);
      if (domainId !== undefined) {
        project = await this.db
          .selectFrom('projects')
          .selectAll()
          .where('name', '=', scope.name ?? '')
          .where('domain_id', '=', domainId)
          .executeTakeFirst();
      }
    }
    if (project?.enabled !== 1) throw loginFailed('scope project not found or disabled');
    if ((await this.roleNamesOn(userId, project.id)).length === 0)
      throw loginFailed('user has no role on the scope project');
    return project.id;
  }

  /** Issues a token for an authenticated user; `methods` are the factors the login proved. */
  async mintToken(
    userId: string,
    projectId: string | null,
    methods: readonly string[],
    ttlSeconds = this.config.tokenTtlSeconds,
    appCredId: string | null = null,
  ): Promise<{ token: string; auth: AuthContext }> {
    const token = randomSecret(32);
    const issuedAt = new Date();
    const expiresAt = new Date(issuedAt.getTime() + ttlSeconds * 1000);
    await this.db
      .insertInto('tokens')
      .values({
        id_hash: sha256Hex(token),
        user_id: userId,
        project_id: projectId,
        methods: JSON.stringify(methods),
        audit_id: randomSecret(16),
        issued_at: issuedAt.toISOString(),
        expires_at: expiresAt.toISOString(),
        revoked_at: null,
        app_cred_id: appCredId,
      })
      .execute();
    const auth = await this.validateToken(token);
    if (!auth) throw new Error('token just issued does not validate');
    return { token, auth };
  }

  /** Returns the caller's context, or null for an unknown, expired or revoked token. */
  async validateToken(token: string): Promise<AuthContext | null> {
    const row = await this.db
      .selectFrom('tokens as t')
      .innerJoin('users as u', 'u.id', 't.user_id')
      .innerJoin('domains as d', 'd.id', 'u.domain_id')
      .leftJoin('projects as p', 'p.id', 't.project_id')
      .select([
        't.id_hash',
        't.user_id',
        't.project_id',
        't.methods',
        't.audit_id',
        't.issued_at',
        't.expires_at',
        't.revoked_at',
        't.app_cred_id',
        ...SUBJECT_COLUMNS,
      ])
      .where('t.id_hash', '=', sha256Hex(token))
      .executeTakeFirst();
    if (!row || row.revoked_at !== null || row.expires_at <= nowIso()) return null;
    if (row.user_enabled !== 1 || row.domain_enabled !== 1) return null;
    if (row.project_id !== null && row.project_enabled !== 1) return null;
    let held = row.project_id === null ? [] : await this.roleNamesOn(row.user_id, row.project_id);
    let appCred: AuthContext['appCred'];
    if (row.app_cred_id !== null) {
      // An application credential's token: its roles (those the user still holds), rules and expiry.
      const ac = await this.db
        .selectFrom('application_credentials')
        .selectAll()
        .where('id', '=', row.app_cred_id)
        .executeTakeFirst();
      if (!ac || (ac.expires_at !== null && ac.expires_at <= nowIso())) return null;
      const granted = JSON.parse(ac.roles) as string[];
      // Implied roles count: a member may delegate just `reader`.
      held = expandRoles(held).filter((r) => granted.includes(r));
      appCred = {
        id: ac.id,
        accessRules: JSON.parse(ac.access_rules) as AccessRule[],
        unrestricted: ac.unrestricted === 1,
      };
    }
    const roles = expandRoles(held);
    if (row.project_id !== null && roles.length === 0) return null;
    const methods = JSON.parse(row.methods) as string[];
    const adminRole = this.isCloudAdmin(roles, row.project_name ?? null, row.project_domain_id ?? null);
    // Admins must use MFA: without a second factor the token may only enroll one (policy/rules.ts).
    const mfaPending =
      adminRole && this.config.adminMfaRequired && !methods.some((m) => SECOND_FACTORS.has(m));
    return {
      userId: row.user_id,
      userName: row.user_name,
      userDomainId: row.user_domain_id,
      projectId: row.project_id,
      projectName: row.project_name ?? null,
      projectDomainId: row.project_domain_id ?? null,
      roles,
      isAdmin: adminRole && !mfaPending,
      ...(mfaPending ? { mfaPending } : {}),
      ...(appCred ? { appCred } : {}),
      methods,
      tokenHash: row.id_hash,
      auditId: row.audit_id,
      issuedAt: row.issued_at,
      expiresAt: row.expires_at,
    };
  }

  /** The admin role counts as cloud-wide only on the admin project (see policy/rules.ts). */
  private isCloudAdmin(roles: readonly string[], projectName: string | null, projectDomainId: string | null) {
    return (
      roles.includes('admin') &&
      projectName === this.config.adminProjectName &&
      projectDomainId === DEFAULT_DOMAIN_ID
    );
  }

  /**
   * A user's context on a project as it stands now, without a token: what an
   * approved request runs as (governance/approvals.ts). Null when the user or
   * project is gone or disabled, or the user no longer holds a role there.
   */
  async contextFor(userId: string, projectId: string, via: string): Promise<AuthContext | null> {
    const row = await this.db
      .selectFrom('users as u')
      .innerJoin('domains as d', 'd.id', 'u.domain_id')
      .innerJoin('projects as p', (j) => j.on('p.id', '=', projectId))
      .select(SUBJECT_COLUMNS)
      .where('u.id', '=', userId)
      .executeTakeFirst();
    if (row?.user_enabled !== 1 || row.domain_enabled !== 1 || row.project_enabled !== 1) return null;
    const roles = expandRoles(await this.roleNamesOn(userId, projectId));
    if (roles.length === 0) return null;
    const now = nowIso();
    return {
      userId,
      userName: row.user_name,
      userDomainId: row.user_domain_id,
      projectId,
      projectName: row.project_name,
      projectDomainId: row.project_domain_id,
      roles,
      isAdmin: this.isCloudAdmin(roles, row.project_name, row.project_domain_id),
      methods: [via],
      tokenHash: '',
      auditId: '',
      issuedAt: now,
      expiresAt: now,
    };
  }

  async revokeToken(token: string): Promise<boolean> {
    const r = await this.db
      .updateTable('tokens')
      .set({ revoked_at: nowIso() })
      .where('id_hash', '=', sha256Hex(token))
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    return Number(r.numUpdatedRows) > 0;
  }

  /** Drops token rows that expired more than a day ago. */
  async pruneTokens(): Promise<void> {
    const cutoff = new Date(Date.now() - 86_400_000).toISOString();
    await this.db.deleteFrom('tokens').where('expires_at', '<', cutoff).execute();
  }
}
