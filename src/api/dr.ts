import { Type } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import type { Static } from 'typebox';
import { BULWARK_PREFIX } from './bulwark.js';
import type { ApiContext } from './server.js';

const Opt = Type.Optional;
const Id = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.-]+$' });
const IdParam = Type.Object({ id: Id });
const Seconds = Type.Integer({ minimum: 1, maximum: 365 * 86400 });
const TargetBody = Type.Object(
  {
    target: Type.Object(
      {
        rpo_s: Seconds,
        rto_s: Seconds,
        boot_marker: Opt(Type.String({ minLength: 1, maxLength: 200, pattern: '^[^\\x00-\\x1f]*$' })),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);
const DrillBody = Type.Object(
  {
    drill: Type.Object(
      {
        server_ids: Opt(Type.Array(Id, { maxItems: 100 })),
        recovery_key: Opt(Type.String({ minLength: 1, maxLength: 4096 })),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);
const DrillQuery = Type.Object({ run_id: Opt(Id), server_id: Opt(Id) }, { additionalProperties: false });

/**
 * DR targets and drills under /bulwark/v1/dr (docs/dr.md): admins set the
 * per-server RPO/RTO targets and run drills; the project reads both.
 */
export async function registerDrApi(app: FastifyInstance, ctx: ApiContext): Promise<void> {
  const { dr } = ctx;
  const base = `${BULWARK_PREFIX}/dr`;
  app.get(`${base}/targets`, { config: { action: 'dr:targets:list' } }, async (req) => ({
    targets: await dr.listPolicies(req.auth!),
  }));
  app.put(
    `${base}/targets/:id`,
    {
      schema: { params: IdParam, body: TargetBody },
      config: { action: 'dr:targets:set', targetType: 'server' },
    },
    async (req) => {
      const t = (req.body as Static<typeof TargetBody>).target;
      return {
        target: await dr.setPolicy(req.auth!, (req.params as Static<typeof IdParam>).id, {
          rpoS: t.rpo_s,
          rtoS: t.rto_s,
          bootMarker: t.boot_marker,
        }),
      };
    },
  );
  app.delete(
    `${base}/targets/:id`,
    { schema: { params: IdParam }, config: { action: 'dr:targets:delete', targetType: 'server' } },
    async (req, reply) => {
      await dr.deletePolicy(req.auth!, (req.params as Static<typeof IdParam>).id);
      return reply.code(204).send();
    },
  );
  app.post(
    `${base}/drills`,
    { schema: { body: DrillBody }, config: { action: 'dr:drills:create', targetType: 'dr_drill' } },
    async (req, reply) => {
      const b = (req.body as Static<typeof DrillBody>).drill;
      const r = await dr.drill(req.auth!, b.server_ids, b.recovery_key);
      req.auditNote.targetId = r.run_id;
      return reply.code(202).send({ run: r });
    },
  );
  app.get(
    `${base}/drills`,
    { schema: { querystring: DrillQuery }, config: { action: 'dr:drills:list' } },
    async (req) => {
      const q = req.query as Static<typeof DrillQuery>;
      return { drills: await dr.listDrills(req.auth!, { runId: q.run_id, serverId: q.server_id }) };
    },
  );
  app.get(
    `${base}/drills/:id`,
    { schema: { params: IdParam }, config: { action: 'dr:drills:show' } },
    async (req) => ({ drill: await dr.getDrill(req.auth!, (req.params as Static<typeof IdParam>).id) }),
  );
}
