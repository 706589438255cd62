import { Type } from '@fastify/type-provider-typebox';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Static } from 'typebox';
import { BulwarkError, notFound } from '../errors.js';
import type { Action } from '../policy/rules.js';
import type { EncryptionType, VolumeType } from '../volumes/types.js';
import type { Attachment, Volume } from '../volumes/volumes.js';
import { cinderListQuery } from './cinder-query.js';
import type { ApiContext } from './server.js';
import { registerVolumeSnapshotRoutes } from './snapshots.js';
import { registerVolumeBackupRoutes } from './volume-backups.js';

/**
 * Cinder v3 at `/volume/v3`, the subset the openstack CLI uses for volume
 * types, their encryption specs and volumes. Every route also answers under
 * `/volume/v3/{project_id}/...` (Cinder's URLs before microversion 3.67);
 * there the project in the URL is the policy target, so a token for one
 * project cannot name another's. Microversion 3.0 only.
 */
const PREFIX = '/volume/v3';
const Opt = Type.Optional;
const Nullable = <T extends ReturnType<typeof Type.String>>(t: T) => Type.Union([t, Type.Null()]);
const Id = Type.String({ minLength: 1, maxLength: 255, pattern: '^[^/\\x00-\\x1f]+$' });
const Text = Type.String({ maxLength: 255, pattern: '^[^\\x00-\\x1f]*$' });
const MetaMap = Type.Record(Type.String({ minLength: 1, maxLength: 255 }), Type.String({ maxLength: 255 }), {
  maxProperties: 128,
});

const VERSION = (url: string) => ({
  id: 'v3.0',
  status: 'CURRENT',
  version: '3.0',
  min_version: '3.0',
  updated: '2023-01-01T00:00:00Z',
  links: [{ rel: 'self', href: `${url}${PREFIX}/` }],
  'media-types': [{ base: 'application/json', type: 'application/vnd.openstack.volume+json;version=3' }],
});

const TypeBody = Type.Object(
  {
    volume_type: Type.Object(
      {
        name: Type.String({ minLength: 1, maxLength: 255 }),
        description: Opt(Nullable(Text)),
        'os-volume-type-access:is_public': Opt(Type.Boolean()),
        is_public: Opt(Type.Boolean()),
        extra_specs: Opt(Type.Object({}, { additionalProperties: false })),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);
const TypeUpdateBody = Type.Object(
  {
    volume_type: Type.Object(
      {
        name: Opt(Type.String({ minLength: 1, maxLength: 255 })),
        description: Opt(Nullable(Text)),
        is_public: Opt(Type.Boolean()),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);
const EncryptionBody = Type.Object(
  {
    encryption: Type.Object(
      {
        provider: Opt(Nullable(Type.String({ maxLength: 255 }))),
        cipher: Opt(Nullable(Type.String({ maxLength: 255 }))),
        key_size: Opt(Type.Union([Type.Integer(), Type.Null()])),
        control_location: Opt(Nullable(Type.String({ maxLength: 255 }))),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);
const NullStr = Opt(Nullable(Type.String({ maxLength: 255 })));
/** What cinderclient sends on create: many Cinder fields, null when unused; only null is accepted for those. */
const VolumeBody = Type.Object(
  {
    volume: Type.Object(
      {
        size: Type.Integer({ minimum: 1 }),
        name: Opt(Nullable(Text)),
        description: Opt(Nullable(Text)),
        volume_type: Opt(Nullable(Id)),
        metadata: Opt(MetaMap),
        availability_zone: Opt(Type.Union([Type.Literal('nova'), Type.Null()])),
        snapshot_id: Opt(Type.Null()),
        source_volid: Opt(Type.Null()),
        imageRef: Opt(Type.Null()),
        consistencygroup_id: Opt(Type.Null()),
        backup_id: Opt(Type.Null()),
        group_id: Opt(Type.Null()),
        multiattach: Opt(Type.Literal(false)),
      },
      { additionalProperties: false },
    ),
    'OS-SCH-HNT:scheduler_hints': Opt(Type.Object({}, { additionalProperties: false })),
  },
  { additionalProperties: false },
);
const VolumeUpdateBody = Type.Object(
  {
    volume: Type.Object(
      { name: NullStr, description: NullStr, metadata: Opt(MetaMap) },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);
const ActionBody = Type.Object(
  {
    'os-extend': Type.Object({ new_size: Type.Integer({ minimum: 1 }) }, { additionalProperties: false }),
  },
  { additionalProperties: false },
);
const ListQuery = cinderListQuery({ is_public: Opt(Type.String()) });

type Handler = (req: FastifyRequest, reply: FastifyReply) => Promise<unknown>;
/** Registers a Cinder route under both URL forms (see registerVolumeApi). */
export type CinderRoute = (
  method: 'GET' | 'POST' | 'PUT' | 'DELETE',
  path: string,
  action: Action,
  schema: Record<string, unknown>,
  handler: Handler,
  targetType?: string,
) => void;

export async function registerVolumeApi(app: FastifyInstance, ctx: ApiContext): Promise<void> {
  const { publicUrl } = ctx;
  const { types, volumes } = ctx.volume;
  // openstackclient (cinderclient) looks up `volumev3`; openstacksdk `block-storage`.
  ctx.services.push({ type: 'volumev3', name: 'cinderv3', path: PREFIX });
  ctx.services.push({ type: 'block-storage', name: 'cinder', path: PREFIX });

  app.addHook('onRequest', async (req, reply) => {
    if (!req.url.startsWith('/volume')) return;
    reply.header('openstack-api-version', 'volume 3.0').header('vary', 'OpenStack-API-Version');
  });

  for (const url of ['/volume', '/volume/', PREFIX, `${PREFIX}/`])
    app.get(url, { config: { action: 'volume:version' } }, async () => ({ versions: [VERSION(publicUrl)] }));

  /** Registers a route under both `/volume/v3` and `/volume/v3/:project_id`. */
  const route: CinderRoute = (method, path, action, schema, handler, targetType) => {
    for (const withProject of [false, true]) {
      app.route({
        method,
        url: `${PREFIX}${withProject ? '/:project_id' : ''}${path}`,
        schema,
        config: {
          action,
          ...(targetType ? { targetType } : {}),
          ...(withProject
            ? {
                target: (r: { params: unknown }) => ({
                  project_id: String((r.params as { project_id?: string }).project_id ?? ''),
                }),
              }
            : {}),
        },
        handler: async (req, reply) => {
          const pid = (req.params as { project_id?: string }).project_id;
          // A cloud admin may name any project; anyone else only their token's (policy checked the role).
          if (pid !== undefined && !req.auth?.isAdmin && pid !== req.auth?.projectId)
            throw new BulwarkError('NotFound', `No API resource at ${req.method} ${req.url.split('?')[0]}.`);
          return handler(req, reply);
        },
      });
    }
  };
  const param = (req: FastifyRequest, k: string) => String((req.params as Record<string, string>)[k]);

  // ---- volume types --------------------------------------------------------------------------
  const typeView = (t: VolumeType) => ({
    id: t.id,
    name: t.name,
    description: t.description,
    is_public: t.is_public === 1,
    'os-volume-type-access:is_public': t.is_public === 1,
    extra_specs: {},
    qos_specs_id: null,
  });
  const encView = (e: EncryptionType) => ({
    volume_type_id: e.volume_type_id,
    encryption_id: e.encryption_id,
    provider: e.provider,
    cipher: e.cipher,
    key_size: e.key_size,
    control_location: e.control_location,
    created_at: e.created_at,
    updated_at: null,
    deleted: false,
    deleted_at: null,
  });

  route('GET', '/types', 'volume:types:list', { querystring: ListQuery }, async () => ({
    volume_types: (await types.list()).map(typeView),
  }));
  route('GET', '/types/default', 'volume:types:show', {}, async () => {
    throw notFound('default volume type', 'default');
  });
  route('GET', '/types/:id', 'volume:types:show', {}, async (req) => ({
    volume_type: typeView(await types.get(param(req, 'id'))),
  }));
  route(
    'POST',
    '/types',
    'volume:types:create',
    { body: TypeBody },
    async (req) => {
      const b = (req.body as Static<typeof TypeBody>).volume_type;
      const isPublic = b['os-volume-type-access:is_public'] ?? b.is_public;
      const t = await types.create({
        name: b.name,
        description: b.description,
        ...(isPublic === undefined ? {} : { isPublic }),
      });
      req.auditNote.targetId = t.id;
      return { volume_type: typeView(t) };
    },
    'volume_type',
  );
  route(
    'PUT',
    '/types/:id',
    'volume:types:update',
    { body: TypeUpdateBody },
    async (req) => {
      const b = (req.body as Static<typeof TypeUpdateBody>).volume_type;
      if (b.is_public === false)
        throw new BulwarkError('BadRequest', 'Private volume types are not supported.');
      return { volume_type: typeView(await types.update(param(req, 'id'), b)) };
    },
    'volume_type',
  );
  route(
    'DELETE',
    '/types/:id',
    'volume:types:delete',
    {},
    async (req, reply) => {
      await types.delete(param(req, 'id'));
      return reply.code(202).send();
    },
    'volume_type',
  );
  route('GET', '/types/:id/extra_specs', 'volume:types:show', {}, async (req) => {
    await types.get(param(req, 'id'));
    return { extra_specs: {} };
  });

  // ---- encryption specs ------------------------------------------------------------------------
  route('GET', '/types/:id/encryption', 'volume:encryption:show', {}, async (req) => {
    const e = await types.encryption(param(req, 'id'));
    return e ? encView(e) : {};
  });
  route(
    'POST',
    '/types/:id/encryption',
    'volume:encryption:create',
    { body: EncryptionBody },
    async (req) => ({
      encryption: encView(
        await types.createEncryption(
          param(req, 'id'),
          (req.body as Static<typeof EncryptionBody>).encryption,
        ),
      ),
    }),
    'volume_type',
  );
  route(
    'PUT',
    '/types/:id/encryption/:encryption_id',
    'volume:encryption:update',
    { body: EncryptionBody },
    async (req) => {
      const spec = (req.body as Static<typeof EncryptionBody>).encryption;
      const e = await types.updateEncryption(param(req, 'id'), spec);
      return { encryption: { ...spec, ...encView(e) } };
    },
    'volume_type',
  );
  route(
    'DELETE',
    '/types/:id/encryption/:encryption_id',
    'volume:encryption:delete',
    {},
    async (req, reply) => {
      await types.deleteEncryption(param(req, 'id'));
      return reply.code(202).send();
    },
    'volume_type',
  );

  // ---- volumes ---------------------------------------------------------------------------------
  const attachmentView = (a: Attachment) => ({
    id: a.volume_id,
    attachment_id: a.id,
    volume_id: a.volume_id,
    server_id: a.server_id,
    host_name: null,
    device: a.device,
    attached_at: a.attached_at,
  });
  const volumeViews = async (list: Volume[], admin: boolean) => {
    const atts = await volumes.attachments(list.map((v) => v.id));
    const typeNames = new Map<string, string | null>();
    for (const v of list)
      if (v.volume_type_id && !typeNames.has(v.volume_type_id))
        typeNames.set(v.volume_type_id, await volumes.typeName(v.volume_type_id));
    return list.map((v) => ({
      id: v.id,
      name: v.name,
      description: v.description,
      status: v.status,
      size: v.size,
      volume_type: v.volume_type_id ? (typeNames.get(v.volume_type_id) ?? null) : null,
      volume_type_id: v.volume_type_id,
      encrypted: v.encrypted === 1,
      bootable: 'false',
      multiattach: false,
      availability_zone: 'nova',
      attachments: atts.filter((a) => a.volume_id === v.id).map(attachmentView),
      metadata: JSON.parse(v.metadata) as Record<string, string>,
      user_id: v.user_id,
      'os-vol-tenant-attr:tenant_id': v.project_id,
      ...(admin ? { 'os-vol-host-attr:host': 'bulwark@luks#luks' } : {}),
      snapshot_id: null,
      source_volid: null,
      consistencygroup_id: null,
      group_id: null,
      replication_status: null,
      migration_status: null,
      // Why an `error` volume failed, for its owner (Bulwark; Cinder keeps this in user messages).
      'bulwark:fault': v.fault,
      created_at: v.created_at,
      updated_at: v.updated_at,
      links: [
        { rel: 'self', href: `${publicUrl}${PREFIX}/volumes/${v.id}` },
        { rel: 'bookmark', href: `${publicUrl}/volume/volumes/${v.id}` },
      ],
    }));
  };
  const one = async (req: FastifyRequest, v: Volume) =>
    (await volumeViews([v], req.auth?.isAdmin === true))[0];

  const list = (detail: boolean) => async (req: FastifyRequest) => {
    const q = req.query as Static<typeof ListQuery>;
    const all = q.all_tenants !== undefined && !['0', 'false', 'False'].includes(q.all_tenants);
    const rows = await volumes.list(req.auth!, { allProjects: all, name: q.name, status: q.status });
    const views = await volumeViews(rows, req.auth?.isAdmin === true);
    return {
      volumes: detail ? views : views.map((v) => ({ id: v.id, name: v.name, links: v.links })),
    };
  };
  route('GET', '/volumes', 'volume:volumes:list', { querystring: ListQuery }, list(false));
  route('GET', '/volumes/detail', 'volume:volumes:list', { querystring: ListQuery }, list(true));
  route('GET', '/volumes/:id', 'volume:volumes:show', {}, async (req) => ({
    volume: await one(req, await volumes.get(req.auth!, param(req, 'id'))),
  }));
  route(
    'POST',
    '/volumes',
    'volume:volumes:create',
    { body: VolumeBody },
    async (req, reply) => {
      const b = (req.body as Static<typeof VolumeBody>).volume;
      const v = await volumes.create(req.auth!, {
        name: b.name,
        description: b.description,
        size: b.size,
        volumeType: b.volume_type,
        metadata: b.metadata,
      });
      req.auditNote.targetId = v.id;
      return reply.code(202).send({ volume: await one(req, v) });
    },
    'volume',
  );
  route(
    'PUT',
    '/volumes/:id',
    'volume:volumes:update',
    { body: VolumeUpdateBody },
    async (req) => {
      const b = (req.body as Static<typeof VolumeUpdateBody>).volume;
      return { volume: await one(req, await volumes.update(req.auth!, param(req, 'id'), b)) };
    },
    'volume',
  );
  route(
    'DELETE',
    '/volumes/:id',
    'volume:volumes:delete',
    {},
    async (req, reply) => {
      await volumes.delete(req.auth!, param(req, 'id'));
      return reply.code(202).send();
    },
    'volume',
  );
  route(
    'POST',
    '/volumes/:id/action',
    'volume:volumes:extend',
    { body: ActionBody },
    async (req, reply) => {
      const b = req.body as Static<typeof ActionBody>;
      await volumes.extend(req.auth!, param(req, 'id'), b['os-extend'].new_size);
      return reply.code(202).send();
    },
    'volume',
  );
  registerVolumeBackupRoutes(route, ctx);

  registerVolumeSnapshotRoutes(route, ctx);
}
