import { Type } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import type { Static } from 'typebox';
import type { Zone, ZoneRule } from '../network/zones.js';
import type { ApiContext } from './server.js';

/**
 * Security zones, a Bulwark extension under the network endpoint in Neutron's
 * style (dashes in paths, underscores in body keys):
 *
 *   GET/POST          /network/v2.0/bulwark-zones
 *   GET/PUT/DELETE    /network/v2.0/bulwark-zones/{name}
 *   GET/POST          /network/v2.0/bulwark-zone-rules        (?from_zone=&to_zone=)
 *   GET/DELETE        /network/v2.0/bulwark-zone-rules/{id}
 *
 * Any authenticated user reads zones and rules; only cloud admins change them.
 */

const PREFIX = '/network/v2.0';
const Opt = Type.Optional;
const ZoneName = Type.String({ maxLength: 32, pattern: '^[a-z][a-z0-9-]{0,31}$' });
const NameParam = Type.Object({ name: ZoneName });
const IdParam = Type.Object({ id: Type.String({ pattern: '^[0-9a-f-]{36}$' }) });
const Desc = Type.String({ maxLength: 255, pattern: '^[^\\x00-\\x1f]*$' });
const Port = Type.Union([Type.Integer({ minimum: 0, maximum: 65535 }), Type.Null()]);

const ZoneCreateBody = Type.Object(
  {
    bulwark_zone: Type.Object(
      { name: Type.String({ maxLength: 64 }), description: Opt(Desc), host_access: Opt(Type.Boolean()) },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);
const ZoneUpdateBody = Type.Object(
  {
    bulwark_zone: Type.Object(
      { description: Opt(Desc), host_access: Opt(Type.Boolean()) },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);
const RuleBody = Type.Object(
  {
    bulwark_zone_rule: Type.Object(
      {
        from_zone: Type.String({ maxLength: 64 }),
        to_zone: Type.String({ maxLength: 64 }),
        protocol: Opt(Type.Union([Type.String({ maxLength: 16 }), Type.Integer(), Type.Null()])),
        port_range_min: Opt(Port),
        port_range_max: Opt(Port),
        description: Opt(Desc),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);
const ZoneQuery = Type.Object({ name: Opt(Type.String({ maxLength: 64 })) });
const RuleQuery = Type.Object({
  from_zone: Opt(Type.String({ maxLength: 64 })),
  to_zone: Opt(Type.String({ maxLength: 64 })),
});

const iso = (t: string) => t.replace(/\.\d+Z$/, 'Z');

export const zoneView = (z: Zone) => ({
  name: z.name,
  description: z.description,
  host_access: z.host_access === 1,
  created_at: iso(z.created_at),
  updated_at: iso(z.updated_at),
});

export const zoneRuleView = (r: ZoneRule) => ({
  id: r.id,
  from_zone: r.from_zone,
  to_zone: r.to_zone,
  protocol: r.protocol,
  port_range_min: r.port_range_min,
  port_range_max: r.port_range_max,
  description: r.description,
  created_at: iso(r.created_at),
});

export async function registerZoneApi(app: FastifyInstance, ctx: ApiContext): Promise<void> {
  const { zones } = ctx.network;

  // ---- zones ------------------------------------------------------------------
  app.get(
    `${PREFIX}/bulwark-zones`,
    { schema: { querystring: ZoneQuery }, config: { action: 'network:get_zone' } },
    async (req) => {
      const q = req.query as Static<typeof ZoneQuery>;
      const all = await zones.list();
      return { bulwark_zones: all.filter((z) => q.name === undefined || z.name === q.name).map(zoneView) };
    },
  );
  app.get(
    `${PREFIX}/bulwark-zones/:name`,
    { schema: { params: NameParam }, config: { action: 'network:get_zone' } },
    async (req) => ({ bulwark_zone: zoneView(await zones.get((req.params as { name: string }).name)) }),
  );
  app.post(
    `${PREFIX}/bulwark-zones`,
    { schema: { body: ZoneCreateBody }, config: { action: 'network:create_zone', targetType: 'zone' } },
    async (req, reply) => {
      const z = (req.body as Static<typeof ZoneCreateBody>).bulwark_zone;
      req.auditNote.targetId = z.name;
      const zone = await zones.create({
        name: z.name,
        ...(z.description !== undefined ? { description: z.description } : {}),
        ...(z.host_access !== undefined ? { hostAccess: z.host_access } : {}),
      });
      return reply.code(201).send({ bulwark_zone: zoneView(zone) });
    },
  );
  app.put(
    `${PREFIX}/bulwark-zones/:name`,
    {
      schema: { params: NameParam, body: ZoneUpdateBody },
      config: { action: 'network:update_zone', targetType: 'zone' },
    },
    async (req) => {
      const name = (req.params as { name: string }).name;
      req.auditNote.targetId = name;
      const z = (req.body as Static<typeof ZoneUpdateBody>).bulwark_zone;
      const zone = await zones.update(name, {
        ...(z.description !== undefined ? { description: z.description } : {}),
        ...(z.host_access !== undefined ? { hostAccess: z.host_access } : {}),
      });
      return { bulwark_zone: zoneView(zone) };
    },
  );
  app.delete(
    `${PREFIX}/bulwark-zones/:name`,
    { schema: { params: NameParam }, config: { action: 'network:delete_zone', targetType: 'zone' } },
    async (req, reply) => {
      const name = (req.params as { name: string }).name;
      req.auditNote.targetId = name;
      await zones.delete(name);
      return reply.code(204).send();
    },
  );

  // ---- inter-zone rules ------------------------------------------------------------
  app.get(
    `${PREFIX}/bulwark-zone-rules`,
    { schema: { querystring: RuleQuery }, config: { action: 'network:get_zone_rule' } },
    async (req) => {
      const q = req.query as Static<typeof RuleQuery>;
      return {
        bulwark_zone_rules: (await zones.listRules({ fromZone: q.from_zone, toZone: q.to_zone })).map(
          zoneRuleView,
        ),
      };
    },
  );
  app.get(
    `${PREFIX}/bulwark-zone-rules/:id`,
    { schema: { params: IdParam }, config: { action: 'network:get_zone_rule' } },
    async (req) => ({
      bulwark_zone_rule: zoneRuleView(await zones.getRule((req.params as { id: string }).id)),
    }),
  );
  app.post(
    `${PREFIX}/bulwark-zone-rules`,
    { schema: { body: RuleBody }, config: { action: 'network:create_zone_rule', targetType: 'zone_rule' } },
    async (req, reply) => {
      const r = (req.body as Static<typeof RuleBody>).bulwark_zone_rule;
      const rule = await zones.addRule({
        fromZone: r.from_zone,
        toZone: r.to_zone,
        ...(r.protocol !== undefined ? { protocol: r.protocol } : {}),
        ...(r.port_range_min !== undefined ? { portMin: r.port_range_min } : {}),
        ...(r.port_range_max !== undefined ? { portMax: r.port_range_max } : {}),
        ...(r.description !== undefined ? { description: r.description } : {}),
      });
      req.auditNote.targetId = rule.id;
      return reply.code(201).send({ bulwark_zone_rule: zoneRuleView(rule) });
    },
  );
  app.delete(
    `${PREFIX}/bulwark-zone-rules/:id`,
    {
      schema: { params: IdParam },
      config: { action: 'network:delete_zone_rule', targetType: 'zone_rule' },
    },
    async (req, reply) => {
      await zones.removeRule((req.params as { id: string }).id);
      return reply.code(204).send();
    },
  );
}
