import { Type } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import type { Static } from 'typebox';
import { BulwarkError, badRequest } from '../errors.js';
import {
  CONTENT_TYPES,
  type ContentType,
  MAX_PAYLOAD_BYTES,
  SECRET_TYPES,
  type SecretMeta,
  type SecretType,
} from '../keys/manager.js';
import type { ApiContext } from './server.js';

/**
 * The key manager, Barbican v1 compatible (the real `openstack secret
 * store|list|get|delete` works against it):
 *
 *   GET                 /key-manager, /key-manager/v1          version discovery (public)
 *   GET/POST            /key-manager/v1/secrets                 list (limit, offset, name) / store
 *   GET/DELETE          /key-manager/v1/secrets/{id}            metadata / destroy
 *   GET                 /key-manager/v1/secrets/{id}/payload    the payload (Accept: text/plain | application/octet-stream)
 *   POST                /key-manager/v1/bulwark/rotate-kek      admin: new KEK version, re-wrap, retire (Bulwark extension)
 *
 * Secrets belong to the caller's project; another project's secret is 404.
 * Readers list and see metadata, members also read payloads and write.
 */

const ROOT = '/key-manager';
const PREFIX = `${ROOT}/v1`;
const Opt = Type.Optional;
const Nullable = <T extends ReturnType<typeof Type.String>>(t: T) => Type.Union([t, Type.Null()]);
const Text = (max: number) => Type.String({ maxLength: max, pattern: '^[^\\x00-\\x1f]*$' });
const IdParam = Type.Object({
  id: Type.String({ pattern: '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' }),
});

const SecretBody = Type.Object(
  {
    name: Opt(Nullable(Text(255))),
    expiration: Opt(Nullable(Type.String({ maxLength: 64 }))),
    algorithm: Opt(Nullable(Text(255))),
    bit_length: Opt(Type.Union([Type.Integer({ minimum: 1, maximum: 65536 }), Type.Null()])),
    mode: Opt(Nullable(Text(255))),
    secret_type: Opt(Type.String({ maxLength: 32 })),
    // Base64 of MAX_PAYLOAD_BYTES is 4/3 larger; the decoded size is checked again.
    payload: Type.String({ maxLength: Math.ceil(MAX_PAYLOAD_BYTES / 3) * 4 + 4 }),
    payload_content_type: Type.String({ maxLength: 255 }),
    payload_content_encoding: Opt(Nullable(Type.String({ maxLength: 32 }))),
  },
  { additionalProperties: false },
);
type SecretBodyT = Static<typeof SecretBody>;

const ListQuery = Type.Object({
  limit: Opt(Type.Integer({ minimum: 0, maximum: 1000, default: 10 })),
  offset: Opt(Type.Integer({ minimum: 0, maximum: 1_000_000_000, default: 0 })),
  name: Opt(Type.String({ maxLength: 255 })),
});

const iso = (t: string | null) => (t === null ? null : t.replace(/\.\d+Z$/, 'Z'));

/** A strict base64 decoder: Node's own silently skips junk, which would store something other than was sent. */
function decodeBase64(s: string): Buffer {
  const clean = s.replace(/\s+/g, '');
  if (clean.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(clean))
    throw badRequest('Invalid payload: payload_content_encoding is base64 but the payload is not base64.');
  return Buffer.from(clean, 'base64');
}

/** Barbican's media types, with the charset parameter it tolerates on text/plain. */
function contentTypeOf(raw: string): ContentType {
  const base = raw.split(';')[0]?.trim().toLowerCase() ?? '';
  const params = raw
    .split(';')
    .slice(1)
    .map((p) => p.trim().toLowerCase());
  if (base === 'text/plain' && params.every((p) => p === 'charset=utf-8' || p === '')) return 'text/plain';
  if (base === 'application/octet-stream' && params.length === 0) return 'application/octet-stream';
  throw badRequest(
    `Invalid payload_content_type ${JSON.stringify(raw)}: use text/plain or application/octet-stream.`,
  );
}

export function parseSecretBody(b: SecretBodyT) {
  const contentType = contentTypeOf(b.payload_content_type);
  const encoding = b.payload_content_encoding ?? null;
  let payload: Buffer;
  if (contentType === 'text/plain') {
    if (encoding !== null)
      throw badRequest('Invalid payload_content_encoding: text/plain payloads are sent as they are.');
    payload = Buffer.from(b.payload, 'utf8');
  } else {
    if (encoding !== 'base64')
      throw badRequest('Invalid payload_content_encoding: application/octet-stream payloads must be base64.');
    payload = decodeBase64(b.payload);
  }
  const secretType = (b.secret_type ?? 'opaque') as SecretType;
  if (!(SECRET_TYPES as readonly string[]).includes(secretType))
    throw badRequest(
      `Invalid secret_type ${JSON.stringify(b.secret_type)}: use one of ${SECRET_TYPES.join(', ')}.`,
    );
  const bitLength = b.bit_length ?? null;
  if (secretType === 'symmetric' && contentType === 'application/octet-stream' && bitLength !== null) {
    if (bitLength % 8 !== 0 || payload.length !== bitLength / 8)
      throw badRequest(
        `Invalid payload: a symmetric key of bit_length ${bitLength} is ${bitLength / 8} bytes.`,
      );
  }
  return {
    name: b.name ?? null,
    secretType,
    algorithm: b.algorithm ?? null,
    bitLength,
    mode: b.mode ?? null,
    contentType,
    expiration: b.expiration ?? null,
    payload,
  };
}

export async function registerSecretsApi(app: FastifyInstance, ctx: ApiContext): Promise<void> {
  const { keys, publicUrl } = ctx;
  ctx.services.push({ type: 'key-manager', name: 'barbican', path: PREFIX });
  const ref = (id: string) => `${publicUrl}${PREFIX}/secrets/${id}`;
  const view = (s: SecretMeta) => ({
    secret_ref: ref(s.id),
    name: s.name,
    status: 'ACTIVE',
    secret_type: s.secret_type,
    algorithm: s.algorithm,
    bit_length: s.bit_length,
    mode: s.mode,
    expiration: iso(s.expiration),
    created: iso(s.created_at),
    updated: iso(s.updated_at),
    creator_id: s.creator_id,
    content_types: { default: s.content_type },
    // No `consumers`: barbicanclient passes every listed field to Secret(), which refuses unknown ones.
  });
  const version = () => ({
    id: 'v1',
    status: 'stable',
    updated: '2015-04-28T00:00:00Z',
    'media-types': [{ base: 'application/json', type: 'application/vnd.openstack.key-manager-v1+json' }],
    links: [{ rel: 'self', href: `${publicUrl}${PREFIX}/` }],
  });
  const cfg = (action: 'key-manager:version') => ({ config: { action } });
  for (const url of [ROOT, `${ROOT}/`])
    app.get(url, cfg('key-manager:version'), async (_req, reply) =>
      reply.code(300).send({ versions: { values: [version()] } }),
    );
  for (const url of [PREFIX, `${PREFIX}/`])
    app.get(url, cfg('key-manager:version'), async () => ({ version: version() }));

  const projectOf = (auth: { projectId: string | null } | null): string => {
    // Policy already required a project-scoped reader or member; a secret always belongs to one project.
    if (!auth?.projectId)
      throw new BulwarkError('Forbidden', 'A project-scoped token is required for secrets.');
    return auth.projectId;
  };

  // barbicanclient POSTs to "secrets/" (it appends the slash); both spellings are the same route.
  for (const url of [`${PREFIX}/secrets`, `${PREFIX}/secrets/`])
    app.post(
      url,
      { schema: { body: SecretBody }, config: { action: 'secrets:post', targetType: 'secret' } },
      async (req, reply) => {
        const input = parseSecretBody(req.body as SecretBodyT);
        try {
          const meta = await keys.create(projectOf(req.auth), req.auth?.userId ?? null, input);
          req.auditNote.targetId = meta.id;
          return reply
            .code(201)
            .header('location', ref(meta.id))
            .send({ secret_ref: ref(meta.id) });
        } finally {
          input.payload.fill(0);
        }
      },
    );

  for (const url of [`${PREFIX}/secrets`, `${PREFIX}/secrets/`])
    app.get(url, { schema: { querystring: ListQuery }, config: { action: 'secrets:get' } }, async (req) => {
      const q = req.query as Static<typeof ListQuery>;
      const limit = q.limit ?? 10;
      const offset = q.offset ?? 0;
      const { secrets, total } = await keys.list(projectOf(req.auth), { limit, offset, name: q.name });
      const page = (o: number) => {
        const p = new URLSearchParams({ limit: String(limit), offset: String(o) });
        if (q.name !== undefined) p.set('name', q.name);
        return `${publicUrl}${PREFIX}/secrets?${p.toString()}`;
      };
      return {
        secrets: secrets.map(view),
        total,
        ...(offset + limit < total ? { next: page(offset + limit) } : {}),
        ...(offset > 0 ? { previous: page(Math.max(0, offset - limit)) } : {}),
      };
    });

  app.get(
    `${PREFIX}/secrets/:id`,
    { schema: { params: IdParam }, config: { action: 'secret:get', targetType: 'secret' } },
    async (req) => view(await keys.get(projectOf(req.auth), (req.params as { id: string }).id)),
  );

  app.get(
    `${PREFIX}/secrets/:id/payload`,
    { schema: { params: IdParam }, config: { action: 'secret:decrypt', targetType: 'secret' } },
    async (req, reply) => {
      const { id } = req.params as { id: string };
      const accept = String(req.headers.accept ?? '*/*')
        .split(',')
        .map((a) => a.split(';')[0]?.trim().toLowerCase() ?? '');
      const { meta, payload } = await keys.payload(projectOf(req.auth), id);
      const type = accept.find((a): a is ContentType => (CONTENT_TYPES as readonly string[]).includes(a));
      if (
        !type &&
        !accept.includes('*/*') &&
        !accept.includes('application/*') &&
        !accept.includes('text/*')
      ) {
        payload.fill(0);
        throw new BulwarkError(
          'NotAcceptable',
          `The payload is ${meta.content_type}; ask for it with Accept: ${meta.content_type}.`,
        );
      }
      const ct = type ?? (meta.content_type as ContentType);
      return reply
        .code(200)
        .header('cache-control', 'no-store')
        .type(ct === 'text/plain' ? 'text/plain; charset=utf-8' : ct)
        .send(payload);
    },
  );

  app.delete(
    `${PREFIX}/secrets/:id`,
    { schema: { params: IdParam }, config: { action: 'secret:delete', targetType: 'secret' } },
    async (req, reply) => {
      await keys.delete(projectOf(req.auth), (req.params as { id: string }).id);
      return reply.code(204).send();
    },
  );

  app.post(
    `${PREFIX}/bulwark/rotate-kek`,
    { config: { action: 'key-manager:rotate_kek', targetType: 'kek' } },
    async (req) => {
      req.auditNote.targetId = keys.kekId;
      const r = await keys.rotate(req.auth ?? undefined);
      return {
        kek_rotation: { kek_id: r.kekId, from_versions: r.from, to_version: r.to, rewrapped: r.rewrapped },
      };
    },
  );
}
