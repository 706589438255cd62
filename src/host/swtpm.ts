import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, constants, fchmodSync, fchownSync, fstatSync, openSync } from 'node:fs';
import { lstat, mkdir, readdir, unlink } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { BulwarkError, conflict } from '../errors.js';
import type { GuestSpec } from './hypervisor.js';
import { errno } from './instance-files.js';
import { GUEST_ID, type InstanceLayout } from './layout.js';
import { isLive, type ProcInfo, procInfo, sameProcess, waitGone } from './procfs.js';
import { sleep } from './run.js';
import type { VmUser } from './users.js';

/**
 * One swtpm per vTPM guest (docs/host.md, "vTPM").
 *
 * - It runs as the guest's own user, in the guest's cgroup, with its state in
 *   `<guest dir>/tpm/` (0700, the guest's user) and its control socket at
 *   `<guest dir>/swtpm.sock`, which QEMU connects to (QEMU hands swtpm the
 *   data channel over it).
 * - The state is encrypted (AES-256-CBC) with the server's 256-bit key from
 *   the key manager. The key reaches swtpm on an inherited pipe (`--key
 *   fd=3`), never through a file, the command line or the environment; the
 *   same key on fd 4 is the `--migration-key`, so the TPM state QEMU writes
 *   into a suspend image is encrypted too.
 * - `--terminate`: swtpm ends when QEMU closes the data channel, so it stops
 *   with the guest; the driver also kills it (and the cgroup removal does).
 */

export const SWTPM_KEY_BYTES = 32;

export interface SwtpmPaths {
  /** `--tpmstate dir=`: the guest's TPM state (encrypted), owned by its user. */
  stateDir: string;
  /** `--ctrl type=unixio,path=`: QEMU's `-chardev socket` connects here. */
  ctrlSocket: string;
  /** swtpm's stderr, root-only in the guest's host dir. */
  log: string;
}

export function swtpmPaths(L: Pick<InstanceLayout, 'dir' | 'hostDir'>): SwtpmPaths {
  return {
    stateDir: join(L.dir, 'tpm'),
    ctrlSocket: join(L.dir, 'swtpm.sock'),
    log: join(L.hostDir, 'swtpm.log'),
  };
}

/** The command line (pure). `keyFd`/`migrationKeyFd` are the child's fds carrying the key. */
export function swtpmArgs(
  version: NonNullable<GuestSpec['tpm']>['version'],
  paths: Pick<SwtpmPaths, 'stateDir' | 'ctrlSocket'>,
  fds: { keyFd: number; migrationKeyFd: number },
): string[] {
  // swtpm's option syntax has no escape for a comma.
  for (const p of [paths.stateDir, paths.ctrlSocket])
    if (p.includes(',') || !p.startsWith('/'))
      throw new BulwarkError('BadRequest', `The vTPM path ${p} must be absolute and hold no comma.`);
  return [
    'socket',
    ...(version === '2.0' ? ['--tpm2'] : []),
    '--tpmstate',
    `dir=${paths.stateDir},mode=0600`,
    '--ctrl',
    `type=unixio,path=${paths.ctrlSocket},mode=0600`,
    '--key',
    `fd=${fds.keyFd},mode=aes-256-cbc,format=binary`,
    '--migration-key',
    `fd=${fds.migrationKeyFd},mode=aes-256-cbc,format=binary`,
    '--log',
    'fd=1,level=1', // stdout: the root-only log (swtpm refuses fd=2)
    '--terminate',
  ];
}

/**
 * Makes (or checks) the guest's TPM state dir: a real directory, the guest's,
 * 0700. It lives in the guest's own dir, where its user can rename things, so
 * it is opened without following links and changed through that fd only.
 */
export async function ensureStateDir(paths: SwtpmPaths, user: VmUser): Promise<void> {
  await mkdir(paths.stateDir, { mode: 0o700 }).catch((err) => {
    if (errno(err) !== 'EEXIST') throw err;
  });
  let fd: number;
  try {
    fd = openSync(paths.stateDir, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
  } catch {
    throw conflict(`Unexpected file at ${paths.stateDir}; refusing to use it as TPM state.`);
  }
  try {
    const st = fstatSync(fd);
    if (st.uid !== user.uid && st.uid !== 0)
      throw conflict(`${paths.stateDir} belongs to another user; refusing to use it as TPM state.`);
    fchownSync(fd, user.uid, user.gid);
    fchmodSync(fd, 0o700);
  } finally {
    closeSync(fd);
  }
}

/** Live swtpm processes whose control socket is under `baseDir`, by guest id. */
export async function swtpmProcesses(baseDir: string): Promise<Map<string, ProcInfo[]>> {
  const prefix = `path=${baseDir}/`;
  const out = new Map<string, ProcInfo[]>();
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const p = await procInfo(Number(entry));
    if (!isLive(p) || !p.argv[0] || basename(p.argv[0]) !== 'swtpm') continue;
    for (const arg of p.argv) {
      if (!arg.startsWith('type=unixio,') || !arg.includes(prefix)) continue;
      const at = arg.indexOf(prefix) + prefix.length;
      const id = arg.slice(at, at + 36);
      if (GUEST_ID.test(id) && arg.slice(at + 36).startsWith('/swtpm.sock'))
        out.set(id, [...(out.get(id) ?? []), p]);
      break;
    }
  }
  return out;
}

/** Kills these swtpm processes and waits until they are gone. */
export async function killSwtpms(procs: readonly ProcInfo[]): Promise<void> {
  for (const p of procs) {
    if (!(await sameProcess(p.pid, p.startTime))) continue;
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      continue;
    }
    await waitGone(p.pid, p.startTime, 5000);
  }
}

export interface StartSwtpmOptions {
  binary?: string;
  version: NonNullable<GuestSpec['tpm']>['version'];
  paths: SwtpmPaths;
  user: VmUser;
  /** The state key (32 bytes); written to the child's pipe and not kept. */
  key: Buffer;
  /** Puts the process in the guest's cgroup before QEMU exists. */
  confine?: (pid: number) => Promise<void>;
  timeoutMs?: number;
  /**
   * Called when this swtpm (started and ready) exits, with how it ended (`signal SIGKILL`,
   * `status 1`): the child's own exit event, so the driver hears of it at once.
   */
  onExit?: (why: string) => void;
}

/**
 * Starts swtpm for a guest and waits for its control socket. The caller has
 * made the state dir and killed any earlier swtpm of this guest.
 */
export async function startSwtpm(opts: StartSwtpmOptions): Promise<{ pid: number; startTime: number }> {
  if (opts.key.length !== SWTPM_KEY_BYTES)
    throw new BulwarkError('Unavailable', 'The vTPM state key must be 256 bits; refusing to start the vTPM.');
  const { paths } = opts;
  await unlink(paths.ctrlSocket).catch(() => undefined);
  const log = openSync(
    paths.log,
    constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW,
    0o600,
  );
  let child: ChildProcess;
  try {
    child = spawn(opts.binary ?? 'swtpm', swtpmArgs(opts.version, paths, { keyFd: 3, migrationKeyFd: 4 }), {
      uid: opts.user.uid,
      gid: opts.user.gid,
      detached: true,
      // fds 3 and 4: pipes the key is written to, then closed. Nothing on disk, argv or env.
      stdio: ['ignore', log, log, 'pipe', 'pipe'],
      cwd: paths.stateDir,
      env: { PATH: '/usr/bin:/bin', LC_ALL: 'C' },
    });
  } finally {
    closeSync(log);
  }
  let exited: string | null = null;
  let ready = false;
  child.on('error', (err) => {
    exited = err.message;
  });
  child.once('exit', (code, signal) => {
    exited = signal ? `signal ${signal}` : `status ${code}`;
    if (ready) opts.onExit?.(exited);
  });
  for (const fd of [3, 4]) {
    const s = child.stdio[fd] as NodeJS.WritableStream | null | undefined;
    s?.on('error', () => undefined);
    s?.end(opts.key);
  }
  child.unref();
  const pid = child.pid;
  const fail = async (why: string): Promise<never> => {
    if (pid !== undefined) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    throw new BulwarkError('Unavailable', `The vTPM (swtpm) could not start: ${why}.`);
  };
  if (pid === undefined) return fail('swtpm could not be run');
  const info = await procInfo(pid);
  if (!isLive(info)) return fail(`swtpm exited (${exited ?? 'at once'})`);
  if (opts.confine) await opts.confine(pid).catch((err: Error) => fail(err.message));
  const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
  while (Date.now() < deadline) {
    if (exited || !(await sameProcess(pid, info.startTime))) return fail(`swtpm exited (${exited ?? '?'})`);
    const st = await lstat(paths.ctrlSocket).catch(() => null);
    if (st?.isSocket()) {
      ready = true;
      return { pid, startTime: info.startTime };
    }
    await sleep(25);
  }
  return fail('its control socket did not appear');
}
