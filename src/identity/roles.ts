import { badRequest, conflict, notFound } from '../errors.js';
import { keystoneId, nowIso } from '../util/ids.js';
import { Users } from './users.js';

/** Roles and their assignments to users on projects. */
export class Roles extends Users {
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

  protected async roleNamesOn(userId: string, projectId: string): Promise<string[]> {
    const rows = await this.db
      .selectFrom('role_assignments as a')
      .innerJoin('roles as r', 'r.id', 'a.role_id')
      .select('r.name')
      .where('a.user_id', '=', userId)
      .where('a.project_id', '=', projectId)
      .execute();
    return rows.map((r) => r.name);
  }
}
