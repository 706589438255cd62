/**
 * `bulwark console SERVER` on a real guest (TCG) against the real daemon:
 * a command typed into the guest's busybox shell and its output, the
 * session recorded and encrypted at rest, replayed by the admin with
 * `bulwark console replay`, and the decrypted file played by Debian's
 * asciinema.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DaemonProcess, REPO, startDaemonProcess, stopDaemon } from '../helpers/daemon-process.js';
import { guestImage, waitFor } from '../helpers/guests.js';

describe.runIf(process.getuid?.() === 0)('console sessions on a real guest', { timeout: 300_000 }, () => {
  let d: DaemonProcess;
  const out = mkdtempSync(join(tmpdir(), 'bulwark-cast-'));
  beforeAll(async () => {
    d = await startDaemonProcess({ extraArgs: ['--metrics-listen', '127.0.0.1:9464'] });
  });
  afterAll(async () => {
    await stopDaemon(d);
    rmSync(out, { recursive: true, force: true });
  });

  const bw = async (...args: string[]) => {
    const r = await d.bulwark(args);
    if (r.code !== 0) throw new Error(`bulwark ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
    return r.stdout;
  };

  it('records a session typed into the guest shell; admin replays it; asciinema plays it', async () => {
    await bw('flavor', 'create', '--vcpus', '1', '--ram', '256', '--disk', '1', 'tiny');
    await bw(
      'image',
      'create',
      '--file',
      guestImage('bios.raw'),
      '--property',
      'hw_machine_type=pc',
      '--property',
      'hw_firmware_type=bios',
      'tiny-bios',
    );
    await bw('server', 'create', '--flavor', 'tiny', '--image', 'tiny-bios', '--wait', 'vm1');
    await waitFor(
      'guest shell',
      async () => (await bw('server', 'console-log', 'vm1')).includes('BULWARK-GUEST-READY'),
      120_000,
      1000,
    );

    // The real CLI, in the daemon's namespace, with piped input: the session ends when input does.
    const cli = spawn(
      'nsenter',
      [
        `--net=/run/netns/${d.netns}`,
        '--',
        process.execPath,
        join(REPO, 'bin', 'bulwark.js'),
        'console',
        'vm1',
      ],
      { env: d.env, stdio: ['pipe', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    cli.stdout.on('data', (b: Buffer) => {
      stdout += b.toString('utf8');
    });
    cli.stderr.on('data', (b: Buffer) => {
      stderr += b.toString('utf8');
    });
    const exited = new Promise<number | null>((r) => cli.once('exit', (code) => r(code)));
    await waitFor('connected', async () => stderr.includes('This session is recorded'), 30_000, 100);
    // $((6*7)) is expanded by the guest's shell: the answer can only come from the guest.
    cli.stdin.write('\recho BW-$((6*7))-OK\r');
    await waitFor('guest output', async () => stdout.includes('BW-42-OK'), 60_000, 100);
    cli.stdin.end();
    expect(await exited).toBe(0);

    const recs = JSON.parse(await bw('console', 'recordings', '-f', 'json'));
    expect(recs).toHaveLength(1);
    const rec = recs[0];
    const server = JSON.parse(await bw('server', 'show', 'vm1', '-f', 'json'));
    expect(rec).toMatchObject({
      server_id: server.id,
      server_name: 'vm1',
      user_name: 'admin',
      interrupted: false,
    });
    expect(rec.ended_at).not.toBeNull();

    // Encrypted at rest: the guest's answer is nowhere in the recordings dir.
    const dir = join(d.dataDir, 'console-recordings');
    for (const f of readdirSync(dir)) expect(readFileSync(join(dir, f)).includes('BW-42-OK')).toBe(false);

    const cast = join(out, 'vm1.cast');
    await bw('console', 'replay', rec.id, '--output', cast);
    const [header, ...events] = readFileSync(cast, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(header).toMatchObject({ version: 2, width: 80, height: 24 });
    const typed = events
      .filter((e) => e[1] === 'i')
      .map((e) => e[2])
      .join('');
    const shown = events
      .filter((e) => e[1] === 'o')
      .map((e) => e[2])
      .join('');
    expect(typed).toContain('echo BW-$((6*7))-OK');
    expect(shown).toContain('BW-42-OK');

    // Debian's asciinema reads it (it wants a terminal, so under script(1)'s pty): `cat` dumps, `play` replays.
    const underPty = (cmd: string) =>
      execFileSync('timeout', ['60', 'script', '-qec', cmd, '/dev/null'], { encoding: 'utf8' });
    expect(underPty(`asciinema cat ${cast}`)).toContain('BW-42-OK');
    const played = underPty(`asciinema play -s 100 -i 0.1 ${cast}`);
    expect(played).toContain('BW-42-OK');

    // The separate metrics listener (--metrics-listen, inside the daemon's namespace) reports the session.
    const metrics = execFileSync(
      'nsenter',
      [
        `--net=/run/netns/${d.netns}`,
        '--',
        process.execPath,
        '-e',
        "fetch('http://127.0.0.1:9464/metrics').then(async (r) => process.stdout.write(r.status + '\\n' + (await r.text())))",
      ],
      { encoding: 'utf8' },
    );
    expect(metrics.split('\n')[0]).toBe('200');
    expect(metrics).toMatch(/^bulwark_servers\{status="ACTIVE"\} 1$/m);
    expect(metrics).toMatch(/^bulwark_console_sessions_open 0$/m);
    expect(metrics).toMatch(
      /^bulwark_security_events_total\{category="console.session",severity="medium"\} 1$/m,
    );
  });
});
