import { Type } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import type { Static } from 'typebox';
import { BULWARK_PREFIX } from './bulwark.js';
import type { ApiContext } from './server.js';

/**
 * VM profiles (docs/profiles.md): `POST /bulwark/v1/profiles` imports a
 * Hyper-NixOS style JSON profile as a server (`dry_run`: only checks and says
 * what it would use); `GET /bulwark/v1/profiles/{server_id}` exports a server
 * as one. The profile itself is checked by compute/profile-format.ts, so a
 * refusal names the field and why.
 */
const Body = Type.Object(
  {
    profile: Type.Object({}, { additionalProperties: true, maxProperties: 32 }),
    dry_run: Type.Optional(Type.Boolean()),
    /** Administrators: make a private flavor when none matches. */
    create_flavor: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
const IdParam = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.-]+$' }),
});

export function registerProfileApi(app: FastifyInstance, ctx: ApiContext): void {
  const { profiles } = ctx;
  app.post(
    `${BULWARK_PREFIX}/profiles`,
    { schema: { body: Body }, config: { action: 'profile:import', targetType: 'server' } },
    async (req, reply) => {
      const b = req.body as Static<typeof Body>;
      const r = await profiles.import(req.auth!, b.profile, {
        dryRun: b.dry_run === true,
        createFlavor: b.create_flavor === true,
      });
      if (r.server) req.auditNote.targetId = r.server.id;
      return reply.code(r.dryRun ? 200 : 202).send({
        import: {
          dry_run: r.dryRun,
          server: r.server,
          flavor: r.flavor,
          image: r.image,
          network: r.network,
        },
      });
    },
  );
  app.get(
    `${BULWARK_PREFIX}/profiles/:id`,
    { schema: { params: IdParam }, config: { action: 'profile:export', targetType: 'server' } },
    async (req) => ({ profile: await profiles.export(req.auth!, (req.params as { id: string }).id) }),
  );
}
