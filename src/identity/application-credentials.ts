import type { Selectable } from 'kysely';
import { BulwarkError, badRequest, conflict, forbidden, notFound } from '../errors.js';
import { type AuthContext, expandRoles } from '../policy/context.js';
import type { Store } from '../store/database.js';
import type { ApplicationCredentialsTable } from '../store/schema.js';
import { keystoneId, nowIso, randomSecret } from '../util/ids.js';
import type { AccessRule } from './access-rules.js';
import { loginFailed, type UserRef } from './config.js';
import { hashPassword, verifyPassword } from './passwords.js';
import type { IdentityService } from './service.js';

export type ApplicationCredential = Selectable<ApplicationCredentialsTable>;

/**
 * Keystone application credentials, for automation: made by a user for the
 * project of the token that creates it, with a subset of that user's roles,
 * an optional expiry and access rules. The secret (generated unless given)
 * is returned once and kept only as an argon2 hash.
 */
export class ApplicationCredentialService {
  constructor(
    private readonly store: Store,
    private readonly identity: IdentityService,
  ) {}

  private get db() {
    return this.store.db;
  }

  async create(
    caller: AuthContext,
    input: {
      name: string;
      description?: string | undefined;
      secret?: string | undefined;
      expiresAt?: string | undefined;
      roles?: readonly { id?: string | undefined; name?: string | undefined }[] | undefined;
      accessRules?: readonly Omit<AccessRule, 'id'>[] | undefined;
      unrestricted?: boolean | undefined;
    },
  ): Promise<{ row: ApplicationCredential; secret: string }> {
    if (caller.projectId === null)
      throw badRequest('An application credential belongs to a project: use a project-scoped token.');
    // Keystone: a credential made from another one (not unrestricted) could outlive or widen it.
    if (caller.appCred && !caller.appCred.unrestricted)
      throw forbidden(
        'A token from a restricted application credential cannot create application credentials.',
      );
    const expiresAt =
      input.expiresAt === undefined || /(Z|[+-]\d{2}:?\d{2})$/.test(input.expiresAt)
        ? input.expiresAt
        : `${input.expiresAt}Z`;
    if (expiresAt !== undefined) {
      const t = Date.parse(expiresAt);
      if (Number.isNaN(t)) throw badRequest(`expires_at ${expiresAt} is not an ISO 8601 time.`);
      if (t <= Date.now()) throw badRequest('expires_at is in the past.');
    }
    const held = (
      await this.identity.listAssignments({ userId: caller.userId, projectId: caller.projectId })
    ).map((a) => a.role_name);
    // Implied roles count: a member may delegate just `reader`.
    const effective = expandRoles(held);
    const all = await this.identity.listRoles();
    const wanted =
      input.roles === undefined || input.roles.length === 0
        ? held
        : input.roles.map((r) => {
            const role = all.find((x) => x.id === r.id || x.name === r.name);
            if (!role) throw notFound('role', r.id ?? r.name ?? '');
            return role.name;
          });
    const extra = wanted.filter((r) => !effective.includes(r));
    if (extra.length > 0)
      throw forbidden(
        `You do not hold the role(s) ${extra.join(', ')} on this project, so cannot delegate them.`,
      );
    const dup = await this.db
      .selectFrom('application_credentials')
      .select('id')
      .where('user_id', '=', caller.userId)
      .where('name', '=', input.name)
      .executeTakeFirst();
    if (dup) throw conflict(`An application credential named ${input.name} already exists for this user.`);
    const secret = input.secret ?? randomSecret(48);
    const row: ApplicationCredential = {
      id: keystoneId(),
      user_id: caller.userId,
      project_id: caller.projectId,
      name: input.name,
      description: input.description ?? '',
      secret_hash: await hashPassword(secret),
      expires_at: expiresAt === undefined ? null : new Date(expiresAt).toISOString(),
      roles: JSON.stringify([...new Set(wanted)].sort()),
      access_rules: JSON.stringify((input.accessRules ?? []).map((r) => ({ id: keystoneId(), ...r }))),
      unrestricted: input.unrestricted ? 1 : 0,
      created_at: nowIso(),
    };
    await this.db.insertInto('application_credentials').values(row).execute();
    return { row, secret };
  }

  list(userId: string, name?: string): Promise<ApplicationCredential[]> {
    let q = this.db
      .selectFrom('application_credentials')
      .selectAll()
      .where('user_id', '=', userId)
      .orderBy('name');
    if (name !== undefined) q = q.where('name', '=', name);
    return q.execute();
  }

  async get(userId: string, id: string): Promise<ApplicationCredential> {
    const row = await this.db
      .selectFrom('application_credentials')
      .selectAll()
      .where('user_id', '=', userId)
      .where('id', '=', id)
      .executeTakeFirst();
    if (!row) throw notFound('application credential', id);
    return row;
  }

  async delete(userId: string, id: string): Promise<void> {
    await this.get(userId, id);
    await this.db.transaction().execute(async (tx) => {
      await tx.updateTable('tokens').set({ revoked_at: nowIso() }).where('app_cred_id', '=', id).execute();
      await tx.deleteFrom('application_credentials').where('id', '=', id).execute();
    });
  }

  /** Keystone's application_credential auth method: the credential's own project, roles and expiry. */
  async authenticate(
    ref: { id?: string | undefined; name?: string | undefined; user?: UserRef | undefined },
    secret: string,
  ) {
    let row: ApplicationCredential | undefined;
    if (ref.id !== undefined) {
      row = await this.db
        .selectFrom('application_credentials')
        .selectAll()
        .where('id', '=', ref.id)
        .executeTakeFirst();
    } else if (ref.name !== undefined && ref.user !== undefined) {
      const user = await this.identity.findUser(ref.user);
      if (user)
        row = await this.db
          .selectFrom('application_credentials')
          .selectAll()
          .where('user_id', '=', user.id)
          .where('name', '=', ref.name)
          .executeTakeFirst();
    } else {
      throw badRequest('An application credential is named by id, or by name with its user.');
    }
    const ok = await verifyPassword(row?.secret_hash ?? null, secret);
    if (!row) throw loginFailed('unknown application credential');
    if (!ok) throw loginFailed('wrong application credential secret');
    if (row.expires_at !== null && row.expires_at <= nowIso())
      throw new BulwarkError('Unauthorized', 'The application credential has expired; create a new one.', {
        auditReason: 'application credential expired',
      });
    const user = await this.identity.getUser(row.user_id);
    await this.identity.checkUsable(user, false);
    const ttl = this.identity.config.tokenTtlSeconds;
    const left = row.expires_at === null ? ttl : Math.floor((Date.parse(row.expires_at) - Date.now()) / 1000);
    return this.identity.mintToken(
      row.user_id,
      row.project_id,
      ['application_credential'],
      Math.min(ttl, left),
      row.id,
    );
  }
}
