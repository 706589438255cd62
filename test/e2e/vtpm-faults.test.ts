/**
 * Fault injection, the vTPM emulator dying (issue 14 item 5, docs/reliability.md):
 * the real daemon, a real vTPM guest (TCG) and its real swtpm, killed with -9.
 *   - under the running daemon: the guest is stopped at once (fail closed),
 *     the server shows a fault naming the swtpm's exit, a security event is
 *     audited, and the daemon restarts swtpm from its encrypted state and the
 *     guest by itself: ACTIVE again, and the guest reads back the NV index it
 *     wrote on its first boot (the NV_DefineSpace it retries is refused as
 *     already defined: the TPM state survived);
 *   - while the daemon is down: reconcile finds the guest without its swtpm,
 *     stops it and recovers it the same way;
 *   - under an adopted guest (its swtpm not the daemon's child) once the
 *     restart budget (--vtpm-restarts 2) is used: ERROR with a fault saying
 *     what to do, not restarted; `server stop` + `server start` bring it back
 *     with the same TPM state.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DaemonHttp, daemonHttp } from '../helpers/daemon-http.js';
import { type DaemonProcess, startDaemonProcess, stopDaemon } from '../helpers/daemon-process.js';
import { reportFigures } from '../helpers/figures.js';
import { imageCreateArgs, waitFor } from '../helpers/guests.js';
import { guestProcesses, killGuests, processAlive } from '../helpers/host-leftovers.js';
import { NV_SIZE, nvDefine, nvRead, nvWrite, RC_NV_DEFINED, rcOf, tpmCall } from '../helpers/tpm.js';

const RESTARTS = 2;
const survived: string[] = [];

describe.runIf(process.getuid?.() === 0)('fault injection: swtpm dying', { timeout: 900_000 }, () => {
  let d: DaemonProcess;
  let http: DaemonHttp;
  let token = '';
  const seen = new Set<string>();
  const secret = randomBytes(NV_SIZE / 2).toString('hex'); // 16 ASCII bytes: the NV value
  const secretHex = Buffer.from(secret, 'ascii').toString('hex');
  const startedAt = Date.now();
  const figures = { restarts: 0, recoveredMs: [] as number[] };

  const start = (dataDir?: string, netns?: string) =>
    startDaemonProcess({
      extraArgs: ['--vtpm-restarts', String(RESTARTS)],
      startTimeoutMs: 240_000,
      ...(dataDir ? { dataDir } : {}),
      ...(netns ? { netns } : {}),
    });
  const connect = async () => {
    http = await daemonHttp(d, { timeoutMs: 90_000 });
    token = await http.login();
  };

  beforeAll(async () => {
    d = await start();
    await connect();
    await d.os('flavor', 'create', '--vcpus', '1', '--ram', '256', '--disk', '1', 'tpm-tiny');
    await d.os(
      'flavor',
      'set',
      '--property',
      'hw:tpm_model=tpm-crb',
      '--property',
      'hw:tpm_version=2.0',
      'tpm-tiny',
    );
    await d.os(...imageCreateArgs('tiny-bios', 'bios.raw'));
    await d.os('network', 'create', 'tpm-net');
    await d.os('subnet', 'create', '--network', 'tpm-net', '--subnet-range', '10.79.0.0/24', 'tpm-subnet');
    // Every boot: define the NV index and, only if that worked (a TPM that never had it), write the
    // secret; then read it back. A TPM whose state survived refuses the define and still reads the secret.
    const script = join(d.dataDir, 'tpm-user-data.sh');
    writeFileSync(
      script,
      [
        '#!/bin/sh',
        `out=$(${tpmCall('NVDEF', nvDefine())})`,
        'echo "$out"',
        `case "$out" in "NVDEF "????????????00000000*) ${tpmCall('NVWRITE', nvWrite(Buffer.from(secret, 'ascii')))} ;; esac`,
        tpmCall('NVREAD', nvRead()),
      ].join('\n'),
    );
    // No --wait: the CLI's own deadline is too short for a TCG boot on a loaded host.
    const vm = await d.osJson(
      ...['server', 'create', '--flavor', 'tpm-tiny', '--image', 'tiny-bios', '--network', 'tpm-net'],
      ...['--user-data', script, 'vm'],
    );
    seen.add(vm.id);
    await untilActive();
    const first = await boots(1);
    expect(first).toContain('BULWARK-TPM: present');
    expect(rcOf(first, 'NVDEF')).toBe('00000000');
    expect(rcOf(first, 'NVWRITE')).toBe('00000000');
  }, 600_000);

  afterAll(async () => {
    await http?.close();
    const dataDir = d?.dataDir;
    try {
      await stopDaemon(d);
    } finally {
      if (dataDir) killGuests(dataDir, seen);
      reportFigures('fault-injection-vtpm', {
        faultsSurvived: survived.length,
        faults: survived,
        automaticRestarts: figures.restarts,
        recoveredMs: figures.recoveredMs,
        seconds: Math.round((Date.now() - startedAt) / 1000),
      });
    }
  }, 300_000);

  const api = (method: string, path: string, body?: unknown) => http.call(method, path, token, body);
  const show = async () => (await api('GET', '/compute/v2.1/servers/detail')).json.servers[0];
  const events = async (action: string) =>
    (await api('GET', `/bulwark/v1/audit/events?action=${encodeURIComponent(action)}`)).json.events as {
      outcome: string;
      reason: string;
      target_id: string;
    }[];
  const procs = (kind: 'qemu' | 'swtpm') => guestProcesses(d.dataDir).filter((p) => p.kind === kind);
  /** The console once the guest's user data has run `n` times (one per boot). */
  async function boots(n: number): Promise<string> {
    return waitFor(
      `boot ${n} ran its user data`,
      async () => {
        const text = await d.os('console', 'log', 'show', 'vm');
        return (text.match(/BULWARK-RUN-END/g) ?? []).length >= n ? text : false;
      },
      180_000,
      1000,
    );
  }
  /** Boot `n` saw the TPM state of the first boot: the index was already defined and holds the secret. */
  async function expectSameTpm(n: number) {
    const text = await boots(n);
    expect(rcOf(text, 'NVDEF', n)).toBe(RC_NV_DEFINED);
    expect(rcOf(text, 'NVREAD', n)).toBe('00000000');
    const reads = [...text.matchAll(/NVREAD ([0-9a-f]+)/g)].map((m) => m[1] ?? '');
    expect(reads[n - 1]).toContain(secretHex);
  }
  const untilActive = () =>
    waitFor(
      'ACTIVE',
      async () => {
        const s = await show();
        if (s?.status === 'ERROR') throw new Error(`ERROR: ${s.fault?.message}`);
        return s?.status === 'ACTIVE' && s['OS-EXT-STS:task_state'] === null ? s : false;
      },
      300_000,
      500,
    );

  it('swtpm killed under the running guest: stopped, fault, audited; restarted with its TPM state, ACTIVE', async () => {
    const [qemu] = procs('qemu');
    const [swtpm] = procs('swtpm');
    expect(qemu && swtpm).toBeTruthy();
    const t0 = Date.now();
    process.kill(swtpm?.pid as number, 'SIGKILL');
    // Fail closed: the guest is stopped, and the server says why while the restart waits.
    const down = await waitFor(
      'SHUTOFF with a fault',
      async () => {
        const s = await show();
        return s.status === 'SHUTOFF' && s.fault ? s : false;
      },
      30_000,
      200,
    );
    expect(down.fault.message).toMatch(
      /vTPM emulator \(swtpm\) exited while the guest was running \(it ended with signal SIGKILL\), so the guest was stopped.*automatic restart 1 of 2/,
    );
    expect(processAlive(qemu?.pid as number)).toBe(false);
    const lost = await events('server:vtpm_lost');
    expect(lost).toHaveLength(1);
    expect(lost[0]).toMatchObject({ outcome: 'failure', target_id: down.id });
    expect(lost[0]?.reason).toMatch(/signal SIGKILL/);

    const back = await untilActive();
    figures.recoveredMs.push(Date.now() - t0);
    figures.restarts++;
    expect(back.fault).toBeUndefined();
    expect(procs('qemu')).toHaveLength(1);
    expect(procs('qemu')[0]?.pid).not.toBe(qemu?.pid);
    expect(procs('swtpm')).toHaveLength(1);
    await expectSameTpm(2);
    const recovered = await events('server:vtpm_recovered');
    expect(recovered).toHaveLength(1);
    expect(recovered[0]?.outcome).toBe('success');
    survived.push('swtpm-killed');
  });

  it('swtpm dead while the daemon was down: reconcile stops the guest and recovers it the same way', async () => {
    const [qemu] = procs('qemu');
    await http.close();
    await d.kill('SIGKILL');
    const [swtpm] = procs('swtpm');
    process.kill(swtpm?.pid as number, 'SIGKILL');
    // The guest goes on without its TPM while no daemon watches it.
    await new Promise((r) => setTimeout(r, 1000));
    expect(processAlive(qemu?.pid as number)).toBe(true);
    const t0 = Date.now();
    d = await start(d.dataDir, d.netns);
    await connect();
    // Before serving, the daemon stopped the guest: no QEMU without its TPM.
    expect(processAlive(qemu?.pid as number)).toBe(false);
    // (The restart may already be done on a slow start-up: what happened is read from the audit log.)
    const lost = await events('server:vtpm_lost');
    expect(lost).toHaveLength(2);
    expect(lost[0]?.reason).toMatch(/vTPM emulator exited \(it was gone when the daemon restarted\)/);
    const restarts = await events('server:vtpm_restart');
    expect(restarts[0]?.reason).toBe('automatic restart 2 of 2');
    await untilActive();
    figures.recoveredMs.push(Date.now() - t0);
    figures.restarts++;
    await expectSameTpm(3);
    survived.push('swtpm-dead-at-restart');
  });

  it('once the restarts are used up: ERROR saying what to do, not restarted; stop + start bring it back', async () => {
    // A daemon restart first: the guest and its swtpm are adopted (the swtpm is no child of this daemon).
    const [qemu] = procs('qemu');
    await http.close();
    await d.kill('SIGTERM');
    d = await start(d.dataDir, d.netns);
    await connect();
    expect(procs('qemu').map((p) => p.pid)).toEqual([qemu?.pid]);
    expect((await show()).status).toBe('ACTIVE');

    const [swtpm] = procs('swtpm');
    process.kill(swtpm?.pid as number, 'SIGKILL');
    const failed = await waitFor(
      'ERROR',
      async () => {
        const s = await show();
        return s.status === 'ERROR' ? s : false;
      },
      60_000,
      500,
    );
    expect(processAlive(qemu?.pid as number)).toBe(false);
    expect(failed.fault.message).toMatch(/it was found gone/);
    // The real openstack CLI shows the same fault.
    const cli = await d.osJson('server', 'show', 'vm');
    expect(cli.status).toBe('ERROR');
    expect(cli.fault.message).toMatch(
      /vTPM emulator \(swtpm\) exited .*Automatic restarts are used up \(2 an hour\).*TPM state is kept.*swtpm\.log.*openstack server stop.*openstack server start/,
    );
    const exhausted = await events('server:vtpm_restarts_exhausted');
    expect(exhausted).toHaveLength(1);
    expect(exhausted[0]?.outcome).toBe('failure');
    expect(await events('server:vtpm_lost')).toHaveLength(3);
    // Not restarted: no QEMU, no swtpm, still ERROR after the longest restart wait.
    await new Promise((r) => setTimeout(r, 12_000));
    expect(guestProcesses(d.dataDir)).toEqual([]);
    expect((await show()).status).toBe('ERROR');
    expect(await events('server:vtpm_restart')).toHaveLength(2);

    // What the fault says to do works, and the TPM state is still the first boot's.
    await d.os('server', 'stop', 'vm');
    await waitFor('SHUTOFF', async () => (await show()).status === 'SHUTOFF', 60_000, 500);
    await d.os('server', 'start', 'vm');
    const back = await untilActive();
    expect(back.fault).toBeUndefined();
    await expectSameTpm(4);
    expect((await api('GET', '/bulwark/v1/audit/verify')).json.verification.ok).toBe(true);
    survived.push('swtpm-restart-limit');
  });
});
