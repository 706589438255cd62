import { Type } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import type { Static } from 'typebox';
import type { BackupSchedule, ScheduleKind } from '../backups/scheduler.js';
import type { Action } from '../policy/rules.js';
import { BULWARK_PREFIX } from './bulwark.js';
import type { ApiContext } from './server.js';

const Opt = Type.Optional;
const Keep = Opt(Type.Integer({ minimum: 0, maximum: 1000 }));
const IdParam = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.-]+$' }),
});
type ScheduleFields = {
  name?: string;
  interval_minutes: number;
  keep_last?: number;
  keep_daily?: number;
  keep_weekly?: number;
  keep_monthly?: number;
} & Record<string, unknown>;
const ScheduleQuery = Type.Object({ all_tenants: Opt(Type.String()) }, { additionalProperties: false });

/** Each kind's routes: its path, the field naming what it backs up, and its policy actions. */
const KINDS = {
  volume: {
    path: 'backup-schedules',
    field: 'volume_id',
    actions: ['backup:schedules:list', 'backup:schedules:create', 'backup:schedules:delete'],
  },
  server: {
    path: 'server-backup-schedules',
    field: 'server_id',
    actions: [
      'server:backups:schedules:list',
      'server:backups:schedules:create',
      'server:backups:schedules:delete',
    ],
  },
} as const satisfies Record<ScheduleKind, { path: string; field: string; actions: readonly Action[] }>;

/**
 * Backup schedules under /bulwark/v1 (docs/backups.md): `backup-schedules`
 * for volumes, `server-backup-schedules` for whole servers, alike but for
 * the field that names the source. Each kind lists and deletes only its own.
 */
export async function registerBackupScheduleApi(app: FastifyInstance, ctx: ApiContext): Promise<void> {
  for (const kind of ['volume', 'server'] as const) {
    const { path, field, actions } = KINDS[kind];
    const [list, create, remove] = actions;
    const base = `${BULWARK_PREFIX}/${path}`;
    const view = ({ kind: _kind, source_id, ...rest }: BackupSchedule) => ({ ...rest, [field]: source_id });
    const Body = Type.Object(
      {
        schedule: Type.Object(
          {
            [field]: Type.String({ minLength: 1, maxLength: 255 }),
            name: Opt(Type.String({ minLength: 1, maxLength: 255, pattern: '^[^\\x00-\\x1f]*$' })),
            interval_minutes: Type.Integer({ minimum: 1, maximum: 60 * 24 * 31 }),
            keep_last: Keep,
            keep_daily: Keep,
            keep_weekly: Keep,
            keep_monthly: Keep,
          },
          { additionalProperties: false },
        ),
      },
      { additionalProperties: false },
    );
    app.get(base, { schema: { querystring: ScheduleQuery }, config: { action: list } }, async (req) => {
      const q = req.query as Static<typeof ScheduleQuery>;
      return {
        schedules: (await ctx.backupScheduler.list(req.auth!, kind, q.all_tenants !== undefined)).map(view),
      };
    });
    app.post(
      base,
      { schema: { body: Body }, config: { action: create, targetType: 'backup_schedule' } },
      async (req, reply) => {
        const b = (req.body as { schedule: ScheduleFields }).schedule;
        const s = await ctx.backupScheduler.create(req.auth!, {
          kind,
          sourceId: b[field] as string,
          name: b.name,
          intervalMinutes: b.interval_minutes,
          keepLast: b.keep_last,
          keepDaily: b.keep_daily,
          keepWeekly: b.keep_weekly,
          keepMonthly: b.keep_monthly,
        });
        req.auditNote.targetId = s.id;
        return reply.code(201).send({ schedule: view(s) });
      },
    );
    app.delete(
      `${base}/:id`,
      { schema: { params: IdParam }, config: { action: remove, targetType: 'backup_schedule' } },
      async (req, reply) => {
        await ctx.backupScheduler.delete(req.auth!, kind, (req.params as Static<typeof IdParam>).id);
        return reply.code(204).send();
      },
    );
  }
}
