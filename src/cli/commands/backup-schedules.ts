import type { Command } from 'commander';
import type { BulwarkClient } from '../client.js';
import { findByNameOrId, withClient, withFormat } from '../common.js';
import { printList, printObject } from '../output.js';

type Obj = Record<string, unknown> & { id: string };
const globals = (cmd: Command) =>
  cmd.optsWithGlobals<{ osCloud?: string; format: 'table' | 'json' | 'value' }>();

/** Each kind's schedule API path, the field naming its source, and how a name or id is found. */
const KINDS = {
  volume: {
    path: '/backup-schedules',
    field: 'volume_id',
    find: (c: BulwarkClient, ref: string) => findByNameOrId<Obj>(c, 'volumev3', 'volumes', 'volume', ref),
  },
  server: {
    path: '/server-backup-schedules',
    field: 'server_id',
    find: (c: BulwarkClient, ref: string) => findByNameOrId<Obj>(c, 'compute', 'servers', 'server', ref),
  },
} as const;

/**
 * `bulwark backup schedule ...` (volumes) and `bulwark server backup
 * schedule ...` (whole servers): scheduled backups with retention, run as
 * the bulwark-backup identity (docs/backups.md).
 */
export function registerScheduleCommands(parent: Command, kind: keyof typeof KINDS): void {
  const { path, field, find } = KINDS[kind];
  const schedule = parent
    .command('schedule')
    .description(`Scheduled ${kind} backups with retention (admin sets, project reads)`);
  withFormat(
    schedule
      .command(`create <${kind}>`)
      .description(
        `Admin: back up ${kind.toUpperCase()} every --every minutes as bulwark-backup; prune to the --keep-* policy`,
      )
      .requiredOption('--every <minutes>', 'interval in minutes')
      .option('--name <name>')
      .option('--keep-last <n>', 'newest backups to keep', '7')
      .option('--keep-daily <n>', 'days to keep the newest backup of', '7')
      .option('--keep-weekly <n>', 'ISO weeks to keep the newest backup of', '4')
      .option('--keep-monthly <n>', 'months to keep the newest backup of', '6'),
  ).action(
    async (
      ref: string,
      o: {
        every: string;
        name?: string;
        keepLast: string;
        keepDaily: string;
        keepWeekly: string;
        keepMonthly: string;
      },
      cmd: Command,
    ) => {
      const g = globals(cmd);
      await withClient(g, async (c) => {
        const source = await find(c, ref);
        const r = await c.request<{ schedule: Obj }>('bulwark', 'POST', path, {
          schedule: {
            [field]: source.id,
            ...(o.name ? { name: o.name } : {}),
            interval_minutes: Number(o.every),
            keep_last: Number(o.keepLast),
            keep_daily: Number(o.keepDaily),
            keep_weekly: Number(o.keepWeekly),
            keep_monthly: Number(o.keepMonthly),
          },
        });
        printObject(g.format, r.schedule);
      });
    },
  );
  withFormat(schedule.command('list').option('--all-projects')).action(
    async (o: { allProjects?: boolean }, cmd: Command) => {
      const g = globals(cmd);
      await withClient(g, async (c) => {
        const r = await c.request<{ schedules: Obj[] }>(
          'bulwark',
          'GET',
          `${path}${o.allProjects ? '?all_tenants=1' : ''}`,
        );
        printList(
          g.format,
          [
            'id',
            'name',
            field,
            'interval_minutes',
            'keep_last',
            'keep_daily',
            'keep_weekly',
            'keep_monthly',
            'next_run_at',
            'last_error',
          ],
          r.schedules,
        );
      });
    },
  );
  schedule.command('delete <id>').action(async (id: string, _o: unknown, cmd: Command) => {
    await withClient(globals(cmd), async (c) => {
      await c.request('bulwark', 'DELETE', `${path}/${encodeURIComponent(id)}`);
    });
  });
}
