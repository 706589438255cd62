import { Type } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { badRequest } from '../errors.js';
import { DEFAULT_DOMAIN_ID as DEFAULT_DOMAIN } from '../identity/config.js';
import { domainView, projectView } from '../identity/records.js';
import { Id, IdParam, listLinks, Name, NullableString, Opt, PREFIX } from './identity-schemas.js';
import type { ApiContext } from './server.js';

/** Keystone's domains and projects. */
export async function registerDirectoryRoutes(
  app: FastifyInstance,
  ctx: ApiContext,
  base: string,
): Promise<void> {
  const { identity, publicUrl } = ctx;
  // ---- domains ---------------------------------------------------------------
  const DomainFields = {
    name: Name,
    description: Opt(NullableString),
    enabled: Opt(Type.Boolean()),
    tags: Opt(Type.Array(Type.String({ maxLength: 255 }), { maxItems: 0 })),
    options: Opt(Type.Object({}, { additionalProperties: false })),
  };
  app.get(
    `${PREFIX}/domains`,
    {
      schema: { querystring: Type.Object({ name: Opt(Type.String()), enabled: Opt(Type.String()) }) },
      config: { action: 'identity:list_domains' },
    },
    async (req) => ({
      domains: (await identity.listDomains({ name: (req.query as { name?: string }).name })).map((d) =>
        domainView(d, base),
      ),
      links: listLinks(req, publicUrl),
    }),
  );
  app.get(
    `${PREFIX}/domains/:id`,
    { schema: { params: IdParam }, config: { action: 'identity:get_domain' } },
    async (req) => ({
      domain: domainView(await identity.getDomain((req.params as { id: string }).id), base),
    }),
  );
  app.post(
    `${PREFIX}/domains`,
    {
      schema: {
        body: Type.Object(
          { domain: Type.Object(DomainFields, { additionalProperties: false }) },
          { additionalProperties: false },
        ),
      },
      config: { action: 'identity:create_domain', targetType: 'domain' },
    },
    async (req, reply) => {
      const { domain } = req.body as {
        domain: { name: string; description?: string | null; enabled?: boolean };
      };
      const d = await identity.createDomain({
        name: domain.name,
        description: domain.description ?? undefined,
        enabled: domain.enabled,
      });
      req.auditNote.targetId = d.id;
      return reply.code(201).send({ domain: domainView(d, base) });
    },
  );
  app.patch(
    `${PREFIX}/domains/:id`,
    {
      schema: {
        params: IdParam,
        body: Type.Object(
          { domain: Type.Object({ ...DomainFields, name: Opt(Name) }, { additionalProperties: false }) },
          { additionalProperties: false },
        ),
      },
      config: { action: 'identity:update_domain', targetType: 'domain' },
    },
    async (req) => {
      const { domain } = req.body as {
        domain: { name?: string; description?: string | null; enabled?: boolean };
      };
      return {
        domain: domainView(
          await identity.updateDomain((req.params as { id: string }).id, {
            name: domain.name,
            description: domain.description ?? undefined,
            enabled: domain.enabled,
          }),
          base,
        ),
      };
    },
  );
  app.delete(
    `${PREFIX}/domains/:id`,
    { schema: { params: IdParam }, config: { action: 'identity:delete_domain', targetType: 'domain' } },
    async (req, reply) => {
      await identity.deleteDomain((req.params as { id: string }).id);
      return reply.code(204).send();
    },
  );

  // ---- projects ------------------------------------------------------------
  const ProjectFields = {
    name: Name,
    domain_id: Opt(Type.Union([Id, Type.Null()])),
    parent_id: Opt(Type.Union([Id, Type.Null()])),
    description: Opt(NullableString),
    enabled: Opt(Type.Boolean()),
    is_domain: Opt(Type.Literal(false)),
    tags: Opt(Type.Array(Type.String({ maxLength: 255 }), { maxItems: 0 })),
    options: Opt(Type.Object({}, { additionalProperties: false })),
  };
  app.get(
    `${PREFIX}/projects`,
    {
      schema: {
        querystring: Type.Object({
          name: Opt(Type.String()),
          domain_id: Opt(Type.String()),
          enabled: Opt(Type.String()),
        }),
      },
      config: { action: 'identity:list_projects' },
    },
    async (req) => {
      const q = req.query as { name?: string; domain_id?: string };
      return {
        projects: (await identity.listProjects({ name: q.name, domainId: q.domain_id })).map((p) =>
          projectView(p, base),
        ),
        links: listLinks(req, publicUrl),
      };
    },
  );
  app.get(
    `${PREFIX}/projects/:id`,
    {
      schema: { params: IdParam },
      config: {
        action: 'identity:get_project',
        target: (r) => ({ project_id: (r.params as { id: string }).id }),
      },
    },
    async (req) => ({
      project: projectView(await identity.getProject((req.params as { id: string }).id), base),
    }),
  );
  app.post(
    `${PREFIX}/projects`,
    {
      schema: {
        body: Type.Object(
          { project: Type.Object(ProjectFields, { additionalProperties: false }) },
          { additionalProperties: false },
        ),
      },
      config: { action: 'identity:create_project', targetType: 'project' },
    },
    async (req, reply) => {
      const { project } = req.body as {
        project: {
          name: string;
          domain_id?: string | null;
          parent_id?: string | null;
          description?: string | null;
          enabled?: boolean;
        };
      };
      const domainId = project.domain_id ?? DEFAULT_DOMAIN;
      if (project.parent_id && project.parent_id !== domainId) {
        throw badRequest('Nested projects are not supported: parent_id must be the domain.');
      }
      const p = await identity.createProject({
        name: project.name,
        domainId,
        description: project.description ?? undefined,
        enabled: project.enabled,
      });
      req.auditNote.targetId = p.id;
      return reply.code(201).send({ project: projectView(p, base) });
    },
  );
  app.patch(
    `${PREFIX}/projects/:id`,
    {
      schema: {
        params: IdParam,
        body: Type.Object(
          { project: Type.Object({ ...ProjectFields, name: Opt(Name) }, { additionalProperties: false }) },
          { additionalProperties: false },
        ),
      },
      config: { action: 'identity:update_project', targetType: 'project' },
    },
    async (req) => {
      const { project } = req.body as {
        project: { name?: string; description?: string | null; enabled?: boolean };
      };
      return {
        project: projectView(
          await identity.updateProject((req.params as { id: string }).id, {
            name: project.name,
            description: project.description ?? undefined,
            enabled: project.enabled,
          }),
          base,
        ),
      };
    },
  );
  app.delete(
    `${PREFIX}/projects/:id`,
    { schema: { params: IdParam }, config: { action: 'identity:delete_project', targetType: 'project' } },
    async (req, reply) => {
      await identity.deleteProject((req.params as { id: string }).id);
      return reply.code(204).send();
    },
  );
}
