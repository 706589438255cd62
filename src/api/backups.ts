import { Type } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import type { Static } from 'typebox';
import { MAX_UNLOCK_SECONDS } from '../backups/service.js';
import { badRequest } from '../errors.js';
import { registerBackupScheduleApi } from './backup-schedules.js';
import { BULWARK_PREFIX } from './bulwark.js';
import { registerDrApi } from './dr.js';
import type { ApiContext } from './server.js';
import { registerServerBackupApi } from './server-backups.js';

const Opt = Type.Optional;
const Pem = Type.String({ minLength: 1, maxLength: 4096 });
const IdParam = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.-]+$' }),
});
const InitBody = Type.Object(
  {
    repository: Type.Object(
      {
        recipient_public_key: Type.String({ minLength: 1, maxLength: 64 }),
        // An S3-compatible target instead of the local directory; credentials come from the daemon's env.
        s3: Opt(
          Type.Object(
            {
              endpoint: Type.String({ minLength: 1, maxLength: 512 }),
              bucket: Type.String({ minLength: 3, maxLength: 63 }),
              prefix: Opt(Type.String({ maxLength: 200 })),
              region: Opt(Type.String({ minLength: 1, maxLength: 40 })),
            },
            { additionalProperties: false },
          ),
        ),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);
const UnlockBody = Type.Object(
  { recovery_key: Pem, seconds: Type.Integer({ minimum: 1, maximum: MAX_UNLOCK_SECONDS }) },
  { additionalProperties: false },
);
const VerifyBody = Type.Object({ recovery_key: Opt(Pem) }, { additionalProperties: false });
const RestoreBody = Type.Object(
  {
    recovery_key: Opt(Pem),
    name: Opt(Type.String({ minLength: 1, maxLength: 255, pattern: '^[^\\x00-\\x1f]*$' })),
    volume_id: Opt(Type.String({ minLength: 1, maxLength: 255 })),
    in_place: Opt(Type.Boolean()),
  },
  { additionalProperties: false },
);

/**
 * The backup extension under /bulwark/v1 (docs/backups.md): the repository
 * and its recovery key, verify, and restore with the key in the request.
 * Cinder's own backup routes are in volume-backups.ts.
 */
export async function registerBackupApi(app: FastifyInstance, ctx: ApiContext): Promise<void> {
  const { backups } = ctx;
  await registerServerBackupApi(app, ctx);
  await registerDrApi(app, ctx);
  await registerBackupScheduleApi(app, ctx);
  const repo = `${BULWARK_PREFIX}/backup-repository`;
  app.get(repo, { config: { action: 'backup:repository:show' } }, async () => ({
    repository: await backups.showRepository(),
  }));
  app.post(
    repo,
    {
      schema: { body: InitBody },
      config: { action: 'backup:repository:init', targetType: 'backup_repository' },
    },
    async (req, reply) => {
      const b = (req.body as Static<typeof InitBody>).repository;
      const r = await backups.initRepository(
        req.auth!,
        b.recipient_public_key,
        b.s3 && {
          endpoint: b.s3.endpoint,
          bucket: b.s3.bucket,
          prefix: b.s3.prefix ?? '',
          region: b.s3.region ?? 'us-east-1',
        },
      );
      return reply.code(201).send({ repository: r });
    },
  );
  app.post(
    `${repo}/unlock`,
    {
      schema: { body: UnlockBody },
      config: { action: 'backup:repository:unlock', targetType: 'backup_repository' },
    },
    async (req) => {
      const b = req.body as Static<typeof UnlockBody>;
      return { repository: await backups.unlock(req.auth!, b.recovery_key, b.seconds) };
    },
  );
  app.post(
    `${repo}/lock`,
    { config: { action: 'backup:repository:lock', targetType: 'backup_repository' } },
    async (_req, reply) => {
      backups.lock();
      return reply.code(204).send();
    },
  );
  app.post(
    `${BULWARK_PREFIX}/backups/:id/verify`,
    {
      schema: { params: IdParam, body: VerifyBody },
      config: { action: 'backup:verify', targetType: 'backup' },
    },
    async (req) => {
      const { id } = req.params as Static<typeof IdParam>;
      const b = req.body as Static<typeof VerifyBody>;
      return {
        verify: { backup_id: id, ok: true, ...(await backups.verify(req.auth!, id, b.recovery_key)) },
      };
    },
  );
  app.post(
    `${BULWARK_PREFIX}/backups/:id/restore`,
    {
      schema: { params: IdParam, body: RestoreBody },
      config: { action: 'volume:backups:restore', targetType: 'backup' },
    },
    async (req, reply) => {
      const { id } = req.params as Static<typeof IdParam>;
      const b = req.body as Static<typeof RestoreBody>;
      if (b.volume_id !== undefined && b.in_place !== true)
        throw badRequest(
          'Restoring over an existing volume overwrites it: say so with in_place: true (--in-place).',
        );
      if (b.in_place && b.volume_id === undefined)
        throw badRequest('in_place needs volume_id: the volume to overwrite.');
      const out = await backups.restore(
        req.auth!,
        id,
        { volumeId: b.volume_id, name: b.name },
        b.recovery_key,
      );
      return reply.code(202).send({ restore: out });
    },
  );
}
