import { Type } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import type { Static } from 'typebox';
import type { Template } from '../templates/templates.js';
import { BULWARK_PREFIX } from './bulwark.js';
import type { ApiContext } from './server.js';

/**
 * Templates under /bulwark/v1 (docs/templates.md): cloud admins make an image
 * a template version (202: it waits for a second admin's approval); anyone
 * with a token lists them. Servers are made from a template with the normal
 * `openstack server create --image <template image>`.
 */
const Body = Type.Object(
  {
    template: Type.Object(
      {
        name: Type.String({ minLength: 1, maxLength: 64 }),
        image_id: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.-]+$' }),
        description: Type.Optional(Type.String({ maxLength: 255, pattern: '^[^\\x00-\\x1f]*$' })),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);
const IdParam = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.-]+$' }),
});
const ListQuery = Type.Object(
  { name: Type.Optional(Type.String({ maxLength: 64 })) },
  { additionalProperties: false },
);

const view = (t: Template) => ({
  id: t.id,
  name: t.name,
  version: t.version,
  image_id: t.image_id,
  sha256: t.sha256,
  description: t.description,
  status: t.status,
  created_by: t.created_by,
  approval_id: t.approval_id,
  approved_by: t.approved_by,
  approved_at: t.approved_at,
  created_at: t.created_at,
});

export function registerTemplateApi(app: FastifyInstance, ctx: ApiContext): void {
  const { templates } = ctx;
  app.post(
    `${BULWARK_PREFIX}/templates`,
    { schema: { body: Body }, config: { action: 'template:create', targetType: 'template' } },
    async (req, reply) => {
      const b = (req.body as Static<typeof Body>).template;
      const { template, approval } = await templates.create(req.auth!, {
        name: b.name,
        imageId: b.image_id,
        description: b.description,
      });
      req.auditNote.targetId = template.id;
      return reply.code(202).send({
        template: view(template),
        approval,
        message: `Template ${template.name} v${template.version} waits for another administrator: ${approval.approve_with}`,
      });
    },
  );
  app.get(
    `${BULWARK_PREFIX}/templates`,
    { schema: { querystring: ListQuery }, config: { action: 'template:list' } },
    async (req) => ({
      templates: (await templates.list({ name: (req.query as Static<typeof ListQuery>).name })).map(view),
    }),
  );
  app.get(
    `${BULWARK_PREFIX}/templates/:id`,
    { schema: { params: IdParam }, config: { action: 'template:show' } },
    async (req) => ({ template: view(await templates.get((req.params as { id: string }).id)) }),
  );
}
