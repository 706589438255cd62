import { Type } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import type { Static } from 'typebox';
import type { ApiContext } from './server.js';

const IdParam = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.-]+$' }),
});
const Body = Type.Object(
  {
    quarantine: Type.Object(
      { reason: Type.String({ minLength: 1, maxLength: 1024, pattern: '\\S' }) },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);

/**
 * Quarantine, a Nova-style server extension (`/servers/{id}/os-quarantine`):
 * POST quarantines (suspend, isolate, forensic snapshot; answers when all
 * three have run), GET shows the record, DELETE lifts it. Admin only, in the
 * policy table.
 */
export function registerQuarantineApi(app: FastifyInstance, ctx: ApiContext, prefix: string): void {
  const { quarantine } = ctx.compute;
  const url = `${prefix}/servers/:id/os-quarantine`;
  app.post(
    url,
    {
      schema: { params: IdParam, body: Body },
      config: { action: 'compute:servers:quarantine:create', targetType: 'server' },
    },
    async (req) => {
      const { reason } = (req.body as Static<typeof Body>).quarantine;
      req.auditNote.reason = reason;
      return {
        quarantine: await quarantine.quarantine(req.auth!, (req.params as { id: string }).id, reason),
      };
    },
  );
  app.get(
    url,
    { schema: { params: IdParam }, config: { action: 'compute:servers:quarantine:show' } },
    async (req) => ({ quarantine: await quarantine.show(req.auth!, (req.params as { id: string }).id) }),
  );
  app.delete(
    url,
    {
      schema: { params: IdParam },
      config: { action: 'compute:servers:quarantine:delete', targetType: 'server' },
    },
    async (req, reply) => {
      await quarantine.lift(req.auth!, (req.params as { id: string }).id);
      return reply.code(204).send();
    },
  );
}
