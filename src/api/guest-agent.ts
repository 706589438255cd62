import { Type } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import type { Static } from 'typebox';
import { GRANTABLE_COMMANDS } from '../compute/guest-agent.js';
import { BULWARK_PREFIX } from './bulwark.js';
import type { ApiContext } from './server.js';

const Id = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.-]+$' });
const IdParam = Type.Object({ id: Id });
// The filter (compute/guest-agent.ts) checks the request in depth; this only bounds its shape.
const AgentBody = Type.Object(
  {
    execute: Type.String({ minLength: 1, maxLength: 80 }),
    arguments: Type.Optional(
      Type.Record(Type.String({ maxLength: 64 }), Type.Unknown(), { maxProperties: 32 }),
    ),
  },
  { additionalProperties: false },
);
const GrantBody = Type.Object(
  {
    grant: Type.Object(
      {
        commands: Type.Array(Type.Union(GRANTABLE_COMMANDS.map((c) => Type.Literal(c))), {
          minItems: 1,
          maxItems: GRANTABLE_COMMANDS.length,
        }),
        expires_at: Type.String({ format: 'date-time' }),
        reason: Type.String({ minLength: 1, maxLength: 1024, pattern: '\\S' }),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);

/**
 * The guest agent, through the daemon's filter only (docs/passthrough-and-agent.md):
 * `POST /bulwark/v1/servers/{id}/guest-agent {execute, arguments}`, and the
 * cloud admin's per-server grants for guest-exec and guest-file-*.
 */
export function registerGuestAgentApi(app: FastifyInstance, ctx: ApiContext): void {
  const { guestAgent } = ctx.compute;
  const url = `${BULWARK_PREFIX}/servers/:id/guest-agent`;
  app.post(
    url,
    {
      schema: { params: IdParam, body: AgentBody },
      config: { action: 'server:guest_agent:execute', targetType: 'server' },
    },
    async (req) => {
      const body = req.body as Static<typeof AgentBody>;
      req.auditNote.reason = body.execute;
      return { result: await guestAgent.execute(req.auth!, (req.params as { id: string }).id, body) };
    },
  );
  app.get(
    `${url}/grants`,
    { schema: { params: IdParam }, config: { action: 'server:guest_agent:grants:list' } },
    async (req) => ({ grants: await guestAgent.grants(req.auth!, (req.params as { id: string }).id) }),
  );
  app.post(
    `${url}/grants`,
    {
      schema: { params: IdParam, body: GrantBody },
      config: { action: 'server:guest_agent:grants:create', targetType: 'server' },
    },
    async (req, reply) => {
      const { grant } = req.body as Static<typeof GrantBody>;
      req.auditNote.reason = `${grant.commands.join(',')} until ${grant.expires_at}: ${grant.reason}`;
      const g = await guestAgent.grant(req.auth!, (req.params as { id: string }).id, {
        commands: grant.commands,
        expiresAt: grant.expires_at,
        reason: grant.reason,
      });
      return reply.code(201).send({ grant: g });
    },
  );
  app.delete(
    `${url}/grants/:grant_id`,
    {
      schema: { params: Type.Object({ id: Id, grant_id: Id }) },
      config: { action: 'server:guest_agent:grants:delete', targetType: 'server' },
    },
    async (req, reply) => {
      const p = req.params as { id: string; grant_id: string };
      await guestAgent.revoke(req.auth!, p.id, p.grant_id);
      return reply.code(204).send();
    },
  );
}
