import { Type } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import type { Static } from 'typebox';
import { badRequest } from '../errors.js';
import type { Router, RouterInterface, RouterService } from '../network/routers.js';
import type { ApiContext } from './server.js';

const PREFIX = '/network/v2.0';
const Opt = Type.Optional;
const Id = Type.String({ pattern: '^[0-9a-f-]{36}$' });
const IdParam = Type.Object({ id: Id });
const Name = Type.String({ maxLength: 255, pattern: '^[^\\x00-\\x1f]*$' });
const ListQuery = Type.Object({
  name: Opt(Type.String({ maxLength: 255 })),
  project_id: Opt(Type.String({ maxLength: 64 })),
  tenant_id: Opt(Type.String({ maxLength: 64 })),
  id: Opt(Type.Union([Type.String(), Type.Array(Type.String())])),
  fields: Opt(Type.Union([Type.String(), Type.Array(Type.String())])),
  limit: Opt(Type.Integer({ minimum: 0 })),
  marker: Opt(Type.String()),
});

/** Neutron's `external_gateway_info`: `{}` or null clears it; SNAT cannot be turned off (no routed mode). */
const GatewayInfo = Type.Union([
  Type.Null(),
  Type.Object(
    {
      network_id: Opt(Id),
      enable_snat: Opt(Type.Boolean()),
      external_fixed_ips: Opt(Type.Array(Type.Unknown(), { maxItems: 0 })),
    },
    { additionalProperties: false },
  ),
]);
const RouterFields = {
  name: Opt(Name),
  description: Opt(Type.String({ maxLength: 255 })),
  admin_state_up: Opt(Type.Boolean()),
  external_gateway_info: Opt(GatewayInfo),
  project_id: Opt(Type.String({ maxLength: 64 })),
  tenant_id: Opt(Type.String({ maxLength: 64 })),
  distributed: Opt(Type.Literal(false)),
  ha: Opt(Type.Literal(false)),
};
const RouterBody = Type.Object(
  { router: Type.Object(RouterFields, { additionalProperties: false }) },
  { additionalProperties: false },
);
const InterfaceBody = Type.Object({ subnet_id: Opt(Id), port_id: Opt(Id) }, { additionalProperties: false });

/** `external_gateway_info` to a network id: undefined = not given, null = clear. */
function gatewayOf(info: Static<typeof GatewayInfo> | undefined): string | null | undefined {
  if (info === undefined) return undefined;
  if (info === null || info.network_id === undefined) {
    if (info && (info.enable_snat !== undefined || info.external_fixed_ips !== undefined))
      throw badRequest('external_gateway_info needs a network_id.');
    return null;
  }
  if (info.enable_snat === false)
    throw badRequest(
      'Bulwark always SNATs a router’s subnets out of the uplink: enable_snat=false is not supported.',
    );
  return info.network_id;
}

export async function registerRouterApi(app: FastifyInstance, ctx: ApiContext): Promise<void> {
  const routers: RouterService = ctx.network.routers;
  const stamp = (r: { created_at: string; updated_at: string }) => ({
    created_at: r.created_at.replace(/\.\d+Z$/, 'Z'),
    updated_at: r.updated_at.replace(/\.\d+Z$/, 'Z'),
    revision_number: 1,
    tags: [] as string[],
  });
  const view = (r: Router) => ({
    id: r.id,
    name: r.name,
    description: r.description,
    project_id: r.project_id,
    tenant_id: r.project_id,
    admin_state_up: r.admin_state_up === 1,
    status: 'ACTIVE',
    external_gateway_info: r.external_network_id
      ? { network_id: r.external_network_id, enable_snat: true, external_fixed_ips: [] }
      : null,
    routes: [],
    distributed: false,
    ha: false,
    availability_zone_hints: [],
    availability_zones: ['nova'],
    flavor_id: null,
    ...stamp(r),
  });
  const interfaceView = (r: Router, i: RouterInterface) => ({
    id: r.id,
    subnet_id: i.subnet_id,
    subnet_ids: [i.subnet_id],
    network_id: i.network_id,
    port_id: null,
    project_id: r.project_id,
    tenant_id: r.project_id,
  });
  const idOf = (req: { params: unknown }) => (req.params as { id: string }).id;

  app.get(
    `${PREFIX}/routers`,
    { schema: { querystring: ListQuery }, config: { action: 'network:get_router' } },
    async (req) => {
      const q = req.query as Static<typeof ListQuery>;
      let rows = await routers.list(req.auth!, { name: q.name });
      if (q.id !== undefined) {
        const ids = new Set([q.id].flat());
        rows = rows.filter((r) => ids.has(r.id));
      }
      return { routers: rows.map(view) };
    },
  );
  app.get(
    `${PREFIX}/routers/:id`,
    { schema: { params: IdParam }, config: { action: 'network:get_router' } },
    async (req) => ({ router: view(await routers.get(req.auth!, idOf(req))) }),
  );
  app.post(
    `${PREFIX}/routers`,
    { schema: { body: RouterBody }, config: { action: 'network:create_router', targetType: 'router' } },
    async (req, reply) => {
      const b = (req.body as Static<typeof RouterBody>).router;
      const ext = gatewayOf(b.external_gateway_info);
      const project = b.project_id ?? b.tenant_id;
      const r = await routers.create(req.auth!, {
        name: b.name ?? '',
        ...(b.description !== undefined ? { description: b.description } : {}),
        ...(b.admin_state_up !== undefined ? { adminStateUp: b.admin_state_up } : {}),
        ...(ext !== undefined ? { externalNetworkId: ext } : {}),
        ...(project !== undefined ? { projectId: project } : {}),
      });
      req.auditNote.targetId = r.id;
      return reply.code(201).send({ router: view(r) });
    },
  );
  app.put(
    `${PREFIX}/routers/:id`,
    {
      schema: { params: IdParam, body: RouterBody },
      config: { action: 'network:update_router', targetType: 'router' },
    },
    async (req) => {
      const b = (req.body as Static<typeof RouterBody>).router;
      if (b.project_id !== undefined || b.tenant_id !== undefined)
        throw badRequest('A router’s project cannot be changed.');
      const ext = gatewayOf(b.external_gateway_info);
      const r = await routers.update(req.auth!, idOf(req), {
        ...(b.name !== undefined ? { name: b.name } : {}),
        ...(b.description !== undefined ? { description: b.description } : {}),
        ...(b.admin_state_up !== undefined ? { adminStateUp: b.admin_state_up } : {}),
        ...(ext !== undefined ? { externalNetworkId: ext } : {}),
      });
      return { router: view(r) };
    },
  );
  app.delete(
    `${PREFIX}/routers/:id`,
    { schema: { params: IdParam }, config: { action: 'network:delete_router', targetType: 'router' } },
    async (req, reply) => {
      await routers.delete(req.auth!, idOf(req));
      return reply.code(204).send();
    },
  );
  const subnetOf = (body: Static<typeof InterfaceBody>) => {
    if (body.port_id !== undefined)
      throw badRequest('Attach a subnet (subnet_id); attaching a router by port is not supported.');
    if (body.subnet_id === undefined) throw badRequest('subnet_id is required.');
    return body.subnet_id;
  };
  app.put(
    `${PREFIX}/routers/:id/add_router_interface`,
    {
      schema: { params: IdParam, body: InterfaceBody },
      config: { action: 'network:add_router_interface', targetType: 'router' },
    },
    async (req) => {
      const subnetId = subnetOf(req.body as Static<typeof InterfaceBody>);
      const r = await routers.get(req.auth!, idOf(req));
      return interfaceView(r, await routers.addSubnet(req.auth!, r.id, subnetId));
    },
  );
  app.put(
    `${PREFIX}/routers/:id/remove_router_interface`,
    {
      schema: { params: IdParam, body: InterfaceBody },
      config: { action: 'network:remove_router_interface', targetType: 'router' },
    },
    async (req) => {
      const subnetId = subnetOf(req.body as Static<typeof InterfaceBody>);
      const r = await routers.get(req.auth!, idOf(req));
      return interfaceView(r, await routers.removeSubnet(req.auth!, r.id, subnetId));
    },
  );
}
