import type { Selectable } from 'kysely';
import { type AuthContext, expandRoles } from '../policy/context.js';
import type { ProjectsTable } from '../store/schema.js';
import { nowIso, randomSecret, sha256Hex } from '../util/ids.js';
import type { AccessRule } from './access-rules.js';
import { DEFAULT_DOMAIN_ID, loginFailed, type ProjectRef, SECOND_FACTORS } from './config.js';
import { Roles } from './roles.js';

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

/**
 * The identity service: domains and projects (directory.ts), users
 * (users.ts) and roles (roles.ts), and here what they add up to: scoping a
 * login, tokens, and the caller's AuthContext.
 */
export class IdentityService extends Roles {
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
