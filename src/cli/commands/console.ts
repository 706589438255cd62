import { writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { findByNameOrId, withClient, withFormat } from '../common.js';
import { printList, printObject } from '../output.js';

const globals = (cmd: Command) =>
  cmd.optsWithGlobals<{ osCloud?: string; format: 'table' | 'json' | 'value' }>();

/** Ctrl-] ends an interactive session, as in telnet and `virsh console`. */
const ESCAPE = 0x1d;

/**
 * `bulwark console SERVER`: the server's serial console in this terminal
 * (raw mode on a TTY; piped input is sent as it comes and the session ends
 * with it). Every session is recorded by the server; nothing here can stop that.
 */
export function registerConsoleCommands(program: Command): void {
  const consoleCmd = program
    .command('console')
    .description('Serial consoles (every session is recorded) and, for admins, their recordings')
    .argument('[server]', 'server name or ID to open the console of')
    .action(async (ref: string | undefined, _o: unknown, cmd: Command) => {
      if (!ref) {
        cmd.help();
        return;
      }
      await withClient(globals(cmd), async (c) => {
        const server = await findByNameOrId<{ id: string; name: string }>(
          c,
          'compute',
          'servers',
          'server',
          ref,
        );
        const cols = process.stdout.columns ?? 80;
        const rows = process.stdout.rows ?? 24;
        const ws = await c.websocket(
          'bulwark',
          `/servers/${server.id}/console?cols=${Math.min(Math.max(cols, 10), 500)}&rows=${Math.min(Math.max(rows, 5), 200)}`,
        );
        const tty = process.stdin.isTTY === true;
        process.stderr.write(
          `Connected to ${server.name} (${server.id}). This session is recorded.${tty ? ' Escape character is ^].' : ''}\n`,
        );
        await new Promise<void>((resolve) => {
          if (tty) process.stdin.setRawMode(true);
          const onData = (d: Buffer) => {
            if (tty && d.includes(ESCAPE)) {
              ws.close(1000);
              return;
            }
            ws.send(d);
          };
          process.stdin.on('data', onData);
          process.stdin.once('end', () => ws.close(1000));
          ws.on('message', (d: Buffer) => process.stdout.write(d));
          ws.once('close', () => {
            process.stdin.off('data', onData);
            if (tty) process.stdin.setRawMode(false);
            process.stdin.pause();
            resolve();
          });
        });
        process.stderr.write('\nConsole session closed.\n');
      });
    });

  withFormat(
    consoleCmd
      .command('recordings')
      .description('List console recordings, newest first (admin)')
      .option('--server <id>', 'only this server (ID)')
      .option('--user <id>', 'only this user (ID)')
      .option('--limit <n>', 'most recordings to show', '100'),
  ).action(async (o: { server?: string; user?: string; limit: string }, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) => {
      const q = new URLSearchParams({ limit: o.limit });
      if (o.server) q.set('server', o.server);
      if (o.user) q.set('user', o.user);
      const r = await c.request<{ recordings: Record<string, unknown>[] }>(
        'bulwark',
        'GET',
        `/console/recordings?${q}`,
      );
      printList(
        g.format,
        [
          'id',
          'server_name',
          'server_id',
          'user_name',
          'started_at',
          'ended_at',
          'bytes_in',
          'bytes_out',
          'interrupted',
        ],
        r.recordings,
      );
    });
  });

  consoleCmd
    .command('replay')
    .description('Decrypt a console recording to asciicast v2 (admin); play it with `asciinema play FILE`')
    .argument('<id>', 'recording ID')
    .option('--output <file>', 'write the .cast file here (mode 0600) instead of standard output')
    .action(async (id: string, o: { output?: string }, cmd: Command) => {
      await withClient(globals(cmd), async (c) => {
        const cast = await c.text('bulwark', `/console/recordings/${encodeURIComponent(id)}/cast`);
        if (o.output) {
          writeFileSync(o.output, cast, { mode: 0o600 });
          printObject('table', { recording: id, written: o.output, bytes: Buffer.byteLength(cast) });
        } else process.stdout.write(cast);
      });
    });
}
