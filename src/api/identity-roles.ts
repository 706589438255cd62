import { Type } from '@fastify/type-provider-typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { forbidden, notFound } from '../errors.js';
import { roleView } from '../identity/records.js';
import { Id, IdParam, listLinks, Name, NullableString, Opt, PREFIX } from './identity-schemas.js';
import type { ApiContext } from './server.js';

/** Keystone's roles, grants of a role to a user on a project, and role assignments. */
export async function registerRoleRoutes(app: FastifyInstance, ctx: ApiContext, base: string): Promise<void> {
  const { identity, publicUrl } = ctx;
  app.get(
    `${PREFIX}/roles`,
    {
      schema: { querystring: Type.Object({ name: Opt(Type.String()), domain_id: Opt(Type.String()) }) },
      config: { action: 'identity:list_roles' },
    },
    async (req) => ({
      roles: (await identity.listRoles({ name: (req.query as { name?: string }).name })).map((r) =>
        roleView(r, base),
      ),
      links: listLinks(req, publicUrl),
    }),
  );
  app.get(
    `${PREFIX}/roles/:id`,
    { schema: { params: IdParam }, config: { action: 'identity:get_role' } },
    async (req) => ({
      role: roleView(await identity.getRole((req.params as { id: string }).id), base),
    }),
  );
  app.post(
    `${PREFIX}/roles`,
    {
      schema: {
        body: Type.Object(
          {
            role: Type.Object(
              {
                name: Name,
                description: Opt(NullableString),
                domain_id: Opt(Type.Null()),
                options: Opt(Type.Object({}, { additionalProperties: false })),
              },
              { additionalProperties: false },
            ),
          },
          { additionalProperties: false },
        ),
      },
      config: { action: 'identity:create_role', targetType: 'role' },
    },
    async (req, reply) => {
      const { role } = req.body as { role: { name: string; description?: string | null } };
      const r = await identity.createRole({ name: role.name, description: role.description ?? undefined });
      req.auditNote.targetId = r.id;
      return reply.code(201).send({ role: roleView(r, base) });
    },
  );
  app.delete(
    `${PREFIX}/roles/:id`,
    { schema: { params: IdParam }, config: { action: 'identity:delete_role', targetType: 'role' } },
    async (req, reply) => {
      await identity.deleteRole((req.params as { id: string }).id);
      return reply.code(204).send();
    },
  );

  const GrantParams = Type.Object({ project_id: Id, user_id: Id, role_id: Id });
  type G = { project_id: string; user_id: string; role_id: string };
  const grantPath = `${PREFIX}/projects/:project_id/users/:user_id/roles/:role_id`;
  const noteGrant = (req: FastifyRequest) => {
    const p = req.params as G;
    req.auditNote.targetId = `${p.role_id}@${p.user_id}/${p.project_id}`;
    return p;
  };
  app.put(
    grantPath,
    {
      schema: { params: GrantParams },
      config: { action: 'identity:create_grant', targetType: 'role_assignment' },
    },
    async (req, reply) => {
      const p = noteGrant(req);
      await identity.grant(p.project_id, p.user_id, p.role_id);
      return reply.code(204).send();
    },
  );
  app.head(
    grantPath,
    { schema: { params: GrantParams }, config: { action: 'identity:check_grant' } },
    async (req, reply) => {
      const p = req.params as G;
      if (!(await identity.hasGrant(p.project_id, p.user_id, p.role_id)))
        throw notFound('role assignment', p.role_id);
      return reply.code(204).send();
    },
  );
  app.delete(
    grantPath,
    {
      schema: { params: GrantParams },
      config: { action: 'identity:revoke_grant', targetType: 'role_assignment' },
    },
    async (req, reply) => {
      const p = noteGrant(req);
      await identity.revoke(p.project_id, p.user_id, p.role_id, req.auth!.userId);
      return reply.code(204).send();
    },
  );
  app.get(
    `${PREFIX}/projects/:project_id/users/:user_id/roles`,
    {
      schema: { params: Type.Object({ project_id: Id, user_id: Id }) },
      config: {
        action: 'identity:list_role_assignments',
        target: (r) => ({ user_id: (r.params as { user_id: string }).user_id }),
      },
    },
    async (req) => {
      const p = req.params as { project_id: string; user_id: string };
      const rows = await identity.listAssignments({ projectId: p.project_id, userId: p.user_id });
      const roles = await identity.listRoles();
      return {
        roles: roles.filter((r) => rows.some((a) => a.role_id === r.id)).map((r) => roleView(r, base)),
        links: listLinks(req, publicUrl),
      };
    },
  );

  const AssignmentQuery = Type.Object({
    'user.id': Opt(Type.String({ maxLength: 64 })),
    'scope.project.id': Opt(Type.String({ maxLength: 64 })),
    'role.id': Opt(Type.String({ maxLength: 64 })),
    include_names: Opt(Type.String()),
    effective: Opt(Type.String()),
    include_subtree: Opt(Type.String()),
  });
  app.get(
    `${PREFIX}/role_assignments`,
    {
      schema: { querystring: AssignmentQuery },
      config: { action: 'identity:list_role_assignments', target: () => ({}) },
    },
    async (req) => {
      const q = req.query as Record<string, string | undefined>;
      const auth = req.auth!;
      // Non-admins may list only their own assignments (the `self` rule needs the filter).
      if (!auth.isAdmin && q['user.id'] !== auth.userId) {
        throw forbidden('You may only list your own role assignments: add --user with your own user.');
      }
      const names = q.include_names !== undefined && q.include_names !== 'false' && q.include_names !== '0';
      const rows = await identity.listAssignments({
        userId: q['user.id'],
        projectId: q['scope.project.id'],
        roleId: q['role.id'],
      });
      const domains = names
        ? new Map((await identity.listDomains()).map((d) => [d.id, d.name]))
        : new Map<string, string>();
      return {
        role_assignments: rows.map((a) => ({
          role: names ? { id: a.role_id, name: a.role_name } : { id: a.role_id },
          user: names
            ? {
                id: a.user_id,
                name: a.user_name,
                domain: { id: a.user_domain_id, name: domains.get(a.user_domain_id) },
              }
            : { id: a.user_id },
          scope: {
            project: names
              ? {
                  id: a.project_id,
                  name: a.project_name,
                  domain: { id: a.project_domain_id, name: domains.get(a.project_domain_id) },
                }
              : { id: a.project_id },
          },
          links: { assignment: `${base}/projects/${a.project_id}/users/${a.user_id}/roles/${a.role_id}` },
        })),
        links: listLinks(req, publicUrl),
      };
    },
  );
}
