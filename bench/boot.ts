/**
 * Server create → guest marker on the console: the real QEMU driver
 * (src/host/qemu-driver.ts: guest user, overlay disk, cgroup, sandboxed QEMU
 * started paused, QMP `cont`) against the exact QEMU command line that
 * driver ran, started again by hand as the same user with the same
 * descriptors and a bare QMP `cont`. Tiny BIOS guest from guests/out, TCG.
 * Rounds alternate (driver, by hand, ...); medians.
 *
 *   npx tsc -p bench/tsconfig.json && node dist-bench/bench/boot.js [rounds]
 */
import { spawn } from 'node:child_process';
import { chmodSync, closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createQemuDriver } from '../src/host/qemu-driver.js';
import { QmpClient } from '../src/host/qmp.js';
import { uuid } from '../src/util/ids.js';
import { emit, median, secs } from './lib/result.js';

const rounds = Number(process.argv[2] ?? 5);
const MARKER = 'BULWARK-GUEST-READY';
const image = join(process.cwd(), 'guests', 'out', 'bios.raw');

const count = (text: string) => text.split(MARKER).length - 1;
async function until(
  what: string,
  probe: () => Promise<boolean> | boolean,
  timeoutMs = 180_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}
const optOf = (argv: string[], key: string) => {
  const spec = argv.find((a) => a.includes(`${key}=`)) ?? '';
  return new RegExp(`${key}=([^,]+)`).exec(spec)?.[1] ?? '';
};

const base = mkdtempSync('/tmp/bw-bench-boot-');
chmodSync(base, 0o711);
const driver = await createQemuDriver({ baseDir: base, accel: 'tcg', cgroupParent: 'bulwark-bench' });
const ids: string[] = [];
try {
  const viaDriver: number[] = [];
  const byHand: number[] = [];
  const phases: { define: number; start: number; marker: number }[] = [];
  let argvShown = '';
  for (let r = 0; r < rounds; r++) {
    const id = uuid();
    ids.push(id);
    let argv: string[] = [];
    let uid = 0;
    let gid = 0;
    const ph = { define: 0, start: 0, marker: 0 };
    viaDriver.push(
      await secs(async () => {
        ph.define = await secs(() =>
          driver.define({
            id,
            name: `bench-boot-${r}`,
            vcpus: 1,
            memoryMiB: 256,
            machine: 'pc',
            firmware: { type: 'bios' },
            bootDisk: { imagePath: image, imageFormat: 'raw', sizeGiB: 1 },
          }),
        );
        ph.start = await secs(() => driver.start(id));
        ph.marker = await secs(() =>
          until('the marker (driver)', async () => count(await driver.consoleLog(id)) >= 1),
        );
      }),
    );
    phases.push(ph);
    const info = await driver.processInfo(id);
    if (!info) throw new Error('the driver reports no QEMU process');
    argv = readFileSync(`/proc/${info.pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
    const status = readFileSync(`/proc/${info.pid}/status`, 'utf8');
    uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]);
    gid = Number(/^Gid:\s+(\d+)/m.exec(status)?.[1]);
    argvShown ||= argv.join(' ');
    await driver.shutdown(id, { timeoutMs: 1000 });
    // The same argv, by hand: same user, the image on fd 3, the guest's dir, then `cont` (QEMU starts with -S).
    const dir = driver.layout(id).dir;
    const consoleLog = optOf(argv, 'logfile');
    const before = count(readFileSync(consoleLog, 'utf8'));
    const fd = openSync(image, 'r');
    const err = openSync(join(dir, 'bench-stderr.log'), 'w');
    let child: ReturnType<typeof spawn> | undefined;
    try {
      byHand.push(
        await secs(async () => {
          child = spawn(argv[0] as string, argv.slice(1), {
            uid,
            gid,
            cwd: dir,
            stdio: ['ignore', err, err, fd],
            env: { PATH: '/usr/bin:/bin', LC_ALL: 'C' },
          });
          let qmp: QmpClient | undefined;
          await until('QMP (by hand)', async () => {
            qmp = await QmpClient.connect(optOf(argv, 'path'), { connectTimeoutMs: 2000 }).catch(
              () => undefined,
            );
            return qmp !== undefined;
          });
          await qmp?.execute('cont');
          qmp?.close();
          await until('the marker (by hand)', () => count(readFileSync(consoleLog, 'utf8')) > before);
        }),
      );
    } finally {
      child?.kill('SIGKILL');
      closeSync(fd);
      closeSync(err);
    }
    await sleep(300);
    await driver.undefine(id);
    process.stderr.write(
      `boot round ${r + 1}: driver ${viaDriver.at(-1)?.toFixed(2)} s (${JSON.stringify(ph)}), by hand ${byHand.at(-1)?.toFixed(2)} s\n`,
    );
  }
  const d = median(viaDriver);
  const h = median(byHand);
  const overhead = d / h - 1;
  emit({
    rows: [
      {
        what: 'server create → guest marker on the console (BIOS guest, 256 MiB, TCG)',
        baseline: `same QEMU argv by hand: ${h.toFixed(2)} s`,
        subject: `QEMU driver define + start: ${d.toFixed(2)} s`,
        ratio: `${(d / h).toFixed(3)}× (overhead ${(overhead * 100).toFixed(1)}%)`,
        target: 'overhead ≤ 15%',
        met: overhead <= 0.15,
        note:
          'the driver path is define (guest user, qcow2 overlay, record) + start (cgroup, sandboxed QEMU paused, QMP, cont); ' +
          'the API and scheduler in front of it are not in this figure (they answer 202 before the driver runs). ' +
          `Median phases: define ${median(phases.map((p) => p.define)).toFixed(2)} s, start ${median(phases.map((p) => p.start)).toFixed(2)} s, ` +
          `start → marker ${median(phases.map((p) => p.marker)).toFixed(2)} s.`,
      },
    ],
    details: [
      `${rounds} alternating rounds (driver, then the same argv by hand), medians. The captured argv: \`${argvShown.replaceAll(base, '$BASE')}\``,
    ],
  });
} finally {
  for (const id of ids) await driver.undefine(id).catch(() => undefined);
  await driver.close();
  rmSync(base, { recursive: true, force: true });
}
