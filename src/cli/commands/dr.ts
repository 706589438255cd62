import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { BulwarkClient } from '../client.js';
import { findByNameOrId, withClient, withFormat } from '../common.js';
import { printList, printObject } from '../output.js';
import { waitWithStatus } from '../progress.js';

type Obj = Record<string, unknown> & { id: string };
const globals = (cmd: Command) =>
  cmd.optsWithGlobals<{ osCloud?: string; format: 'table' | 'json' | 'value' }>();
const TARGETS = ['server_id', 'rpo_target_s', 'rto_target_s', 'boot_marker', 'set_by', 'updated_at'];
const DRILLS = [
  'id',
  'server_id',
  'backup_id',
  'status',
  'step',
  'verdict',
  'rpo_s',
  'rpo_target_s',
  'rto_s',
  'rto_target_s',
  'reason',
  'started_at',
  'finished_at',
];
const server = (c: BulwarkClient, ref: string) => findByNameOrId<Obj>(c, 'compute', 'servers', 'server', ref);
const drills = async (c: BulwarkClient, q: URLSearchParams) =>
  (await c.request<{ drills: Obj[] }>('bulwark', 'GET', `/dr/drills?${q}`)).drills;

/** `bulwark dr ...` (docs/dr.md): per-server RPO/RTO targets and drills into an isolated network. */
export function registerDrCommands(program: Command): void {
  const dr = program.command('dr').description('Disaster recovery: targets and drills (docs/dr.md)');
  const target = dr.command('target').description('Which servers are protected, and their RPO/RTO targets');
  withFormat(
    target
      .command('set <server>')
      .description('Admin: protect a server (its newest server backup is drilled)')
      .requiredOption('--rpo <seconds>', 'most data loss allowed: now minus the newest backup', Number)
      .requiredOption('--rto <seconds>', 'longest time allowed to restore and boot', Number)
      .option('--boot-marker <text>', 'what the console shows once the guest is up (default "login:")'),
  ).action(async (ref: string, o: { rpo: number; rto: number; bootMarker?: string }, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) => {
      const s = await server(c, ref);
      const r = await c.request<{ target: Obj }>('bulwark', 'PUT', `/dr/targets/${s.id}`, {
        target: { rpo_s: o.rpo, rto_s: o.rto, ...(o.bootMarker ? { boot_marker: o.bootMarker } : {}) },
      });
      printObject(g.format, r.target, TARGETS);
    });
  });
  withFormat(target.command('list')).action(async (_o: unknown, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) =>
      printList(
        g.format,
        TARGETS,
        (await c.request<{ targets: Obj[] }>('bulwark', 'GET', '/dr/targets')).targets,
      ),
    );
  });
  target.command('delete <server>').action(async (ref: string, _o: unknown, cmd: Command) => {
    await withClient(globals(cmd), async (c) => {
      await c.request('bulwark', 'DELETE', `/dr/targets/${(await server(c, ref)).id}`);
    });
  });
  withFormat(
    dr
      .command('drill')
      .description(
        'Admin: restore the newest backup of each protected server into an isolated network, boot it, report RPO/RTO, clean up',
      )
      .option('--server <server...>', 'only these protected servers')
      .option('--recovery-key <file>', 'the recovery private key (else the repository must be unlocked)')
      .option('--no-wait', 'start it and print the run id'),
  ).action(async (o: { server?: string[]; recoveryKey?: string; wait: boolean }, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) => {
      const ids = o.server
        ? await Promise.all(o.server.map(async (r) => (await server(c, r)).id))
        : undefined;
      const r = await c.request<{ run: { run_id: string; drills: Obj[] } }>('bulwark', 'POST', '/dr/drills', {
        drill: {
          ...(ids ? { server_ids: ids } : {}),
          ...(o.recoveryKey ? { recovery_key: readFileSync(o.recoveryKey, 'utf8') } : {}),
        },
      });
      const q = new URLSearchParams({ run_id: r.run.run_id });
      const rows = o.wait
        ? await waitWithStatus(
            `drill ${r.run.run_id}`,
            () => drills(c, q),
            (ds) => (ds.every((d) => d.status === 'done') ? '' : null),
            (ds) =>
              ds.map((d) => `${String(d.server_id).slice(0, 8)}: ${String(d.verdict ?? d.step)}`).join(', '),
            3_600_000,
          )
        : r.run.drills;
      printList(g.format, DRILLS, rows);
      if (rows.some((d) => d.verdict === 'fail')) process.exitCode = 1;
    });
  });
  withFormat(
    dr
      .command('history')
      .description('Past drills, newest first (the compliance engine reads the last one per server)')
      .option('--server <server>')
      .option('--run <id>'),
  ).action(async (o: { server?: string; run?: string }, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) => {
      const q = new URLSearchParams();
      if (o.server) q.set('server_id', (await server(c, o.server)).id);
      if (o.run) q.set('run_id', o.run);
      printList(g.format, DRILLS, await drills(c, q));
    });
  });
}
