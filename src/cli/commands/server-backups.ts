import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { BulwarkClient } from '../client.js';
import { findByNameOrId, withClient, withFormat } from '../common.js';
import { printList, printObject } from '../output.js';
import { waitWithStatus } from '../progress.js';
import { printHeld } from './approvals.js';
import { registerScheduleCommands } from './backup-schedules.js';

type Obj = Record<string, unknown> & { id: string };
const globals = (cmd: Command) =>
  cmd.optsWithGlobals<{ osCloud?: string; format: 'table' | 'json' | 'value' }>();
const COLUMNS = ['id', 'name', 'status', 'server_name', 'size', 'is_incremental', 'created_at'];
const SHOW = [
  'id',
  'name',
  'description',
  'status',
  'server_id',
  'server_name',
  'size',
  'flavor_id',
  'image_id',
  'networks',
  'security_groups',
  'volumes',
  'is_incremental',
  'object_count',
  'read_bytes',
  'stored_bytes',
  'duration_ms',
  'fail_reason',
  'data_timestamp',
  'created_at',
];

const get = async (c: BulwarkClient, id: string) =>
  (await c.request<{ backup: Obj }>('bulwark', 'GET', `/server-backups/${encodeURIComponent(id)}`)).backup;

/** A server backup by id, or by name (the newest of that name). */
export async function findServerBackup(c: BulwarkClient, ref: string): Promise<Obj> {
  const byId = await get(c, ref).catch(() => null);
  if (byId) return byId;
  const all = (await c.request<{ backups: Obj[] }>('bulwark', 'GET', '/server-backups')).backups;
  const named = all.filter((b) => b.name === ref);
  if (!named.length) throw new Error(`No server backup with a name or ID of '${ref}' exists.`);
  return named[0]!;
}

/** Waits for a server backup's work (create or restore), showing status and progress. */
const waitFor = (c: BulwarkClient, id: string, label: string, busy: string) =>
  waitWithStatus(
    label,
    () => get(c, id),
    (b) => (b.status === busy ? null : b.status === 'error' ? `backup failed: ${String(b.fail_reason)}` : ''),
    (b) => `${String(b.status)}${b.progress !== null ? ` ${String(b.progress)}%` : ''}`,
    1_800_000,
  );

const flat = (b: Obj) => ({
  ...b,
  networks: JSON.stringify(b.networks),
  security_groups: JSON.stringify(b.security_groups),
  volumes: JSON.stringify(b.volumes),
});

/**
 * `bulwark server backup ...` (docs/backups.md): whole-server backups (root
 * disk, attached volumes, definition) in the backup repository.
 */
export function registerServerBackupCommands(server: Command): void {
  const backup = server.command('backup').description('Whole-server backups (docs/backups.md)');
  registerScheduleCommands(backup, 'server');
  withFormat(
    backup
      .command('create <server>')
      .description(
        'Back up the root disk, attached volumes and definition (a running guest pauses while read)',
      )
      .option('--name <name>')
      .option('--description <text>')
      .option(
        '--incremental',
        'require an earlier backup of the server (every backup stores only new chunks)',
      )
      .option('--wait', 'wait until it is done, showing progress'),
  ).action(
    async (
      ref: string,
      o: { name?: string; description?: string; incremental?: boolean; wait?: boolean },
      cmd: Command,
    ) => {
      const g = globals(cmd);
      await withClient(g, async (c) => {
        const s = await findByNameOrId<Obj>(c, 'compute', 'servers', 'server', ref);
        const r = await c.request<{ backup: Obj }>('bulwark', 'POST', `/servers/${s.id}/backups`, {
          backup: {
            ...(o.name ? { name: o.name } : {}),
            ...(o.description ? { description: o.description } : {}),
            ...(o.incremental ? { incremental: true } : {}),
          },
        });
        const b = o.wait ? await waitFor(c, r.backup.id, 'backup', 'creating') : r.backup;
        printObject(g.format, flat(b), SHOW);
      });
    },
  );
  withFormat(backup.command('list').option('--server <server>').option('--all-projects')).action(
    async (o: { server?: string; allProjects?: boolean }, cmd: Command) => {
      const g = globals(cmd);
      await withClient(g, async (c) => {
        const q = new URLSearchParams();
        if (o.server)
          q.set('server_id', (await findByNameOrId<Obj>(c, 'compute', 'servers', 'server', o.server)).id);
        if (o.allProjects) q.set('all_tenants', '1');
        const r = await c.request<{ backups: Obj[] }>('bulwark', 'GET', `/server-backups?${q}`);
        printList(g.format, COLUMNS, r.backups);
      });
    },
  );
  withFormat(backup.command('show <backup>')).action(async (ref: string, _o: unknown, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) => printObject(g.format, flat(await findServerBackup(c, ref)), SHOW));
  });
  withFormat(
    backup
      .command('verify <backup>')
      .description('Check every chunk of every disk; with --recovery-key (admin) also decrypted and hashed')
      .option('--recovery-key <file>'),
  ).action(async (ref: string, o: { recoveryKey?: string }, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) => {
      const b = await findServerBackup(c, ref);
      const r = await c.request<{ verify: Obj }>('bulwark', 'POST', `/backups/${b.id}/verify`, {
        ...(o.recoveryKey ? { recovery_key: readFileSync(o.recoveryKey, 'utf8') } : {}),
      });
      printObject(g.format, { ...r.verify, disks: JSON.stringify(r.verify.disks) });
    });
  });
  withFormat(
    backup
      .command('restore <backup>')
      .description(
        'Admin: verify every chunk, then restore to a NEW server (fresh disk keys); --in-place overwrites the stopped source server (needs a second admin)',
      )
      .option('--recovery-key <file>', 'the recovery private key (else the repository must be unlocked)')
      .option('--name <name>', 'name of the new server')
      .option('--in-place', "overwrite the source server's disks (held for another admin's approval)")
      .option('--wait', 'wait until it is done, showing progress'),
  ).action(
    async (
      ref: string,
      o: { recoveryKey?: string; name?: string; inPlace?: boolean; wait?: boolean },
      cmd: Command,
    ) => {
      const g = globals(cmd);
      await withClient(g, async (c) => {
        const b = await findServerBackup(c, ref);
        const r = await c.request<{ restore: Obj } | { approval: Obj; message: string }>(
          'bulwark',
          'POST',
          `/server-backups/${b.id}/restore`,
          {
            ...(o.recoveryKey ? { recovery_key: readFileSync(o.recoveryKey, 'utf8') } : {}),
            ...(o.name ? { name: o.name } : {}),
            ...(o.inPlace ? { in_place: true } : {}),
          },
        );
        if ('approval' in r) return printHeld(g.format, r);
        if (o.wait) {
          const done = await waitFor(c, b.id, 'restore', 'restoring');
          if (done.restore_error) throw new Error(`restore failed: ${String(done.restore_error)}`);
        }
        printObject(g.format, r.restore);
      });
    },
  );
}
