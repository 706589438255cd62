import { Type } from '@fastify/type-provider-typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Static } from 'typebox';
import { badRequest } from '../errors.js';
import type { Pool } from '../network/ipam.js';
import type { Network, Port, Subnet } from '../network/networks.js';
import type { SecurityGroup, SecurityGroupRule } from '../network/security-groups.js';
import type { ApiContext } from './server.js';

const PREFIX = '/network/v2.0';
const Opt = Type.Optional;
const Id = Type.String({ pattern: '^[0-9a-f-]{36}$' });
const IdParam = Type.Object({ id: Id });
const Name = Type.String({ maxLength: 255, pattern: '^[^\\x00-\\x1f]*$' });
const Desc = Type.String({ maxLength: 255 });
const ListQuery = Type.Object({
  name: Opt(Type.String({ maxLength: 255 })),
  network_id: Opt(Type.String({ maxLength: 64 })),
  device_id: Opt(Type.String({ maxLength: 64 })),
  project_id: Opt(Type.String({ maxLength: 64 })),
  tenant_id: Opt(Type.String({ maxLength: 64 })),
  id: Opt(Type.Union([Type.String(), Type.Array(Type.String())])),
  fields: Opt(Type.Union([Type.String(), Type.Array(Type.String())])),
  shared: Opt(Type.String()),
  'router:external': Opt(Type.String()),
  limit: Opt(Type.Integer({ minimum: 0 })),
  marker: Opt(Type.String()),
});
type Q = Static<typeof ListQuery>;

const stamp = (r: { created_at: string; updated_at: string }) => ({
  created_at: r.created_at.replace(/\.\d+Z$/, 'Z'),
  updated_at: r.updated_at.replace(/\.\d+Z$/, 'Z'),
  revision_number: 1,
  tags: [] as string[],
});

/** Applies Neutron's `?id=` filter, which clients use to fetch several by id. */
const byIds = <T extends { id: string }>(rows: T[], q: Q) => {
  if (q.id === undefined) return rows;
  const ids = new Set([q.id].flat());
  return rows.filter((r) => ids.has(r.id));
};

export async function registerNetworkApi(app: FastifyInstance, ctx: ApiContext): Promise<void> {
  const { networks } = ctx.network;
  const { securityGroups } = ctx.network;
  ctx.services.push({ type: 'network', name: 'neutron', path: '/network' });

  const VERSIONS = () => ({
    versions: [
      { id: 'v2.0', status: 'CURRENT', links: [{ rel: 'self', href: `${ctx.publicUrl}${PREFIX}/` }] },
    ],
  });
  app.get('/network', { config: { action: 'network:version' } }, async () => VERSIONS());
  app.get('/network/', { config: { action: 'network:version' } }, async () => VERSIONS());
  app.get(PREFIX, { config: { action: 'network:version' } }, async () => ({ resources: [] }));
  app.get(`${PREFIX}/`, { config: { action: 'network:version' } }, async () => ({ resources: [] }));
  const EXTENSIONS = [
    'security-group',
    'port-security',
    'allowed-address-pairs',
    'standard-attr-description',
    'standard-attr-timestamp',
    'project-id',
    'stateful-security-group',
    'quotas',
    'router',
    'external-net',
  ];
  app.get(`${PREFIX}/extensions`, { config: { action: 'network:extensions' } }, async () => ({
    extensions: EXTENSIONS.map((alias) => ({
      alias,
      name: alias,
      description: alias,
      links: [],
      updated: '2013-01-01T00:00:00-00:00',
    })),
  }));

  // ---- networks ------------------------------------------------------------
  const networkView = async (n: Network) => ({
    id: n.id,
    name: n.name,
    description: n.description,
    project_id: n.project_id,
    tenant_id: n.project_id,
    admin_state_up: n.admin_state_up === 1,
    status: 'ACTIVE',
    shared: n.shared === 1,
    mtu: n.mtu,
    port_security_enabled: n.port_security_enabled === 1,
    'router:external': n.router_external === 1,
    subnets: await networks.subnetIdsOf(n.id),
    availability_zones: ['nova'],
    availability_zone_hints: [],
    ipv4_address_scope: null,
    ipv6_address_scope: null,
    is_default: false,
    zone: n.zone,
    ...stamp(n),
  });
  const NetworkFields = {
    name: Opt(Name),
    description: Opt(Desc),
    admin_state_up: Opt(Type.Boolean()),
    shared: Opt(Type.Boolean()),
    mtu: Opt(Type.Integer({ minimum: 68, maximum: 9000 })),
    port_security_enabled: Opt(Type.Boolean()),
    zone: Opt(Type.String({ maxLength: 32 })),
    'router:external': Opt(Type.Boolean()),
    project_id: Opt(Type.String({ maxLength: 64 })),
    tenant_id: Opt(Type.String({ maxLength: 64 })),
  };
  const NetworkBody = Type.Object(
    { network: Type.Object(NetworkFields, { additionalProperties: false }) },
    { additionalProperties: false },
  );

  app.get(
    `${PREFIX}/networks`,
    { schema: { querystring: ListQuery }, config: { action: 'network:get_network' } },
    async (req) => {
      const q = req.query as Q;
      return {
        networks: await Promise.all(
          byIds(await networks.listNetworks(req.auth!, { name: q.name }), q).map(networkView),
        ),
      };
    },
  );
  app.get(
    `${PREFIX}/networks/:id`,
    { schema: { params: IdParam }, config: { action: 'network:get_network' } },
    async (req) => ({
      network: await networkView(await networks.getNetwork(req.auth!, (req.params as { id: string }).id)),
    }),
  );
  app.post(
    `${PREFIX}/networks`,
    { schema: { body: NetworkBody }, config: { action: 'network:create_network', targetType: 'network' } },
    async (req, reply) => {
      const n = (req.body as Static<typeof NetworkBody>).network;
      const net = await networks.createNetwork(req.auth!, {
        name: n.name ?? '',
        ...(n.description !== undefined ? { description: n.description } : {}),
        ...(n.admin_state_up !== undefined ? { adminStateUp: n.admin_state_up } : {}),
        ...(n.shared !== undefined ? { shared: n.shared } : {}),
        ...(n.mtu !== undefined ? { mtu: n.mtu } : {}),
        ...(n.port_security_enabled !== undefined ? { portSecurity: n.port_security_enabled } : {}),
        ...(n.zone !== undefined ? { zone: n.zone } : {}),
        ...(n['router:external'] !== undefined ? { external: n['router:external'] } : {}),
        ...((n.project_id ?? n.tenant_id) !== undefined
          ? { projectId: (n.project_id ?? n.tenant_id) as string }
          : {}),
      });
      req.auditNote.targetId = net.id;
      return reply.code(201).send({ network: await networkView(net) });
    },
  );
  app.put(
    `${PREFIX}/networks/:id`,
    {
      schema: { params: IdParam, body: NetworkBody },
      config: { action: 'network:update_network', targetType: 'network' },
    },
    async (req) => {
      const n = (req.body as Static<typeof NetworkBody>).network;
      if (n['router:external'] !== undefined) {
        const cur = await networks.getNetwork(req.auth!, (req.params as { id: string }).id);
        if (n['router:external'] !== (cur.router_external === 1))
          throw badRequest('router:external is set when the network is created and cannot be changed.');
      }
      const net = await networks.updateNetwork(req.auth!, (req.params as { id: string }).id, {
        ...(n.name !== undefined ? { name: n.name } : {}),
        ...(n.description !== undefined ? { description: n.description } : {}),
        ...(n.admin_state_up !== undefined ? { adminStateUp: n.admin_state_up } : {}),
        ...(n.shared !== undefined ? { shared: n.shared } : {}),
        ...(n.zone !== undefined ? { zone: n.zone } : {}),
      });
      return { network: await networkView(net) };
    },
  );
  app.delete(
    `${PREFIX}/networks/:id`,
    { schema: { params: IdParam }, config: { action: 'network:delete_network', targetType: 'network' } },
    async (req, reply) => {
      await networks.deleteNetwork(req.auth!, (req.params as { id: string }).id);
      return reply.code(204).send();
    },
  );

  // ---- subnets ---------------------------------------------------------------
  const subnetView = (s: Subnet) => ({
    id: s.id,
    name: s.name,
    description: s.description,
    network_id: s.network_id,
    project_id: s.project_id,
    tenant_id: s.project_id,
    ip_version: s.ip_version,
    cidr: s.cidr,
    gateway_ip: s.gateway_ip,
    enable_dhcp: s.enable_dhcp === 1,
    allocation_pools: JSON.parse(s.allocation_pools) as Pool[],
    dns_nameservers: JSON.parse(s.dns_nameservers) as string[],
    host_routes: [],
    ipv6_ra_mode: null,
    ipv6_address_mode: null,
    subnetpool_id: null,
    service_types: [],
    segment_id: null,
    ...stamp(s),
  });
  const SubnetBody = Type.Object(
    {
      subnet: Type.Object(
        {
          name: Opt(Name),
          description: Opt(Desc),
          network_id: Id,
          ip_version: Type.Union([Type.Literal(4), Type.Literal(6)]),
          cidr: Type.String({ maxLength: 64 }),
          gateway_ip: Opt(Type.Union([Type.String({ maxLength: 64 }), Type.Null()])),
          enable_dhcp: Opt(Type.Boolean()),
          allocation_pools: Opt(
            Type.Array(
              Type.Object(
                { start: Type.String({ maxLength: 64 }), end: Type.String({ maxLength: 64 }) },
                { additionalProperties: false },
              ),
              { maxItems: 16 },
            ),
          ),
          dns_nameservers: Opt(Type.Array(Type.String({ maxLength: 64 }), { maxItems: 8 })),
          host_routes: Opt(Type.Array(Type.Unknown(), { maxItems: 0 })),
          project_id: Opt(Type.String({ maxLength: 64 })),
          tenant_id: Opt(Type.String({ maxLength: 64 })),
        },
        { additionalProperties: false },
      ),
    },
    { additionalProperties: false },
  );
  app.get(
    `${PREFIX}/subnets`,
    { schema: { querystring: ListQuery }, config: { action: 'network:get_subnet' } },
    async (req) => {
      const q = req.query as Q;
      return {
        subnets: byIds(
          await networks.listSubnets(req.auth!, { name: q.name, networkId: q.network_id }),
          q,
        ).map(subnetView),
      };
    },
  );
  app.get(
    `${PREFIX}/subnets/:id`,
    { schema: { params: IdParam }, config: { action: 'network:get_subnet' } },
    async (req) => ({
      subnet: subnetView(await networks.getSubnet(req.auth!, (req.params as { id: string }).id)),
    }),
  );
  app.post(
    `${PREFIX}/subnets`,
    { schema: { body: SubnetBody }, config: { action: 'network:create_subnet', targetType: 'subnet' } },
    async (req, reply) => {
      const s = (req.body as Static<typeof SubnetBody>).subnet;
      const subnet = await networks.createSubnet(req.auth!, {
        name: s.name ?? '',
        networkId: s.network_id,
        ipVersion: s.ip_version,
        cidr: s.cidr,
        ...(s.gateway_ip !== undefined ? { gatewayIp: s.gateway_ip } : {}),
        ...(s.enable_dhcp !== undefined ? { enableDhcp: s.enable_dhcp } : {}),
        ...(s.allocation_pools !== undefined ? { pools: s.allocation_pools } : {}),
        ...(s.dns_nameservers !== undefined ? { dns: s.dns_nameservers } : {}),
        ...(s.description !== undefined ? { description: s.description } : {}),
      });
      req.auditNote.targetId = subnet.id;
      return reply.code(201).send({ subnet: subnetView(subnet) });
    },
  );
  app.delete(
    `${PREFIX}/subnets/:id`,
    { schema: { params: IdParam }, config: { action: 'network:delete_subnet', targetType: 'subnet' } },
    async (req, reply) => {
      await networks.deleteSubnet(req.auth!, (req.params as { id: string }).id);
      return reply.code(204).send();
    },
  );

  // ---- ports ---------------------------------------------------------------
  const portViews = async (ports: Port[]) => {
    const ids = ports.map((p) => p.id);
    const [ips, groups] = await Promise.all([networks.portIps(ids), networks.portGroups(ids)]);
    return ports.map((p) => ({
      id: p.id,
      name: p.name,
      description: p.description,
      network_id: p.network_id,
      project_id: p.project_id,
      tenant_id: p.project_id,
      mac_address: p.mac_address,
      admin_state_up: p.admin_state_up === 1,
      status: p.device_id ? 'ACTIVE' : 'DOWN',
      device_id: p.device_id,
      device_owner: p.device_owner,
      fixed_ips: ips
        .filter((i) => i.port_id === p.id)
        .map((i) => ({ subnet_id: i.subnet_id, ip_address: i.ip_address })),
      security_groups: groups.filter((g) => g.port_id === p.id).map((g) => g.security_group_id),
      port_security_enabled: p.port_security_enabled === 1,
      allowed_address_pairs: JSON.parse(p.allowed_address_pairs) as unknown[],
      binding_vnic_type: 'normal',
      extra_dhcp_opts: [],
      quarantined: p.quarantined === 1,
      ...stamp(p),
    }));
  };
  const Pair = Type.Object(
    { ip_address: Type.String({ maxLength: 64 }), mac_address: Opt(Type.String({ maxLength: 17 })) },
    { additionalProperties: false },
  );
  const PortFields = {
    name: Opt(Name),
    description: Opt(Desc),
    network_id: Opt(Id),
    admin_state_up: Opt(Type.Boolean()),
    mac_address: Opt(Type.String({ maxLength: 17 })),
    fixed_ips: Opt(
      Type.Array(
        Type.Object(
          { subnet_id: Opt(Id), ip_address: Opt(Type.String({ maxLength: 64 })) },
          { additionalProperties: false },
        ),
        { maxItems: 8 },
      ),
    ),
    security_groups: Opt(Type.Array(Id, { maxItems: 16 })),
    port_security_enabled: Opt(Type.Boolean()),
    allowed_address_pairs: Opt(Type.Array(Pair, { maxItems: 10 })),
    project_id: Opt(Type.String({ maxLength: 64 })),
    tenant_id: Opt(Type.String({ maxLength: 64 })),
  };
  const PortBody = Type.Object(
    { port: Type.Object(PortFields, { additionalProperties: false }) },
    { additionalProperties: false },
  );
  type PortIn = Static<typeof PortBody>['port'];
  const resolve = (req: FastifyRequest) => (ids: string[] | undefined) =>
    securityGroups.resolveForPort(req.auth!, ids);

  app.get(
    `${PREFIX}/ports`,
    { schema: { querystring: ListQuery }, config: { action: 'network:get_port' } },
    async (req) => {
      const q = req.query as Q;
      return {
        ports: await portViews(
          byIds(
            await networks.listPorts(req.auth!, {
              networkId: q.network_id,
              deviceId: q.device_id,
              name: q.name,
            }),
            q,
          ),
        ),
      };
    },
  );
  app.get(
    `${PREFIX}/ports/:id`,
    { schema: { params: IdParam }, config: { action: 'network:get_port' } },
    async (req) => ({
      port: (await portViews([await networks.getPort(req.auth!, (req.params as { id: string }).id)]))[0],
    }),
  );
  app.post(
    `${PREFIX}/ports`,
    { schema: { body: PortBody }, config: { action: 'network:create_port', targetType: 'port' } },
    async (req, reply) => {
      const p: PortIn = (req.body as Static<typeof PortBody>).port;
      if (!p.network_id) throw badRequest('network_id is required.');
      const port = await networks.createPort(
        req.auth!,
        {
          networkId: p.network_id,
          ...(p.name !== undefined ? { name: p.name } : {}),
          ...(p.fixed_ips !== undefined
            ? {
                fixedIps: p.fixed_ips.map((f) => ({
                  ...(f.subnet_id ? { subnetId: f.subnet_id } : {}),
                  ...(f.ip_address ? { ipAddress: f.ip_address } : {}),
                })),
              }
            : {}),
          ...(p.security_groups !== undefined ? { securityGroupIds: p.security_groups } : {}),
          ...(p.port_security_enabled !== undefined ? { portSecurity: p.port_security_enabled } : {}),
          ...(p.allowed_address_pairs !== undefined
            ? {
                allowedAddressPairs: p.allowed_address_pairs.map((a) => ({
                  ip_address: a.ip_address,
                  ...(a.mac_address ? { mac_address: a.mac_address } : {}),
                })),
              }
            : {}),
          ...(p.mac_address !== undefined ? { macAddress: p.mac_address.toLowerCase() } : {}),
        },
        resolve(req),
      );
      req.auditNote.targetId = port.id;
      return reply.code(201).send({ port: (await portViews([port]))[0] });
    },
  );
  app.put(
    `${PREFIX}/ports/:id`,
    {
      schema: { params: IdParam, body: PortBody },
      config: { action: 'network:update_port', targetType: 'port' },
    },
    async (req) => {
      const p: PortIn = (req.body as Static<typeof PortBody>).port;
      const port = await networks.updatePort(
        req.auth!,
        (req.params as { id: string }).id,
        {
          ...(p.name !== undefined ? { name: p.name } : {}),
          ...(p.security_groups !== undefined ? { securityGroupIds: p.security_groups } : {}),
          ...(p.port_security_enabled !== undefined ? { portSecurity: p.port_security_enabled } : {}),
          ...(p.admin_state_up !== undefined ? { adminStateUp: p.admin_state_up } : {}),
          ...(p.allowed_address_pairs !== undefined
            ? {
                allowedAddressPairs: p.allowed_address_pairs.map((a) => ({
                  ip_address: a.ip_address,
                  ...(a.mac_address ? { mac_address: a.mac_address } : {}),
                })),
              }
            : {}),
        },
        resolve(req),
      );
      return { port: (await portViews([port]))[0] };
    },
  );
  app.delete(
    `${PREFIX}/ports/:id`,
    { schema: { params: IdParam }, config: { action: 'network:delete_port', targetType: 'port' } },
    async (req, reply) => {
      await networks.deletePort(req.auth!, (req.params as { id: string }).id);
      return reply.code(204).send();
    },
  );
}

/** Neutron security groups and rules. */
export async function registerSecurityGroupApi(app: FastifyInstance, ctx: ApiContext): Promise<void> {
  const { securityGroups } = ctx.network;
  const ruleView = (r: SecurityGroupRule) => ({
    id: r.id,
    security_group_id: r.security_group_id,
    project_id: r.project_id,
    tenant_id: r.project_id,
    direction: r.direction,
    ethertype: r.ethertype,
    protocol: r.protocol,
    port_range_min: r.port_range_min,
    port_range_max: r.port_range_max,
    remote_ip_prefix: r.remote_ip_prefix,
    remote_group_id: r.remote_group_id,
    remote_address_group_id: null,
    normalized_cidr: r.remote_ip_prefix,
    description: r.description,
    created_at: r.created_at.replace(/\.\d+Z$/, 'Z'),
    updated_at: r.created_at.replace(/\.\d+Z$/, 'Z'),
    revision_number: 0,
    tags: [],
  });
  const groupView = async (g: SecurityGroup) => ({
    id: g.id,
    name: g.name,
    description: g.description,
    project_id: g.project_id,
    tenant_id: g.project_id,
    stateful: g.stateful === 1,
    security_group_rules: (await securityGroups.rules([g.id])).map(ruleView),
    ...stamp(g),
  });

  const GroupBody = Type.Object(
    {
      security_group: Type.Object(
        {
          name: Opt(Type.String({ minLength: 1, maxLength: 255, pattern: '^[^\\x00-\\x1f]+$' })),
          description: Opt(Desc),
          stateful: Opt(Type.Boolean()),
          project_id: Opt(Type.String({ maxLength: 64 })),
          tenant_id: Opt(Type.String({ maxLength: 64 })),
        },
        { additionalProperties: false },
      ),
    },
    { additionalProperties: false },
  );
  app.get(
    `${PREFIX}/security-groups`,
    { schema: { querystring: ListQuery }, config: { action: 'network:get_security_group' } },
    async (req) => {
      const q = req.query as Q;
      return {
        security_groups: await Promise.all(
          byIds(
            await securityGroups.list(req.auth!, { name: q.name, projectId: q.project_id ?? q.tenant_id }),
            q,
          ).map(groupView),
        ),
      };
    },
  );
  app.get(
    `${PREFIX}/security-groups/:id`,
    { schema: { params: IdParam }, config: { action: 'network:get_security_group' } },
    async (req) => ({
      security_group: await groupView(await securityGroups.get(req.auth!, (req.params as { id: string }).id)),
    }),
  );
  app.post(
    `${PREFIX}/security-groups`,
    {
      schema: { body: GroupBody },
      config: { action: 'network:create_security_group', targetType: 'security_group' },
    },
    async (req, reply) => {
      const g = (req.body as Static<typeof GroupBody>).security_group;
      if (!g.name) throw badRequest('A security group needs a name.');
      const created = await securityGroups.create(req.auth!, {
        name: g.name,
        description: g.description,
        stateful: g.stateful,
      });
      req.auditNote.targetId = created.id;
      return reply.code(201).send({ security_group: await groupView(created) });
    },
  );
  app.put(
    `${PREFIX}/security-groups/:id`,
    {
      schema: { params: IdParam, body: GroupBody },
      config: { action: 'network:update_security_group', targetType: 'security_group' },
    },
    async (req) => {
      const g = (req.body as Static<typeof GroupBody>).security_group;
      return {
        security_group: await groupView(
          await securityGroups.update(req.auth!, (req.params as { id: string }).id, g),
        ),
      };
    },
  );
  app.delete(
    `${PREFIX}/security-groups/:id`,
    {
      schema: { params: IdParam },
      config: { action: 'network:delete_security_group', targetType: 'security_group' },
    },
    async (req, reply) => {
      await securityGroups.delete(req.auth!, (req.params as { id: string }).id);
      return reply.code(204).send();
    },
  );

  const RuleBody = Type.Object(
    {
      security_group_rule: Type.Object(
        {
          security_group_id: Id,
          direction: Type.String({ maxLength: 16 }),
          ethertype: Opt(Type.String({ maxLength: 8 })),
          protocol: Opt(Type.Union([Type.String({ maxLength: 16 }), Type.Integer(), Type.Null()])),
          port_range_min: Opt(Type.Union([Type.Integer(), Type.Null()])),
          port_range_max: Opt(Type.Union([Type.Integer(), Type.Null()])),
          remote_ip_prefix: Opt(Type.Union([Type.String({ maxLength: 64 }), Type.Null()])),
          remote_group_id: Opt(Type.Union([Id, Type.Null()])),
          remote_address_group_id: Opt(Type.Null()),
          description: Opt(Desc),
          project_id: Opt(Type.String({ maxLength: 64 })),
          tenant_id: Opt(Type.String({ maxLength: 64 })),
        },
        { additionalProperties: false },
      ),
    },
    { additionalProperties: false },
  );
  app.get(
    `${PREFIX}/security-group-rules`,
    {
      schema: {
        querystring: Type.Object({
          ...ListQuery.properties,
          security_group_id: Opt(Type.String({ maxLength: 64 })),
        }),
      },
      config: { action: 'network:get_security_group_rule' },
    },
    async (req) => {
      const q = req.query as Q & { security_group_id?: string };
      return {
        security_group_rules: byIds(
          await securityGroups.listRules(req.auth!, { groupId: q.security_group_id }),
          q,
        ).map(ruleView),
      };
    },
  );
  app.get(
    `${PREFIX}/security-group-rules/:id`,
    { schema: { params: IdParam }, config: { action: 'network:get_security_group_rule' } },
    async (req) => ({
      security_group_rule: ruleView(
        await securityGroups.getRule(req.auth!, (req.params as { id: string }).id),
      ),
    }),
  );
  app.post(
    `${PREFIX}/security-group-rules`,
    {
      schema: { body: RuleBody },
      config: { action: 'network:create_security_group_rule', targetType: 'security_group_rule' },
    },
    async (req, reply) => {
      const r = (req.body as Static<typeof RuleBody>).security_group_rule;
      const rule = await securityGroups.createRule(req.auth!, r.security_group_id, {
        direction: r.direction,
        ...(r.ethertype !== undefined ? { ethertype: r.ethertype } : {}),
        ...(r.protocol !== undefined ? { protocol: r.protocol } : {}),
        ...(r.port_range_min !== undefined ? { port_range_min: r.port_range_min } : {}),
        ...(r.port_range_max !== undefined ? { port_range_max: r.port_range_max } : {}),
        ...(r.remote_ip_prefix !== undefined ? { remote_ip_prefix: r.remote_ip_prefix } : {}),
        ...(r.remote_group_id !== undefined ? { remote_group_id: r.remote_group_id } : {}),
        description: r.description,
      });
      req.auditNote.targetId = rule.id;
      return reply.code(201).send({ security_group_rule: ruleView(rule) });
    },
  );
  app.delete(
    `${PREFIX}/security-group-rules/:id`,
    {
      schema: { params: IdParam },
      config: { action: 'network:delete_security_group_rule', targetType: 'security_group_rule' },
    },
    async (req, reply) => {
      await securityGroups.deleteRule(req.auth!, (req.params as { id: string }).id);
      return reply.code(204).send();
    },
  );
}
