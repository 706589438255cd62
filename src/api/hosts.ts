import { Type } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import type { Static } from 'typebox';
import type { Evacuation, EvacuationResult } from '../compute/evacuation.js';
import type { HostRow } from '../compute/hosts.js';
import { unavailable } from '../errors.js';
import { ReportSchema } from '../host/agent/report.js';
import { BULWARK_PREFIX } from './bulwark.js';
import type { ApiContext } from './server.js';

const TokenBody = Type.Object(
  {
    join_token: Type.Object(
      {
        host: Type.String({ minLength: 1, maxLength: 63 }),
        ttl: Type.Optional(Type.Integer({ minimum: 1, maximum: 86_400 })),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);
const JoinBody = Type.Object(
  {
    join: Type.Object(
      {
        token: Type.String({ minLength: 1, maxLength: 128 }),
        csr: Type.String({ minLength: 1, maxLength: 8192 }),
        ...ReportSchema.properties,
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);

/**
 * Hosts and agent enrollment under /bulwark/v1 (docs/multi-host.md). The
 * join route is public: the one-time token is the credential, checked by the
 * enrollment service; everything after it runs on the mutual-TLS agent
 * endpoint (host/agent/server.ts).
 */
export function registerHostApi(app: FastifyInstance, ctx: ApiContext): void {
  const { hosts } = ctx.compute;
  const enrollment = () => {
    if (!ctx.enrollment)
      throw unavailable(
        'Agent enrollment is not enabled on this daemon; start it with --agent-listen HOST:PORT.',
      );
    return ctx.enrollment;
  };
  const view = (h: HostRow) => ({
    name: h.name,
    zone: h.zone,
    aggregates: JSON.parse(h.aggregates) as string[],
    features: JSON.parse(h.features) as string[],
    capacity: { vcpus: h.vcpus, ram_mib: h.ram_mib, disk_gib: h.disk_gib },
    ratios: JSON.parse(h.ratios) as Record<string, number>,
    state: h.state,
    local: h.local === 1,
    health: JSON.parse(h.health) as Record<string, unknown>,
    last_heartbeat: h.last_heartbeat,
  });

  app.get(`${BULWARK_PREFIX}/hosts`, { config: { action: 'bulwark:hosts:list' } }, async () => ({
    hosts: (await hosts.list()).map(view),
  }));
  const NameParam = Type.Object({ name: Type.String({ minLength: 1, maxLength: 63 }) });
  const StateBody = Type.Object(
    {
      host: Type.Object(
        { state: Type.Union([Type.Literal('up'), Type.Literal('disabled')]) },
        { additionalProperties: false },
      ),
    },
    { additionalProperties: false },
  );
  // An admin takes a host out of scheduling (disabled) or back in; its servers are not touched.
  app.patch(
    `${BULWARK_PREFIX}/hosts/:name`,
    {
      schema: { params: NameParam, body: StateBody },
      config: { action: 'bulwark:hosts:update', targetType: 'host' },
    },
    async (req) => {
      const { name } = req.params as Static<typeof NameParam>;
      await hosts.setState(name, (req.body as Static<typeof StateBody>).host.state);
      req.auditNote.targetId = name;
      return { host: view(await hosts.get(name)) };
    },
  );
  // Evacuation (docs/multi-host.md): the host is disabled, then every server moves off it; a task to poll.
  const evacuationView = (e: Evacuation) => ({
    id: e.id,
    host: e.host,
    status: e.status,
    total: e.total,
    done: e.done,
    servers: JSON.parse(e.results) as EvacuationResult[],
    requested_by: e.requested_by,
    created_at: e.created_at,
    updated_at: e.updated_at,
  });
  app.post(
    `${BULWARK_PREFIX}/hosts/:name/evacuate`,
    {
      schema: { params: NameParam, body: Type.Object({}, { additionalProperties: false }) },
      config: { action: 'bulwark:hosts:evacuate', targetType: 'host' },
    },
    async (req, reply) => {
      const { name } = req.params as Static<typeof NameParam>;
      req.auditNote.targetId = name;
      const e = await ctx.compute.evacuations.start(req.auth!, name);
      return reply.code(202).send({ evacuation: evacuationView(e) });
    },
  );
  app.get(
    `${BULWARK_PREFIX}/evacuations/:id`,
    {
      schema: {
        params: Type.Object({
          id: Type.String({ pattern: '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' }),
        }),
      },
      config: { action: 'bulwark:evacuations:show' },
    },
    async (req) => ({
      evacuation: evacuationView(await ctx.compute.evacuations.get((req.params as { id: string }).id)),
    }),
  );
  app.post(
    `${BULWARK_PREFIX}/host-join-tokens`,
    {
      schema: { body: TokenBody },
      config: { action: 'bulwark:hosts:join_token:create', targetType: 'host' },
    },
    async (req, reply) => {
      const b = (req.body as Static<typeof TokenBody>).join_token;
      const t = await enrollment().createToken(req.auth!, b.host, b.ttl);
      req.auditNote.targetId = b.host;
      return reply.code(201).send({
        join_token: {
          id: t.id,
          token: t.token,
          host: t.hostName,
          expires_at: t.expiresAt,
          ca_hash: t.caHash,
        },
      });
    },
  );
  app.post(
    `${BULWARK_PREFIX}/agent/join`,
    { schema: { body: JoinBody }, config: { action: 'bulwark:agent:join', targetType: 'host' } },
    async (req) => {
      const { token, csr, ...report } = (req.body as Static<typeof JoinBody>).join;
      const joined = await enrollment().join(token, csr, report);
      req.auditNote.targetId = joined.hostName;
      return { host: { name: joined.hostName, certificate: joined.certPem, ca: joined.caPem } };
    },
  );
}
