import { Type } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import type { Static } from 'typebox';
import type { Backup, ServerDefinition } from '../backups/service.js';
import { BULWARK_PREFIX } from './bulwark.js';
import type { ApiContext } from './server.js';

const Opt = Type.Optional;
const Text = Type.String({ minLength: 1, maxLength: 255, pattern: '^[^\\x00-\\x1f]*$' });
const IdParam = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.-]+$' }),
});
const CreateBody = Type.Object(
  {
    backup: Type.Object(
      { name: Opt(Text), description: Opt(Text), incremental: Opt(Type.Boolean()) },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);
const ListQuery = Type.Object(
  { all_tenants: Opt(Type.String({ maxLength: 8 })), server_id: Opt(Type.String({ maxLength: 64 })) },
  { additionalProperties: false },
);
const RestoreBody = Type.Object(
  {
    recovery_key: Opt(Type.String({ minLength: 1, maxLength: 4096 })),
    name: Opt(Text),
    in_place: Opt(Type.Boolean()),
  },
  { additionalProperties: false },
);

/**
 * Whole-server backups under /bulwark/v1 (docs/backups.md): the root disk,
 * the attached volumes and the definition, in the same repository as volume
 * backups. Verify is the shared `/backups/{id}/verify`.
 */
export async function registerServerBackupApi(app: FastifyInstance, ctx: ApiContext): Promise<void> {
  const { backups } = ctx;
  const base = `${BULWARK_PREFIX}/server-backups`;
  const view = (b: Backup) => {
    const def = JSON.parse(b.definition ?? '{}') as Partial<ServerDefinition>;
    return {
      id: b.id,
      name: b.name,
      description: b.description,
      status: b.status,
      server_id: b.source_id,
      server_name: def.name ?? null,
      project_id: b.project_id,
      size: b.size,
      flavor_id: def.flavor_id ?? null,
      image_id: def.image_id ?? null,
      networks: def.networks ?? [],
      security_groups: def.security_groups ?? [],
      volumes: (def.volumes ?? []).map((v) => ({ id: v.id, name: v.name, size: v.size })),
      is_incremental: b.is_incremental === 1,
      object_count: b.object_count,
      read_bytes: b.read_bytes,
      stored_bytes: b.stored_bytes,
      duration_ms: b.duration_ms,
      progress: backups.progressOf(b.id),
      fail_reason: b.fault,
      restore_error: backups.restoreErrorOf(b.id),
      data_timestamp: b.data_timestamp,
      created_at: b.created_at,
      created_by: b.user_id,
    };
  };
  app.post(
    `${BULWARK_PREFIX}/servers/:id/backups`,
    {
      schema: { params: IdParam, body: CreateBody },
      config: { action: 'server:backups:create', targetType: 'server' },
    },
    async (req, reply) => {
      const { id } = req.params as Static<typeof IdParam>;
      const b = (req.body as Static<typeof CreateBody>).backup;
      const made = await backups.createServerBackup(req.auth!, {
        serverId: id,
        name: b.name,
        description: b.description,
        incremental: b.incremental === true,
      });
      req.auditNote.reason = `server backup ${made.id}`;
      return reply.code(202).send({ backup: view(made) });
    },
  );
  app.get(
    base,
    { schema: { querystring: ListQuery }, config: { action: 'server:backups:list' } },
    async (req) => {
      const q = req.query as Static<typeof ListQuery>;
      const rows = await backups.list(req.auth!, {
        allProjects: q.all_tenants !== undefined && !['0', 'false'].includes(q.all_tenants),
        volumeId: q.server_id,
        kind: 'server',
      });
      return { backups: rows.map(view) };
    },
  );
  app.get(
    `${base}/:id`,
    { schema: { params: IdParam }, config: { action: 'server:backups:show' } },
    async (req) => ({
      backup: view(await backups.get(req.auth!, (req.params as Static<typeof IdParam>).id, 'server')),
    }),
  );
  app.post(
    `${base}/:id/restore`,
    {
      schema: { params: IdParam, body: RestoreBody },
      config: { action: 'server:backups:restore', targetType: 'backup' },
    },
    async (req, reply) => {
      const { id } = req.params as Static<typeof IdParam>;
      const b = req.body as Static<typeof RestoreBody>;
      await backups.get(req.auth!, id, 'server');
      const out = await backups.restoreServer(
        req.auth!,
        id,
        { name: b.name, inPlace: b.in_place === true },
        b.recovery_key,
      );
      return reply.code(202).send({ restore: out });
    },
  );
}
