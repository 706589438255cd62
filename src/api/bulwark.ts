import { Type } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import type { Static } from 'typebox';
import { verifyAuditChain } from '../audit/verify.js';
import type { ApiContext } from './server.js';

export const BULWARK_PREFIX = '/bulwark/v1';
const Opt = Type.Optional;

/** Bulwark's own extensions, in OpenStack's style, under one prefix. */
export async function registerBulwarkApi(app: FastifyInstance, ctx: ApiContext): Promise<void> {
  const { store } = ctx;
  ctx.services.push({ type: 'bulwark', name: 'bulwark', path: BULWARK_PREFIX });

  app.get(BULWARK_PREFIX, { config: { action: 'bulwark:version' } }, async () => ({
    version: {
      id: 'v1',
      status: 'CURRENT',
      links: [{ rel: 'self', href: `${ctx.publicUrl}${BULWARK_PREFIX}` }],
    },
  }));
  app.get('/openapi.json', { config: { action: 'bulwark:openapi' } }, async () => app.swagger());

  const AuditQuery = Type.Object(
    {
      since: Opt(Type.String({ format: 'date-time' })),
      until: Opt(Type.String({ format: 'date-time' })),
      user: Opt(Type.String({ maxLength: 255 })),
      action: Opt(Type.String({ maxLength: 128 })),
      outcome: Opt(Type.Union([Type.Literal('success'), Type.Literal('failure'), Type.Literal('denied')])),
      limit: Opt(Type.Integer({ minimum: 1, maximum: 10000, default: 100 })),
      marker: Opt(Type.Integer({ minimum: 0 })),
    },
    { additionalProperties: false },
  );
  app.get(
    `${BULWARK_PREFIX}/audit/events`,
    { schema: { querystring: AuditQuery }, config: { action: 'audit:list' } },
    async (req) => {
      const q = req.query as Static<typeof AuditQuery>;
      let query = store.db
        .selectFrom('audit_events')
        .selectAll()
        .orderBy('seq', 'desc')
        .limit(q.limit ?? 100);
      if (q.since) query = query.where('time', '>=', new Date(q.since).toISOString());
      if (q.until) query = query.where('time', '<=', new Date(q.until).toISOString());
      if (q.user) {
        const user = q.user;
        query = query.where((eb) => eb.or([eb('user_name', '=', user), eb('user_id', '=', user)]));
      }
      if (q.action) query = query.where('action', '=', q.action);
      if (q.outcome) query = query.where('outcome', '=', q.outcome);
      if (q.marker) query = query.where('seq', '<', q.marker);
      const rows = await query.execute();
      return { events: rows.map((r) => ({ ...r, seq: Number(r.seq), status: Number(r.status) })) };
    },
  );

  app.get(`${BULWARK_PREFIX}/audit/verify`, { config: { action: 'audit:verify' } }, async () => ({
    verification: await verifyAuditChain(store),
  }));
}
