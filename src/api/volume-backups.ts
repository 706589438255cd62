import { Type } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import type { Static } from 'typebox';
import type { Backup } from '../backups/service.js';
import { badRequest } from '../errors.js';
import type { ApiContext } from './server.js';
import type { CinderRoute } from './volumes.js';

const Opt = Type.Optional;
const Id = Type.String({ minLength: 1, maxLength: 255, pattern: '^[^/\\x00-\\x1f]+$' });
const Text = Type.String({ maxLength: 255, pattern: '^[^\\x00-\\x1f]*$' });
const Nullable = <T extends ReturnType<typeof Type.String>>(t: T) => Type.Union([t, Type.Null()]);

/** What cinderclient sends (`openstack volume backup create`); unused Cinder fields must be null. */
const CreateBody = Type.Object(
  {
    backup: Type.Object(
      {
        volume_id: Id,
        container: Opt(Type.Null()),
        name: Opt(Nullable(Text)),
        description: Opt(Nullable(Text)),
        incremental: Opt(Type.Boolean()),
        force: Opt(Type.Boolean()),
        snapshot_id: Opt(Type.Null()),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);
const RestoreBody = Type.Object(
  {
    restore: Type.Object(
      { volume_id: Opt(Nullable(Id)), name: Opt(Nullable(Text)) },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);
const ListQuery = Type.Object({
  name: Opt(Type.String()),
  status: Opt(Type.String()),
  volume_id: Opt(Type.String()),
  all_tenants: Opt(Type.String()),
  limit: Opt(Type.Integer({ minimum: 0 })),
  marker: Opt(Type.String()),
  sort: Opt(Type.String()),
});

/** Cinder v3 backups (`openstack volume backup ...`), on the volume API's routes (docs/backups.md). */
export function registerVolumeBackupRoutes(route: CinderRoute, ctx: ApiContext): void {
  const { backups } = ctx;
  const prefix = `${ctx.publicUrl}/volume/v3`;
  const param = (req: FastifyRequest) => String((req.params as { id: string }).id);
  const view = (b: Backup) => ({
    id: b.id,
    name: b.name,
    description: b.description,
    status: b.status,
    size: b.size,
    volume_id: b.source_id,
    snapshot_id: null,
    container: null,
    availability_zone: 'nova',
    object_count: b.object_count,
    is_incremental: b.is_incremental === 1,
    // Every backup restores on its own (chunks are shared, not chained), so none depends on another.
    has_dependent_backups: false,
    fail_reason: b.fault,
    data_timestamp: b.data_timestamp,
    created_at: b.created_at,
    updated_at: b.updated_at,
    'bulwark:read_bytes': b.read_bytes,
    'bulwark:stored_bytes': b.stored_bytes,
    'bulwark:duration_ms': b.duration_ms,
    'bulwark:progress': backups.progressOf(b.id),
    links: [{ rel: 'self', href: `${prefix}/backups/${b.id}` }],
  });
  const list = (detail: boolean) => async (req: FastifyRequest) => {
    const q = req.query as Static<typeof ListQuery>;
    const all = q.all_tenants !== undefined && !['0', 'false', 'False'].includes(q.all_tenants);
    const rows = await backups.list(req.auth!, {
      allProjects: all,
      volumeId: q.volume_id,
      name: q.name,
      status: q.status,
      kind: 'volume',
    });
    return {
      backups: rows.map((b) => (detail ? view(b) : { id: b.id, name: b.name, links: view(b).links })),
    };
  };
  route('GET', '/backups', 'volume:backups:list', { querystring: ListQuery }, list(false));
  route('GET', '/backups/detail', 'volume:backups:list', { querystring: ListQuery }, list(true));
  route('GET', '/backups/:id', 'volume:backups:show', {}, async (req) => ({
    backup: view(await backups.get(req.auth!, param(req), 'volume')),
  }));
  route(
    'POST',
    '/backups',
    'volume:backups:create',
    { body: CreateBody },
    async (req, reply) => {
      const b = (req.body as Static<typeof CreateBody>).backup;
      const row = await backups.createVolumeBackup(req.auth!, {
        volumeId: b.volume_id,
        name: b.name,
        description: b.description,
        incremental: b.incremental ?? false,
        force: b.force ?? false,
      });
      req.auditNote.targetId = row.id;
      return reply.code(202).send({ backup: { id: row.id, name: row.name, links: view(row).links } });
    },
    'backup',
  );
  route(
    'DELETE',
    '/backups/:id',
    'volume:backups:delete',
    {},
    async (req, reply) => {
      await backups.delete(req.auth!, param(req));
      return reply.code(202).send();
    },
    'backup',
  );
  route(
    'POST',
    '/backups/:id/restore',
    'volume:backups:restore',
    { body: RestoreBody },
    async (req, reply) => {
      const r = (req.body as Static<typeof RestoreBody>).restore;
      if (r.volume_id && r.name)
        throw badRequest('Give either volume_id (restore in place) or name, not both.');
      const out = await backups.restore(req.auth!, param(req), { volumeId: r.volume_id, name: r.name });
      return reply.code(202).send({ restore: out });
    },
    'backup',
  );
}
