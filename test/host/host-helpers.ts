import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { GuestSpec } from '../../src/host/hypervisor.js';
import { uuid } from '../../src/util/ids.js';
import { guestImage, waitFor } from '../helpers/guests.js';

export const isRoot = process.getuid?.() === 0;
/** Debian's OVMF variable store that trusts the snakeoil key the signed test guest is signed with. */
export const SNAKEOIL_VARS = '/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd';

/** Waits until `needle` has appeared `times` times on a guest's console. */
export const waitConsole = (
  driver: { consoleLog(id: string): Promise<string> },
  id: string,
  needle: string,
  times = 1,
  timeoutMs = 60_000,
) =>
  waitFor(
    `${needle} x${times} on ${id}`,
    async () => (await driver.consoleLog(id)).split(needle).length - 1 >= times,
    timeoutMs,
    200,
  );
export const MiB = 1024 * 1024;

/** A 0711 base dir for one test file's guests (guest users must pass through it). */
export function makeBaseDir(tag: string): string {
  const dir = mkdtempSync(`/tmp/bw-host-${tag}-`);
  chmodSync(dir, 0o711);
  return dir;
}

export function biosSpec(over: Partial<GuestSpec> = {}): GuestSpec {
  return {
    id: uuid(),
    name: 'host-test',
    vcpus: 1,
    memoryMiB: 256,
    machine: 'pc',
    firmware: { type: 'bios' },
    bootDisk: { imagePath: guestImage('bios.raw'), imageFormat: 'raw', sizeGiB: 1 },
    ...over,
  };
}

/** Pids of processes whose command line mentions `path`. */
export function pidsMentioning(path: string): number[] {
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${e}/cmdline`, 'utf8').includes(path)) out.push(Number(e));
    } catch {
      // gone
    }
  }
  return out;
}

export const userExists = (name: string): boolean =>
  spawnSync('getent', ['passwd', name], { stdio: 'ignore' }).status === 0;
export const groupExists = (name: string): boolean =>
  spawnSync('getent', ['group', name], { stdio: 'ignore' }).status === 0;

/** Last-resort cleanup after a failed test: kill what mentions the dir, delete users, cgroups and files. */
export function scrub(baseDir: string, ids: Iterable<string>, cgroupPaths: (id: string) => string[]): void {
  for (const pid of pidsMentioning(`${baseDir}/`)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  spawnSync('sleep', ['0.3']);
  for (const id of ids) {
    const name = `bwvm-${id.replaceAll('-', '').slice(0, 12)}`;
    if (userExists(name)) spawnSync('userdel', [name], { stdio: 'ignore' });
    if (groupExists(name)) spawnSync('groupdel', [name], { stdio: 'ignore' });
    for (const p of cgroupPaths(id)) if (existsSync(p)) spawnSync('rmdir', [p], { stdio: 'ignore' });
  }
  rmSync(baseDir, { recursive: true, force: true });
}

/** What a real-driver suite's teardown needs of its driver. */
interface DriverToTearDown {
  undefine(id: string): Promise<unknown>;
  close(): Promise<unknown>;
  cgroups: { paths(name: string): string[] };
}

/**
 * A real-driver suite's afterAll: undefine its guests and close the driver, each bounded (a test that
 * failed mid-operation may still hold a guest's lock), run `beforeScrub` (e.g. kill stray swtpm), then scrub.
 */
export async function teardownDriver(
  driver: DriverToTearDown,
  baseDir: string,
  ids: Iterable<string>,
  beforeScrub?: () => Promise<void>,
): Promise<void> {
  const cg = driver.cgroups;
  const bounded = (p: Promise<unknown>) =>
    Promise.race([p.catch(() => undefined), new Promise((r) => setTimeout(r, 15_000))]);
  for (const id of ids) await bounded(driver.undefine(id));
  await bounded(driver.close());
  await beforeScrub?.();
  scrub(baseDir, ids, (id) => cg.paths(`vm-${id}`));
}

/** Runs a command as another user; returns its exit status and output. */
export function runAs(user: string, cmd: string[]): { status: number | null; out: string } {
  const r = spawnSync('runuser', ['-u', user, '--', ...cmd], { encoding: 'utf8', timeout: 15_000 });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

export const procStatus = (pid: number): string => readFileSync(`/proc/${pid}/status`, 'utf8');
export const procCmdline = (pid: number): string[] =>
  readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
export const cgroupOf = (pid: number): string => readFileSync(`/proc/${pid}/cgroup`, 'utf8');

export const sh = (cmd: string, args: string[]): string => execFileSync(cmd, args, { encoding: 'utf8' });
export { join };
