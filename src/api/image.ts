import type { Readable } from 'node:stream';
import { Type } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import type { Static } from 'typebox';
import type { Image, ImagePatch, Visibility } from '../compute/images.js';
import { CORE_KEYS, propertiesOf } from '../compute/images.js';
import { badRequest } from '../errors.js';
import type { ApiContext } from './server.js';

const PREFIX = '/image/v2';
const Opt = Type.Optional;
const IdParam = Type.Object({ id: Type.String({ pattern: '^[0-9a-f-]{36}$' }) });
const PropValue = Type.String({ maxLength: 65535 });
const JSON_PATCH = 'application/openstack-images-v2.1-json-patch';

const VERSIONS = (url: string) => ({
  versions: [{ id: 'v2.16', status: 'CURRENT', links: [{ rel: 'self', href: `${url}${PREFIX}/` }] }],
});

/** Glance shows properties flat beside the core attributes. */
const imageView = (i: Image) => ({
  ...propertiesOf(i),
  id: i.id,
  name: i.name || null,
  status: i.status,
  visibility: i.visibility,
  protected: i.protected === 1,
  os_hidden: false,
  checksum: i.checksum,
  os_hash_algo: i.os_hash_algo,
  os_hash_value: i.os_hash_value,
  owner: i.owner,
  size: i.size,
  virtual_size: i.virtual_size,
  min_ram: i.min_ram,
  min_disk: i.min_disk,
  disk_format: i.disk_format,
  container_format: i.container_format,
  created_at: i.created_at.replace(/\.\d+Z$/, 'Z'),
  updated_at: i.updated_at.replace(/\.\d+Z$/, 'Z'),
  tags: JSON.parse(i.tags) as string[],
  self: `/v2/images/${i.id}`,
  file: `/v2/images/${i.id}/file`,
  schema: '/v2/schemas/image',
});

export async function registerImageApi(app: FastifyInstance, ctx: ApiContext): Promise<void> {
  const { compute, publicUrl } = ctx;
  const { images, servers } = compute;
  ctx.services.push({ type: 'image', name: 'glance', path: '/image' });

  // Image data streams straight to disk (size-limited there), never buffered in memory.
  app.addContentTypeParser('application/octet-stream', (_req, payload, done) => done(null, payload));
  app.addContentTypeParser(JSON_PATCH, { parseAs: 'string' }, (_req, body, done) => {
    try {
      done(null, JSON.parse(String(body)));
    } catch (err) {
      done(badRequest(`Malformed JSON patch: ${(err as Error).message}`), undefined);
    }
  });

  app.get('/image', { config: { action: 'image:version' } }, async (_req, reply) =>
    reply.code(300).send(VERSIONS(publicUrl)),
  );
  app.get('/image/', { config: { action: 'image:version' } }, async (_req, reply) =>
    reply.code(300).send(VERSIONS(publicUrl)),
  );
  app.get('/image/versions', { config: { action: 'image:version' } }, async () => VERSIONS(publicUrl));

  const ListQuery = Type.Object({
    name: Opt(Type.String({ maxLength: 255 })),
    visibility: Opt(Type.String({ enum: ['public', 'private', 'shared', 'community', 'all'] })),
    limit: Opt(Type.Integer({ minimum: 0 })),
    marker: Opt(Type.String()),
    sort_key: Opt(Type.String()),
    sort_dir: Opt(Type.String()),
    sort: Opt(Type.String()),
    status: Opt(Type.String()),
    member_status: Opt(Type.String()),
    os_hidden: Opt(Type.String()),
  });
  app.get(
    `${PREFIX}/images`,
    { schema: { querystring: ListQuery }, config: { action: 'image:get_images' } },
    async (req) => {
      const q = req.query as Static<typeof ListQuery>;
      const list = await images.list(req.auth!, { name: q.name, visibility: q.visibility });
      return {
        images: list.map(imageView),
        first: `${PREFIX.replace('/image', '')}/images`,
        schema: '/v2/schemas/images',
      };
    },
  );
  app.get(
    `${PREFIX}/images/:id`,
    { schema: { params: IdParam }, config: { action: 'image:get_image' } },
    async (req) => imageView(await images.get(req.auth!, (req.params as { id: string }).id)),
  );

  const CreateBody = Type.Object(
    {
      id: Opt(Type.String({ pattern: '^[0-9a-f-]{36}$' })),
      name: Opt(Type.String({ maxLength: 255, pattern: '^[^\\x00-\\x1f]*$' })),
      visibility: Opt(Type.String({ enum: ['public', 'private', 'shared', 'community'] })),
      protected: Opt(Type.Boolean()),
      min_disk: Opt(Type.Integer({ minimum: 0, maximum: 100_000 })),
      min_ram: Opt(Type.Integer({ minimum: 0, maximum: 16 * 1024 * 1024 })),
      disk_format: Opt(Type.String({ maxLength: 32 })),
      container_format: Opt(Type.String({ maxLength: 32 })),
      tags: Opt(Type.Array(Type.String({ maxLength: 255 }), { maxItems: 128 })),
      os_hidden: Opt(Type.Boolean()),
    },
    { additionalProperties: PropValue, maxProperties: 160 },
  );
  app.post(
    `${PREFIX}/images`,
    { schema: { body: CreateBody }, config: { action: 'image:add_image', targetType: 'image' } },
    async (req, reply) => {
      const body = req.body as Static<typeof CreateBody> & Record<string, unknown>;
      const properties = Object.fromEntries(
        Object.entries(body).filter(([k]) => !CORE_KEYS.has(k)) as [string, string][],
      );
      const img = await images.create(req.auth!, {
        ...(body.id ? { id: body.id } : {}),
        ...(body.name !== undefined ? { name: body.name } : {}),
        ...(body.visibility !== undefined ? { visibility: body.visibility as Visibility } : {}),
        ...(body.protected !== undefined ? { protected: body.protected } : {}),
        ...(body.min_disk !== undefined ? { min_disk: body.min_disk } : {}),
        ...(body.min_ram !== undefined ? { min_ram: body.min_ram } : {}),
        ...(body.disk_format !== undefined ? { disk_format: body.disk_format } : {}),
        ...(body.container_format !== undefined ? { container_format: body.container_format } : {}),
        ...(body.tags !== undefined ? { tags: body.tags } : {}),
        properties,
      });
      req.auditNote.targetId = img.id;
      return reply.code(201).send(imageView(img));
    },
  );

  const PatchOp = Type.Object(
    {
      op: Type.String({ enum: ['add', 'replace', 'remove'] }),
      path: Type.String({ minLength: 2, maxLength: 256, pattern: '^/[A-Za-z0-9_.:-]+$' }),
      value: Opt(Type.Unknown()),
    },
    { additionalProperties: false },
  );
  const PatchBody = Type.Array(PatchOp, { maxItems: 200 });
  app.patch(
    `${PREFIX}/images/:id`,
    {
      schema: { params: IdParam, body: PatchBody },
      config: { action: 'image:modify_image', targetType: 'image' },
    },
    async (req) => {
      const patch: ImagePatch = { properties: {} };
      for (const op of req.body as Static<typeof PatchBody>) {
        const key = op.path.slice(1);
        const v = op.value;
        const want = <T>(ok: boolean, val: T): T => {
          if (!ok) throw badRequest(`Invalid value for ${key}.`);
          return val;
        };
        if (op.op === 'remove') {
          if (CORE_KEYS.has(key)) throw badRequest(`Attribute ${key} cannot be removed.`);
          patch.properties[key] = null;
          continue;
        }
        switch (key) {
          case 'name':
            patch.name = want(typeof v === 'string' && v.length <= 255, v as string);
            break;
          case 'visibility':
            patch.visibility = want(typeof v === 'string', v as Visibility);
            break;
          case 'protected':
            patch.protected = want(typeof v === 'boolean', v as boolean);
            break;
          case 'min_disk':
            patch.min_disk = want(Number.isInteger(v) && (v as number) >= 0, v as number);
            break;
          case 'min_ram':
            patch.min_ram = want(Number.isInteger(v) && (v as number) >= 0, v as number);
            break;
          case 'disk_format':
            patch.disk_format = want(typeof v === 'string', v as string);
            break;
          case 'container_format':
            patch.container_format = want(typeof v === 'string', v as string);
            break;
          case 'tags':
            patch.tags = want(Array.isArray(v) && v.every((t) => typeof t === 'string'), v as string[]);
            break;
          case 'os_hidden':
            break;
          default:
            if (CORE_KEYS.has(key)) throw badRequest(`Attribute ${key} is read-only.`);
            patch.properties[key] = want(typeof v === 'string' && v.length <= 65535, v as string);
        }
      }
      return imageView(await images.update(req.auth!, (req.params as { id: string }).id, patch));
    },
  );

  app.put(
    `${PREFIX}/images/:id/file`,
    { schema: { params: IdParam }, config: { action: 'image:upload_image', targetType: 'image' } },
    async (req, reply) => {
      if (!req.body || typeof (req.body as Readable).pipe !== 'function') {
        throw badRequest('Send the image data with Content-Type: application/octet-stream.');
      }
      await images.upload(req.auth!, (req.params as { id: string }).id, req.body as Readable);
      return reply.code(204).send();
    },
  );
  app.get(
    `${PREFIX}/images/:id/file`,
    { schema: { params: IdParam }, config: { action: 'image:download_image' } },
    async (req, reply) => {
      const { image, stream, size } = await images.download(req.auth!, (req.params as { id: string }).id);
      return reply
        .header('content-type', 'application/octet-stream')
        .header('content-length', size)
        .header('content-md5', image.checksum ?? '')
        .send(stream);
    },
  );
  app.delete(
    `${PREFIX}/images/:id`,
    { schema: { params: IdParam }, config: { action: 'image:delete_image', targetType: 'image' } },
    async (req, reply) => {
      await images.delete(req.auth!, (req.params as { id: string }).id, (id) => servers.imageInUse(id));
      return reply.code(204).send();
    },
  );
}
