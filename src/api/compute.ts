import { Type } from '@fastify/type-provider-typebox';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Static } from 'typebox';
import type { Flavor } from '../compute/flavors.js';
import { extraSpecsOf } from '../compute/flavors.js';
import { quarantineOf } from '../compute/quarantine.js';
import type { ServerAction } from '../compute/server-states.js';
import type { ServerListFilter, ServerRow } from '../compute/servers.js';
import { DEFAULT_API_MAX_LIMIT } from '../config.js';
import { badRequest, forbidden, notFound } from '../errors.js';
import type { Addresses } from '../network/server-ports.js';
import { enforce } from '../policy/enforcer.js';
import { registerComputeSecurityGroupApi } from './compute-security-groups.js';
import { registerQuarantineApi } from './quarantine.js';
import { RenderedCache } from './rendered-cache.js';
import type { ApiContext } from './server.js';
import { GROUPS_MAX_MINOR, microversionOf, registerServerGroupApi } from './server-groups.js';
import { registerVolumeAttachmentApi } from './volume-attachments.js';

const PREFIX = '/compute/v2.1';
const Opt = Type.Optional;
const Uuid = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.-]+$' });
const Name = Type.String({
  minLength: 1,
  maxLength: 255,
  pattern: '^[^\\x00-\\x1f]*[^\\x00-\\x1f\\s][^\\x00-\\x1f]*$',
});
const MetaKey = Type.String({ minLength: 1, maxLength: 255, pattern: '^[^\\x00-\\x1f]+$' });
const MetaMap = Type.Record(MetaKey, Type.String({ maxLength: 255 }), { maxProperties: 128 });
const IdParam = Type.Object({ id: Uuid });

const VERSION = (url: string) => ({
  id: 'v2.1',
  status: 'CURRENT',
  // 2.1: the version clients negotiate for every route. Server groups also take 2.15-2.64 when asked
  // (soft policies, policy + rules), but advertising 2.64 would make SDK clients send it everywhere.
  version: '2.1',
  min_version: '2.1',
  updated: '2013-07-23T11:33:21Z',
  links: [{ rel: 'self', href: `${url}${PREFIX}/` }],
  'media-types': [{ base: 'application/json', type: 'application/vnd.openstack.compute+json;version=2.1' }],
});

/**
 * `openstack server migrate --live-migration --host H` needs
 * `--os-compute-api-version 2.30`, and a cold migration's `--host H` 2.56 (the
 * CLI's own checks); the CLI then sends that version to look the server up (by
 * name: `GET /servers?name=`, whose 406 sent osc-lib into a fallback that
 * crashes; creates stay 2.1), act and wait. Only those routes take up to 2.56,
 * with their 2.1 views: the version document still advertises 2.1
 * (docs/multi-host.md).
 */
const MIGRATE_HOST_MINOR = 56;
const LIVE_MIGRATION_ROUTES = new RegExp(
  `^${PREFIX.replaceAll('.', '\\.')}/(servers/[^/]+(/action|/migrations)?|os-migrations)$`,
);
const takesMigrationVersion = (method: string, path: string) =>
  LIVE_MIGRATION_ROUTES.test(path) || (method === 'GET' && path === `${PREFIX}/servers`);

export async function registerComputeApi(app: FastifyInstance, ctx: ApiContext): Promise<void> {
  const { compute, publicUrl } = ctx;
  const { flavors, servers } = compute;
  const base = `${publicUrl}${PREFIX}`;
  ctx.services.push({ type: 'compute', name: 'nova', path: PREFIX });
  registerComputeSecurityGroupApi(app, ctx, PREFIX);
  registerQuarantineApi(app, ctx, PREFIX);
  registerVolumeAttachmentApi(app, ctx, PREFIX);
  registerServerGroupApi(app, ctx, PREFIX);

  // Microversion 2.1 everywhere; server groups also offer up to 2.64 (policy + rules). Others: Nova's 406.
  app.addHook('onRequest', async (req, reply) => {
    if (!req.url.startsWith('/compute')) return;
    const path = req.url.split('?')[0] ?? '';
    const max = path.startsWith(`${PREFIX}/os-server-groups`)
      ? GROUPS_MAX_MINOR
      : takesMigrationVersion(req.method, path)
        ? MIGRATE_HOST_MINOR
        : 1;
    reply
      .header('openstack-api-version', 'compute 2.1')
      .header('x-openstack-nova-api-version', '2.1')
      .header('vary', 'OpenStack-API-Version');
    const minor = microversionOf(req, max);
    reply
      .header('openstack-api-version', `compute 2.${minor}`)
      .header('x-openstack-nova-api-version', `2.${minor}`);
  });

  const links = (kind: string, id: string) => [
    { rel: 'self', href: `${base}/${kind}/${id}` },
    { rel: 'bookmark', href: `${publicUrl}/compute/${kind}/${id}` },
  ];

  const flavorView = (f: Flavor) => ({
    id: f.id,
    name: f.name,
    ram: f.ram,
    vcpus: f.vcpus,
    disk: f.disk,
    'OS-FLV-EXT-DATA:ephemeral': f.ephemeral,
    swap: f.swap === 0 ? '' : f.swap,
    rxtx_factor: f.rxtx_factor,
    'os-flavor-access:is_public': f.is_public === 1,
    'OS-FLV-DISABLED:disabled': false,
    links: links('flavors', f.id),
  });

  // ---- versions ------------------------------------------------------------
  app.get('/compute', { config: { action: 'compute:version' } }, async () => ({
    versions: [VERSION(publicUrl)],
  }));
  app.get('/compute/', { config: { action: 'compute:version' } }, async () => ({
    versions: [VERSION(publicUrl)],
  }));
  app.get(PREFIX, { config: { action: 'compute:version' } }, async () => ({ version: VERSION(publicUrl) }));
  app.get(`${PREFIX}/`, { config: { action: 'compute:version' } }, async () => ({
    version: VERSION(publicUrl),
  }));

  // ---- flavors ---------------------------------------------------------------
  const FlavorQuery = Type.Object({
    is_public: Opt(Type.String()),
    minRam: Opt(Type.Integer({ minimum: 0 })),
    minDisk: Opt(Type.Integer({ minimum: 0 })),
    limit: Opt(Type.Integer({ minimum: 0 })),
    marker: Opt(Type.String()),
    sort_key: Opt(Type.String()),
    sort_dir: Opt(Type.String()),
  });
  const seesPrivate = (req: FastifyRequest) => ({ includePrivate: req.auth?.isAdmin === true });
  const listFlavors = async (req: FastifyRequest) => {
    const q = req.query as Static<typeof FlavorQuery>;
    const includePrivate =
      req.auth?.isAdmin === true &&
      (q.is_public === 'None' || q.is_public === 'false' || q.is_public === 'False');
    return (await flavors.list({ includePrivate })).filter(
      (f) =>
        (q.minRam === undefined || f.ram >= q.minRam) && (q.minDisk === undefined || f.disk >= q.minDisk),
    );
  };
  app.get(
    `${PREFIX}/flavors`,
    { schema: { querystring: FlavorQuery }, config: { action: 'compute:flavors:list' } },
    async (req) => ({
      flavors: (await listFlavors(req)).map((f) => ({
        id: f.id,
        name: f.name,
        links: links('flavors', f.id),
      })),
    }),
  );
  app.get(
    `${PREFIX}/flavors/detail`,
    { schema: { querystring: FlavorQuery }, config: { action: 'compute:flavors:list' } },
    async (req) => ({
      flavors: (await listFlavors(req)).map(flavorView),
    }),
  );
  app.get(
    `${PREFIX}/flavors/:id`,
    { schema: { params: IdParam }, config: { action: 'compute:flavors:show' } },
    async (req) => ({
      flavor: flavorView(await flavors.get((req.params as { id: string }).id, seesPrivate(req))),
    }),
  );
  const FlavorBody = Type.Object(
    {
      flavor: Type.Object(
        {
          name: Name,
          id: Opt(
            Type.Union([
              Type.String({ minLength: 1, maxLength: 255, pattern: '^[A-Za-z0-9_.-]+$' }),
              Type.Null(),
            ]),
          ),
          ram: Type.Integer({ minimum: 1, maximum: 16 * 1024 * 1024 }),
          vcpus: Type.Integer({ minimum: 1, maximum: 1024 }),
          disk: Type.Integer({ minimum: 0, maximum: 100_000 }),
          'OS-FLV-EXT-DATA:ephemeral': Opt(Type.Integer({ minimum: 0 })),
          swap: Opt(Type.Union([Type.Integer({ minimum: 0 }), Type.Literal('')])),
          rxtx_factor: Opt(Type.Number({ exclusiveMinimum: 0 })),
          'os-flavor-access:is_public': Opt(Type.Boolean()),
          description: Opt(Type.Union([Type.String({ maxLength: 65535 }), Type.Null()])),
        },
        { additionalProperties: false },
      ),
    },
    { additionalProperties: false },
  );
  app.post(
    `${PREFIX}/flavors`,
    { schema: { body: FlavorBody }, config: { action: 'compute:flavors:create', targetType: 'flavor' } },
    async (req) => {
      const { flavor: f } = req.body as Static<typeof FlavorBody>;
      const created = await flavors.create({
        name: f.name,
        id: f.id,
        vcpus: f.vcpus,
        ram: f.ram,
        disk: f.disk,
        ephemeral: f['OS-FLV-EXT-DATA:ephemeral'],
        swap: f.swap === '' ? 0 : f.swap,
        rxtxFactor: f.rxtx_factor,
        isPublic: f['os-flavor-access:is_public'],
        description: f.description,
      });
      req.auditNote.targetId = created.id;
      return { flavor: flavorView(created) };
    },
  );
  app.delete(
    `${PREFIX}/flavors/:id`,
    { schema: { params: IdParam }, config: { action: 'compute:flavors:delete', targetType: 'flavor' } },
    async (req, reply) => {
      await flavors.delete((req.params as { id: string }).id);
      return reply.code(202).send();
    },
  );
  const SpecKey = Type.Object({
    id: Uuid,
    key: Type.String({ minLength: 1, maxLength: 255, pattern: '^[A-Za-z0-9_:.-]+$' }),
  });
  const SpecsBody = Type.Object(
    {
      extra_specs: Type.Record(Type.String({ maxLength: 255 }), Type.String({ maxLength: 255 }), {
        maxProperties: 64,
      }),
    },
    { additionalProperties: false },
  );
  app.get(
    `${PREFIX}/flavors/:id/os-extra_specs`,
    { schema: { params: IdParam }, config: { action: 'compute:flavors:extra_specs:index' } },
    async (req) => ({
      extra_specs: extraSpecsOf(await flavors.get((req.params as { id: string }).id, seesPrivate(req))),
    }),
  );
  app.post(
    `${PREFIX}/flavors/:id/os-extra_specs`,
    {
      schema: { params: IdParam, body: SpecsBody },
      config: { action: 'compute:flavors:extra_specs:create', targetType: 'flavor' },
    },
    async (req) => ({
      extra_specs: await flavors.setExtraSpecs(
        (req.params as { id: string }).id,
        (req.body as Static<typeof SpecsBody>).extra_specs,
      ),
    }),
  );
  app.get(
    `${PREFIX}/flavors/:id/os-extra_specs/:key`,
    { schema: { params: SpecKey }, config: { action: 'compute:flavors:extra_specs:show' } },
    async (req) => {
      const p = req.params as { id: string; key: string };
      const specs = extraSpecsOf(await flavors.get(p.id, seesPrivate(req)));
      if (!Object.hasOwn(specs, p.key)) throw notFound('flavor extra spec', p.key);
      return { [p.key]: specs[p.key] };
    },
  );
  app.put(
    `${PREFIX}/flavors/:id/os-extra_specs/:key`,
    {
      schema: {
        params: SpecKey,
        body: Type.Record(Type.String({ maxLength: 255 }), Type.String({ maxLength: 255 }), {
          minProperties: 1,
          maxProperties: 1,
        }),
      },
      config: { action: 'compute:flavors:extra_specs:update', targetType: 'flavor' },
    },
    async (req) => {
      const p = req.params as { id: string; key: string };
      const body = req.body as Record<string, string>;
      if (!Object.hasOwn(body, p.key)) throw badRequest('The request body key must match the URL key.');
      await flavors.setExtraSpecs(p.id, body);
      return body;
    },
  );
  app.delete(
    `${PREFIX}/flavors/:id/os-extra_specs/:key`,
    {
      schema: { params: SpecKey },
      config: { action: 'compute:flavors:extra_specs:delete', targetType: 'flavor' },
    },
    async (req, reply) => {
      const p = req.params as { id: string; key: string };
      await flavors.unsetExtraSpec(p.id, p.key);
      return reply.code(200).send();
    },
  );

  // ---- servers ---------------------------------------------------------------
  const serverViews = async (list: readonly ServerRow[], admin: boolean) => {
    const ids = list.map((s) => s.id);
    const [addresses, groups] = await Promise.all([
      servers.ports.addresses(ids),
      servers.ports.groupNames(ids),
    ]);
    // hostId is a hash of project and host: one per pair, not one per server.
    const hostIds = new Map<string, string>();
    const hostIdOf = (s: ServerRow) => {
      const key = `${s.project_id}\n${s.host}`;
      const known = hostIds.get(key);
      if (known !== undefined) return known;
      const h = servers.hostId(s);
      hostIds.set(key, h);
      return h;
    };
    return list.map((s) => serverView(s, admin, hostIdOf(s), addresses.get(s.id), groups.get(s.id)));
  };
  const serverView = (
    s: ServerRow,
    admin: boolean,
    hostId: string,
    addresses: Addresses | undefined,
    groups: { name: string }[] | undefined,
  ) => {
    const flavor = JSON.parse(s.flavor) as { id: string };
    const fault = s.fault ? (JSON.parse(s.fault) as Record<string, unknown>) : undefined;
    return {
      id: s.id,
      name: s.name,
      status: s.status,
      tenant_id: s.project_id,
      user_id: s.user_id,
      metadata: JSON.parse(s.metadata) as Record<string, string>,
      hostId,
      image: {
        id: s.image_id,
        links: [{ rel: 'bookmark', href: `${publicUrl}/image/v2/images/${s.image_id}` }],
      },
      flavor: {
        id: flavor.id,
        links: [{ rel: 'bookmark', href: `${publicUrl}/compute/flavors/${flavor.id}` }],
      },
      created: s.created_at.replace(/\.\d+Z$/, 'Z'),
      updated: s.updated_at.replace(/\.\d+Z$/, 'Z'),
      addresses: addresses ?? {},
      accessIPv4: '',
      accessIPv6: '',
      links: links('servers', s.id),
      'OS-DCF:diskConfig': 'MANUAL',
      progress: 0,
      'OS-EXT-AZ:availability_zone': 'nova',
      config_drive: '',
      key_name: s.key_name,
      'OS-SRV-USG:launched_at': s.launched_at,
      'OS-SRV-USG:terminated_at': s.deleted_at,
      'OS-EXT-STS:task_state': s.task_state,
      'OS-EXT-STS:vm_state': s.vm_state,
      'OS-EXT-STS:power_state': s.power_state,
      'os-extended-volumes:volumes_attached': [],
      security_groups: groups ?? [],
      // Extension: the owner sees that (and why) the server is held; admins see the whole record.
      'bulwark:quarantine':
        s.quarantine === null ? null : admin ? quarantineOf(s) : { reason: quarantineOf(s)?.reason },
      ...(admin
        ? {
            'OS-EXT-SRV-ATTR:host': s.host,
            'OS-EXT-SRV-ATTR:hypervisor_hostname': s.host,
            'OS-EXT-SRV-ATTR:instance_name': `instance-${s.id}`,
          }
        : {}),
      ...(fault ? { fault } : {}),
    };
  };

  const ServerQuery = Type.Object({
    all_tenants: Opt(Type.String()),
    project_id: Opt(Type.String({ maxLength: 64 })),
    tenant_id: Opt(Type.String({ maxLength: 64 })),
    name: Opt(Type.String({ maxLength: 255 })),
    status: Opt(Type.String({ maxLength: 32 })),
    limit: Opt(Type.Integer({ minimum: 0 })),
    marker: Opt(Type.String()),
    deleted: Opt(Type.String()),
    'changes-since': Opt(Type.String()),
  });
  // Nova's paging: at most `limit` (capped at max_limit) newest first, after `marker`; a full page
  // with more behind it links to the next one in `servers_links` (docs/compute.md).
  const maxLimit = ctx.maxListLimit ?? DEFAULT_API_MAX_LIMIT;
  const listServers = async <T extends { id: string }>(
    req: FastifyRequest,
    collection: 'servers' | 'servers/detail',
    list: (filter: ServerListFilter) => Promise<T[]>,
  ) => {
    const q = req.query as Static<typeof ServerQuery>;
    const all = q.all_tenants !== undefined && !['0', 'false', 'False'].includes(q.all_tenants);
    if (all && !req.auth?.isAdmin)
      throw forbidden('Only administrators may list servers across projects (all_tenants).');
    const limit = Math.min(q.limit ?? maxLimit, maxLimit);
    const rows = await list({
      allProjects: all,
      name: q.name,
      status: q.status,
      projectId: q.project_id ?? q.tenant_id,
      marker: q.marker,
      // One more than the page: whether there is a next page, without asking again.
      limit: limit + 1,
    });
    const page = rows.slice(0, limit);
    const last = page.at(-1);
    if (rows.length <= limit || !last) return { page, next: undefined };
    const query = new URLSearchParams(req.url.split('?')[1] ?? '');
    query.set('limit', String(limit));
    query.set('marker', last.id);
    return { page, next: [{ rel: 'next', href: `${base}/${collection}?${query}` }] };
  };
  // Server lists, rendered once per change of the store (api/rendered-cache.ts): the key is everything
  // besides the data that the answer depends on. The hooks (token, policy, rate limit) ran already.
  const rendered = new RenderedCache(ctx.store.changeMark);
  const sendRendered = async (
    req: FastifyRequest,
    reply: FastifyReply,
    collection: string,
    render: () => Promise<unknown>,
  ) => {
    const a = req.auth;
    const key = JSON.stringify([
      collection,
      a?.projectId ?? null,
      a?.userId ?? null,
      a?.isAdmin === true,
      a?.roles ?? [],
      reply.getHeader('openstack-api-version') ?? null,
      req.url.split('?')[1] ?? '',
    ]);
    return reply.type('application/json; charset=utf-8').send(await rendered.render(key, render));
  };
  app.get(
    `${PREFIX}/servers`,
    {
      schema: { querystring: ServerQuery },
      config: { action: 'compute:servers:index' },
    },
    async (req, reply) =>
      sendRendered(req, reply, 'servers', async () => {
        const { page, next } = await listServers(req, 'servers', (f) => servers.list(req.auth!, f, 'brief'));
        return {
          servers: page.map((s) => ({ id: s.id, name: s.name, links: links('servers', s.id) })),
          ...(next ? { servers_links: next } : {}),
        };
      }),
  );
  app.get(
    `${PREFIX}/servers/detail`,
    {
      schema: { querystring: ServerQuery },
      config: { action: 'compute:servers:index' },
    },
    async (req, reply) =>
      sendRendered(req, reply, 'servers/detail', async () => {
        const { page, next } = await listServers(req, 'servers/detail', (f) => servers.list(req.auth!, f));
        return {
          servers: await serverViews(page, req.auth?.isAdmin === true),
          ...(next ? { servers_links: next } : {}),
        };
      }),
  );
  app.get(
    `${PREFIX}/servers/:id`,
    { schema: { params: IdParam }, config: { action: 'compute:servers:show' } },
    async (req) => ({
      server: (
        await serverViews(
          [await servers.get(req.auth!, (req.params as { id: string }).id)],
          req.auth?.isAdmin === true,
        )
      )[0],
    }),
  );

  const Network = Type.Object(
    {
      uuid: Opt(Uuid),
      port: Opt(Uuid),
      fixed_ip: Opt(Type.String({ maxLength: 64 })),
      tag: Opt(Type.String({ maxLength: 60 })),
    },
    { additionalProperties: false },
  );
  const ServerBody = Type.Object(
    {
      server: Type.Object(
        {
          name: Name,
          imageRef: Uuid,
          flavorRef: Uuid,
          metadata: Opt(MetaMap),
          networks: Opt(
            Type.Union([Type.Literal('none'), Type.Literal('auto'), Type.Array(Network, { maxItems: 16 })]),
          ),
          user_data: Opt(Type.String({ maxLength: 87384 })),
          min_count: Opt(Type.Integer({ minimum: 1, maximum: 1 })),
          max_count: Opt(Type.Integer({ minimum: 1, maximum: 1 })),
          return_reservation_id: Opt(Type.Boolean()),
          security_groups: Opt(
            Type.Array(
              Type.Object(
                { name: Type.String({ minLength: 1, maxLength: 255 }) },
                { additionalProperties: false },
              ),
              { maxItems: 16 },
            ),
          ),
          key_name: Opt(Type.Null()),
          config_drive: Opt(Type.Union([Type.Boolean(), Type.Literal('')])),
          availability_zone: Opt(Type.Literal('nova')),
          'OS-DCF:diskConfig': Opt(Type.String({ enum: ['AUTO', 'MANUAL'] })),
          description: Opt(Type.Union([Type.String({ maxLength: 255 }), Type.Null()])),
        },
        { additionalProperties: false },
      ),
      'os:scheduler_hints': Opt(
        Type.Record(Type.String({ maxLength: 64 }), Type.Unknown(), { maxProperties: 16 }),
      ),
      'OS-SCH-HNT:scheduler_hints': Opt(
        Type.Record(Type.String({ maxLength: 64 }), Type.Unknown(), { maxProperties: 16 }),
      ),
    },
    { additionalProperties: false },
  );
  app.post(
    `${PREFIX}/servers`,
    { schema: { body: ServerBody }, config: { action: 'compute:servers:create', targetType: 'server' } },
    async (req, reply) => {
      const body = req.body as Static<typeof ServerBody>;
      const s = body.server;
      const server = await servers.create(req.auth!, {
        name: s.name,
        imageRef: s.imageRef,
        flavorRef: s.flavorRef,
        metadata: s.metadata ?? {},
        hints: body['os:scheduler_hints'] ?? body['OS-SCH-HNT:scheduler_hints'] ?? {},
        userData: s.user_data,
        networks: s.networks,
        securityGroups: s.security_groups?.map((g) => g.name),
      });
      req.auditNote.targetId = server.id;
      return reply.code(202).send({
        server: {
          id: server.id,
          links: links('servers', server.id),
          'OS-DCF:diskConfig': 'MANUAL',
          security_groups: [],
        },
      });
    },
  );
  app.delete(
    `${PREFIX}/servers/:id`,
    { schema: { params: IdParam }, config: { action: 'compute:servers:delete', targetType: 'server' } },
    async (req, reply) => {
      await servers.delete(req.auth!, (req.params as { id: string }).id);
      return reply.code(204).send();
    },
  );

  const ActionBody = Type.Object(
    {
      'os-start': Opt(Type.Null()),
      'os-stop': Opt(Type.Null()),
      reboot: Opt(
        Type.Object(
          { type: Type.String({ enum: ['SOFT', 'HARD', 'soft', 'hard'] }) },
          { additionalProperties: false },
        ),
      ),
      pause: Opt(Type.Null()),
      unpause: Opt(Type.Null()),
      suspend: Opt(Type.Null()),
      resume: Opt(Type.Null()),
      addSecurityGroup: Opt(
        Type.Object({ name: Type.String({ minLength: 1, maxLength: 255 }) }, { additionalProperties: false }),
      ),
      removeSecurityGroup: Opt(
        Type.Object({ name: Type.String({ minLength: 1, maxLength: 255 }) }, { additionalProperties: false }),
      ),
      // Nova's os-migrateLive: `host` null lets the scheduler choose; block_migration false (2.1) or
      // 'auto' (2.25+) both mean what this platform does (the disk is mirrored over TLS).
      'os-migrateLive': Opt(
        Type.Object(
          {
            host: Type.Union([Type.String({ minLength: 1, maxLength: 255 }), Type.Null()]),
            block_migration: Opt(Type.Union([Type.Boolean(), Type.Literal('auto')])),
            disk_over_commit: Opt(Type.Boolean()),
            force: Opt(Type.Boolean()),
          },
          { additionalProperties: false },
        ),
      ),
      // Nova's cold migration: null (the scheduler chooses), or from 2.56 {host} (null: it chooses).
      migrate: Opt(
        Type.Union([
          Type.Null(),
          Type.Object(
            { host: Opt(Type.Union([Type.String({ minLength: 1, maxLength: 255 }), Type.Null()])) },
            { additionalProperties: false },
          ),
        ]),
      ),
      confirmResize: Opt(Type.Null()),
      revertResize: Opt(Type.Null()),
      'os-getConsoleOutput': Opt(
        Type.Object(
          {
            length: Opt(
              Type.Union([
                Type.Integer({ minimum: -1 }),
                Type.Null(),
                Type.String({ pattern: '^-?\\d{1,9}$' }),
              ]),
            ),
          },
          { additionalProperties: false },
        ),
      ),
    },
    { additionalProperties: false, minProperties: 1, maxProperties: 1 },
  );
  const ACTIONS: Record<string, ServerAction> = {
    'os-start': 'start',
    'os-stop': 'stop',
    reboot: 'reboot',
    pause: 'pause',
    unpause: 'unpause',
    suspend: 'suspend',
    resume: 'resume',
  };
  app.post(
    `${PREFIX}/servers/:id/action`,
    {
      schema: { params: IdParam, body: ActionBody },
      config: { action: 'compute:servers:action', targetType: 'server' },
    },
    async (req: FastifyRequest, reply: FastifyReply) => {
      const id = (req.params as { id: string }).id;
      const body = req.body as Static<typeof ActionBody>;
      const [name] = Object.keys(body);
      if (name === 'os-getConsoleOutput') {
        const raw = body['os-getConsoleOutput']?.length;
        const n = raw === null || raw === undefined ? undefined : Number(raw);
        return {
          output: await servers.consoleOutput(req.auth!, id, n === undefined || n < 0 ? undefined : n),
        };
      }
      if (name === 'addSecurityGroup' || name === 'removeSecurityGroup') {
        const group = (body.addSecurityGroup ?? body.removeSecurityGroup)?.name ?? '';
        req.auditNote.reason = `${name} ${group}`;
        await servers.changeSecurityGroup(req.auth!, id, group, name === 'addSecurityGroup');
        return reply.code(202).send();
      }
      if (name === 'os-migrateLive') {
        enforce('compute:servers:migrate_live', req.auth ?? null);
        const host = body['os-migrateLive']?.host ?? null;
        if (body['os-migrateLive']?.force)
          throw badRequest('force is not supported: the scheduler checks every host.');
        req.auditNote.reason = `live migration${host ? ` to ${host}` : ''}`;
        await servers.liveMigrate(req.auth!, id, { host });
        return reply.code(202).send();
      }
      if (name === 'migrate') {
        const asked = body.migrate;
        const host = asked?.host ?? null;
        req.auditNote.reason = `migration${host ? ` to ${host}` : ''}`;
        enforce('compute:servers:migrate', req.auth ?? null);
        if (asked !== null && asked !== undefined && microversionOf(req, MIGRATE_HOST_MINOR) < 56)
          throw badRequest("Before microversion 2.56 'migrate' takes null; a host needs 2.56.");
        await compute.coldMigrations.migrate(req.auth!, id, { host });
        return reply.code(202).send();
      }
      if (name === 'confirmResize' || name === 'revertResize') {
        req.auditNote.reason = name;
        enforce(
          name === 'confirmResize' ? 'compute:servers:confirm_resize' : 'compute:servers:revert_resize',
          req.auth ?? null,
        );
        if (name === 'confirmResize') {
          await compute.coldMigrations.confirm(req.auth!, id);
          return reply.code(204).send();
        }
        await compute.coldMigrations.revert(req.auth!, id);
        return reply.code(202).send();
      }
      const action = name ? ACTIONS[name] : undefined;
      if (!action) throw badRequest('Unknown server action.');
      req.auditNote.reason = action;
      await servers.action(req.auth!, id, action);
      return reply.code(202).send();
    },
  );

  // Nova's os-migrations (2.1 view, plus the 2.23 fields) and server-migrations, admin only.
  const migrationView = (m: Awaited<ReturnType<typeof servers.listMigrations>>[number]) => ({
    id: m.id,
    uuid: m.id,
    instance_uuid: m.server_id,
    server_uuid: m.server_id,
    project_id: m.project_id,
    migration_type: m.migration_type,
    source_compute: m.source_host,
    source_node: m.source_host,
    dest_compute: m.dest_host,
    dest_node: m.dest_host,
    dest_host: m.dest_host,
    status: m.status,
    old_instance_type_id: null,
    new_instance_type_id: null,
    memory_total_bytes: m.memory_total_bytes,
    memory_processed_bytes: m.memory_processed_bytes,
    memory_remaining_bytes: m.memory_remaining_bytes,
    disk_total_bytes: m.disk_total_bytes,
    disk_processed_bytes: m.disk_processed_bytes,
    disk_remaining_bytes: Math.max(0, m.disk_total_bytes - m.disk_processed_bytes),
    created_at: m.created_at,
    updated_at: m.updated_at,
  });
  const MigrationQuery = Type.Object(
    {
      instance_uuid: Opt(Uuid),
      migration_type: Opt(Type.String({ maxLength: 32 })),
      status: Opt(Type.String({ maxLength: 32 })),
      host: Opt(Type.String({ maxLength: 255 })),
    },
    { additionalProperties: false },
  );
  app.get(
    `${PREFIX}/os-migrations`,
    { schema: { querystring: MigrationQuery }, config: { action: 'compute:os-migrations:index' } },
    async (req) => {
      const q = req.query as Static<typeof MigrationQuery>;
      const rows = await servers.listMigrations(req.auth!, q.instance_uuid);
      return {
        migrations: rows
          .filter((m) => !q.migration_type || m.migration_type === q.migration_type)
          .filter((m) => !q.status || m.status === q.status)
          .filter((m) => !q.host || m.source_host === q.host || m.dest_host === q.host)
          .map(migrationView),
      };
    },
  );
  app.get(
    `${PREFIX}/servers/:id/migrations`,
    { schema: { params: IdParam }, config: { action: 'compute:servers:migrations:index' } },
    async (req) => ({
      migrations: (await servers.listMigrations(req.auth!, (req.params as { id: string }).id))
        // Nova's server-migrations: live migrations in progress only.
        .filter(
          (m) => m.migration_type === 'live-migration' && m.status !== 'completed' && m.status !== 'error',
        )
        .map(migrationView),
    }),
  );

  app.get(
    `${PREFIX}/servers/:id/metadata`,
    { schema: { params: IdParam }, config: { action: 'compute:servers:metadata:index' } },
    async (req) => ({
      metadata: JSON.parse(
        (await servers.get(req.auth!, (req.params as { id: string }).id)).metadata,
      ) as Record<string, string>,
    }),
  );
  const MetaBody = Type.Object({ metadata: MetaMap }, { additionalProperties: false });
  for (const [method, replace] of [
    ['POST', false],
    ['PUT', true],
  ] as const) {
    app.route({
      method,
      url: `${PREFIX}/servers/:id/metadata`,
      schema: { params: IdParam, body: MetaBody },
      config: { action: 'compute:servers:metadata:update', targetType: 'server' },
      handler: async (req) => ({
        metadata: await servers.setMetadata(
          req.auth!,
          (req.params as { id: string }).id,
          (req.body as Static<typeof MetaBody>).metadata,
          replace,
        ),
      }),
    });
  }
  app.delete(
    `${PREFIX}/servers/:id/metadata/:key`,
    {
      schema: { params: Type.Object({ id: Uuid, key: MetaKey }) },
      config: { action: 'compute:servers:metadata:delete', targetType: 'server' },
    },
    async (req, reply) => {
      const p = req.params as { id: string; key: string };
      await servers.deleteMetadata(req.auth!, p.id, p.key);
      return reply.code(204).send();
    },
  );
}
