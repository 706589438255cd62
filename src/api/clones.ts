import { Type } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import type { Static } from 'typebox';
import { BULWARK_PREFIX } from './bulwark.js';
import type { ApiContext } from './server.js';

/**
 * `POST /bulwark/v1/servers/{id}/clone {"clone": {"name": ...}}` (docs/clones.md):
 * held for a second admin's approval (202 with the approval); once approved,
 * the clone is made from a copy of the stopped source's disk.
 */
const Body = Type.Object(
  {
    clone: Type.Object(
      { name: Type.String({ minLength: 1, maxLength: 255, pattern: '^[^\\x00-\\x1f]*$' }) },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);
const IdParam = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.-]+$' }),
});

export function registerCloneApi(app: FastifyInstance, ctx: ApiContext): void {
  const { servers } = ctx.compute;
  app.post(
    `${BULWARK_PREFIX}/servers/:id/clone`,
    { schema: { params: IdParam, body: Body }, config: { action: 'server:clone', targetType: 'server' } },
    async (req, reply) => {
      const { name } = (req.body as Static<typeof Body>).clone;
      // With the server-clone trigger on (the default) this throws PendingApproval: 202 with the approval.
      const s = await servers.clone(req.auth!, (req.params as { id: string }).id, name);
      req.auditNote.targetId = s.id;
      return reply.code(202).send({ server: { id: s.id, name: s.name, status: s.status } });
    },
  );
}
