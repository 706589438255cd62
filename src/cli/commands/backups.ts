import { readFileSync, writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { generateRecoveryKey } from '../../backups/crypto.js';
import type { BulwarkClient } from '../client.js';
import { findByNameOrId, withClient, withFormat } from '../common.js';
import { printList, printObject } from '../output.js';
import { waitWithStatus } from '../progress.js';
import { registerScheduleCommands } from './backup-schedules.js';

type Obj = Record<string, unknown>;
const globals = (cmd: Command) =>
  cmd.optsWithGlobals<{ osCloud?: string; format: 'table' | 'json' | 'value' }>();
const COLUMNS = ['id', 'name', 'status', 'size', 'volume_id', 'is_incremental', 'created_at'];
const SHOW = [
  ...COLUMNS,
  'object_count',
  'bulwark:read_bytes',
  'bulwark:stored_bytes',
  'bulwark:duration_ms',
  'fail_reason',
];

/** A backup by name or id, in full (a name lookup returns only the summary). */
const findBackup = async (c: BulwarkClient, ref: string) => {
  const { id } = await findByNameOrId<Obj & { id: string }>(c, 'volumev3', 'backups', 'backup', ref);
  return (await c.request<{ backup: Obj & { id: string } }>('volumev3', 'GET', `/backups/${id}`)).backup;
};
const findVolume = (c: BulwarkClient, ref: string) =>
  findByNameOrId<Obj & { id: string }>(c, 'volumev3', 'volumes', 'volume', ref);
const readKey = (file: string) => readFileSync(file, 'utf8');

/** Waits for a backup's background work, showing its status and progress. */
const waitBackup = (c: BulwarkClient, id: string, label: string, busy: string[]) =>
  waitWithStatus(
    label,
    async () => (await c.request<{ backup: Obj }>('volumev3', 'GET', `/backups/${id}`)).backup,
    (b) =>
      busy.includes(String(b.status))
        ? null
        : b.status === 'error'
          ? `backup failed: ${String(b.fail_reason)}`
          : '',
    (b) => `${String(b.status)}${b['bulwark:progress'] !== null ? ` ${String(b['bulwark:progress'])}%` : ''}`,
  );

/**
 * `bulwark backup ...` (docs/backups.md): the repository and its recovery
 * key, volume backups, verify, and restore (admin, with the recovery key).
 * `openstack volume backup ...` works on the same backups.
 */
export function registerBackupCommands(program: Command): void {
  const backup = program.command('backup').description('Encrypted, deduplicated backups (docs/backups.md)');
  const repo = backup.command('repository').description('The backup repository');
  withFormat(
    repo
      .command('init')
      .description(
        'Admin: create the repository; makes the recovery key pair here and sends only its public half',
      )
      .requiredOption(
        '--recovery-key-out <file>',
        'where to write the recovery private key (0600); keep it offline',
      )
      .option('--s3-endpoint <url>', 'keep the repository in an S3-compatible store at this endpoint')
      .option('--s3-bucket <bucket>')
      .option('--s3-prefix <prefix>', 'key prefix inside the bucket, ending in /')
      .option('--s3-region <region>', 'default us-east-1'),
  ).action(
    async (
      o: {
        recoveryKeyOut: string;
        s3Endpoint?: string;
        s3Bucket?: string;
        s3Prefix?: string;
        s3Region?: string;
      },
      cmd: Command,
    ) => {
      const g = globals(cmd);
      if (!o.s3Endpoint !== !o.s3Bucket) throw new Error('--s3-endpoint and --s3-bucket go together.');
      const rk = generateRecoveryKey();
      writeFileSync(o.recoveryKeyOut, rk.privateKeyPem, { mode: 0o600, flag: 'wx' });
      await withClient(g, async (c) => {
        const r = await c.request<{ repository: Obj }>('bulwark', 'POST', '/backup-repository', {
          repository: {
            recipient_public_key: rk.publicKey,
            ...(o.s3Endpoint
              ? {
                  s3: {
                    endpoint: o.s3Endpoint,
                    bucket: o.s3Bucket,
                    ...(o.s3Prefix ? { prefix: o.s3Prefix } : {}),
                    ...(o.s3Region ? { region: o.s3Region } : {}),
                  },
                }
              : {}),
          },
        });
        printObject(g.format, r.repository);
        process.stderr.write(
          `The recovery key is in ${o.recoveryKeyOut}. The platform does not keep it: without it no backup can be restored. Store it offline.\n`,
        );
      });
    },
  );
  withFormat(
    repo.command('show').description('Admin: the repository, its size and whether it is unlocked'),
  ).action(async (_o: unknown, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) => {
      printObject(
        g.format,
        (await c.request<{ repository: Obj }>('bulwark', 'GET', '/backup-repository')).repository,
      );
    });
  });
  withFormat(
    backup
      .command('unlock')
      .description('Admin: hold the recovery key in the daemon’s memory (never on disk) so restores can run')
      .requiredOption('--recovery-key <file>', 'the recovery private key')
      .option('--seconds <n>', 'how long, at most 3600', '600'),
  ).action(async (o: { recoveryKey: string; seconds: string }, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) => {
      const r = await c.request<{ repository: Obj }>('bulwark', 'POST', '/backup-repository/unlock', {
        recovery_key: readKey(o.recoveryKey),
        seconds: Number(o.seconds),
      });
      printObject(g.format, r.repository, ['target', 'unlocked_until']);
    });
  });
  backup
    .command('lock')
    .description('Admin: forget the recovery key now')
    .action(async (_o: unknown, cmd: Command) => {
      await withClient(globals(cmd), async (c) => {
        await c.request('bulwark', 'POST', '/backup-repository/lock');
      });
    });
  withFormat(
    backup
      .command('create <volume>')
      .description(
        'Back up a volume (backup-operator or admin); --force for an in-use volume (its guest pauses while it is read)',
      )
      .option('--name <name>')
      .option('--description <text>')
      .option('--force', 'back up an in-use volume')
      .option('--incremental', 'require an earlier backup of the volume')
      .option('--wait', 'wait until it is done, showing progress'),
  ).action(
    async (
      ref: string,
      o: { name?: string; description?: string; force?: boolean; incremental?: boolean; wait?: boolean },
      cmd: Command,
    ) => {
      const g = globals(cmd);
      await withClient(g, async (c) => {
        const v = await findVolume(c, ref);
        const r = await c.request<{ backup: Obj & { id: string } }>('volumev3', 'POST', '/backups', {
          backup: {
            volume_id: v.id,
            name: o.name ?? null,
            description: o.description ?? null,
            incremental: o.incremental === true,
            force: o.force === true,
          },
        });
        const b = o.wait ? await waitBackup(c, r.backup.id, 'backup', ['creating']) : r.backup;
        printObject(g.format, b, o.wait ? SHOW : ['id', 'name']);
      });
    },
  );
  withFormat(
    backup
      .command('list')
      .description('Backups of your project')
      .option('--all-projects')
      .option('--volume <volume>'),
  ).action(async (o: { allProjects?: boolean; volume?: string }, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) => {
      const q = new URLSearchParams();
      if (o.allProjects) q.set('all_tenants', '1');
      if (o.volume) q.set('volume_id', (await findVolume(c, o.volume)).id);
      const r = await c.request<{ backups: Obj[] }>('volumev3', 'GET', `/backups/detail?${q}`);
      printList(g.format, COLUMNS, r.backups);
    });
  });
  withFormat(backup.command('show <backup>')).action(async (ref: string, _o: unknown, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) => printObject(g.format, await findBackup(c, ref), SHOW));
  });
  withFormat(
    backup
      .command('verify <backup>')
      .description(
        'Check every chunk: present and unaltered; with --recovery-key (admin) also decrypted and hashed',
      )
      .option('--recovery-key <file>'),
  ).action(async (ref: string, o: { recoveryKey?: string }, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) => {
      const b = await findBackup(c, ref);
      const r = await c.request<{ verify: Obj }>('bulwark', 'POST', `/backups/${b.id}/verify`, {
        ...(o.recoveryKey ? { recovery_key: readKey(o.recoveryKey) } : {}),
      });
      printObject(g.format, { ...r.verify, disks: JSON.stringify(r.verify.disks) });
    });
  });
  withFormat(
    backup
      .command('restore <backup>')
      .description(
        'Admin: verify every chunk, then restore to a new volume (or over --volume with --in-place)',
      )
      .option('--recovery-key <file>', 'the recovery private key (else the repository must be unlocked)')
      .option('--name <name>', 'name of the new volume')
      .option('--volume <volume>', 'an existing volume to overwrite (needs --in-place)')
      .option('--in-place', 'overwrite --volume')
      .option('--wait', 'wait until it is done, showing progress'),
  ).action(
    async (
      ref: string,
      o: { recoveryKey?: string; name?: string; volume?: string; inPlace?: boolean; wait?: boolean },
      cmd: Command,
    ) => {
      const g = globals(cmd);
      await withClient(g, async (c) => {
        const b = await findBackup(c, ref);
        const r = await c.request<{ restore: Obj & { volume_id: string } }>(
          'bulwark',
          'POST',
          `/backups/${b.id}/restore`,
          {
            ...(o.recoveryKey ? { recovery_key: readKey(o.recoveryKey) } : {}),
            ...(o.name ? { name: o.name } : {}),
            ...(o.volume ? { volume_id: (await findVolume(c, o.volume)).id } : {}),
            ...(o.inPlace ? { in_place: true } : {}),
          },
        );
        if (o.wait) {
          await waitBackup(c, b.id, 'restore', ['restoring']);
          const v = (await c.request<{ volume: Obj }>('volumev3', 'GET', `/volumes/${r.restore.volume_id}`))
            .volume;
          if (v.status !== 'available')
            throw new Error(`restore failed: ${String(v['bulwark:fault'] ?? v.status)}`);
        }
        printObject(g.format, r.restore);
      });
    },
  );
  registerScheduleCommands(backup, 'volume');
  backup
    .command('delete <backup>')
    .description('Admin: delete a backup (chunks other backups share are kept)')
    .action(async (ref: string, _o: unknown, cmd: Command) => {
      await withClient(globals(cmd), async (c) => {
        const b = await findBackup(c, ref);
        await c.request('volumev3', 'DELETE', `/backups/${b.id}`);
      });
    });
}
