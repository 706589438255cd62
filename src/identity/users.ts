import type { Selectable } from 'kysely';
import { BulwarkError, badRequest, conflict } from '../errors.js';
import type { UsersTable } from '../store/schema.js';
import { keystoneId, nowIso } from '../util/ids.js';
import { loginFailed, type UserRef } from './config.js';
import { Directory } from './directory.js';
import { hashPassword, verifyPassword } from './passwords.js';

/** Users and their passwords (the rules of IdentityPolicy), and finding one for a login. */
export class Users extends Directory {
  listUsers(filter: { name?: string | undefined; domainId?: string | undefined } = {}) {
    return this.listNamed('users', filter);
  }

  getUser(id: string): Promise<Selectable<UsersTable>> {
    return this.rowOr404('users', 'user', id);
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
    if (await this.nameTaken('users', input.domainId, input.name))
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
      if (await this.nameTaken('users', u.domain_id, patch.name))
        throw conflict(`A user named ${patch.name} already exists in this domain.`);
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
}
