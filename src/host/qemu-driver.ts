import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, constants, existsSync, openSync, statSync } from 'node:fs';
import {
  chmod,
  copyFile,
  lchown,
  link,
  lstat,
  mkdir,
  readdir,
  rename,
  rm,
  unlink,
  writeFile,
} from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Duplex } from 'node:stream';
import { GUEST_AGENT_SOCKET } from '../compute/guest-agent.js';
import { BulwarkError, badRequest, conflict, notFound } from '../errors.js';
import { cgroupLimitsFor, detectCgroups, type VmCgroups } from './cgroups.js';
import { type DiskHandle, fileStamp, openQcow2 } from './disk-export.js';
import { collectFile, type ForensicFile } from './forensics.js';
import { guestAgentCall } from './guest-agent-channel.js';
import {
  commitGuestFiles,
  type GuestFile,
  listGuestFiles,
  readGuestFile,
  writeGuestFile,
} from './guest-transfer.js';
import type {
  DiskKeySource,
  GuestSpec,
  GuestState,
  HypervisorDriver,
  TpmKeySource,
  VolumeKeySource,
} from './hypervisor.js';
import {
  connectGuestSocket,
  createOverlay,
  type Desired,
  errno,
  type GuestRecord,
  inspectImage,
  placeFile,
  readConsoleLog,
  readRecord,
  stderrTail,
  writeRecord,
} from './instance-files.js';
import { probeAccel } from './kvm-probe.js';
import { GUEST_ID, HOST_DIR, type InstanceLayout, instanceLayout } from './layout.js';
import {
  finishIncoming,
  type IncomingMigration,
  type MigrationProgress,
  type OutgoingMigration,
  progressOf,
  removeTlsDir,
  sendOutgoing,
  startIncoming,
  writeTlsDir,
} from './live-migration.js';
import {
  checkVolumeFile,
  copyRootOverlay,
  createEncryptedOverlay,
  createQcow2,
  plugRootDisk,
  plugVolume,
  resizeQcow2,
  unplugVolume,
  volumeNodes,
} from './luks.js';
import { buildSeed } from './nocloud.js';
import { isLive, processesOf, procInfo, qemuProcesses, sameProcess, waitGone } from './procfs.js';
import {
  type Accel,
  buildQemuArgs,
  DISK_PORT,
  fwCfgEntries,
  OVMF_DIR,
  throttleLimits,
  uefiImages,
  VOLUME_PORTS,
  validateGuestSpec,
  volumePort,
} from './qemu-args.js';
import { isObject, QmpClient, QmpError } from './qmp.js';
import { KeyedMutex, sleep } from './run.js';
import { receiveState, type StateReceiver } from './save-state.js';
import { fileSnapshot, liveSnapshot, liveSnapshotDelete } from './snapshots.js';
import { stateCipher } from './state-cipher.js';
import { ensureStateDir, killSwtpms, startSwtpm, swtpmPaths, swtpmProcesses } from './swtpm.js';
import { deleteTaps, ensureTaps } from './taps.js';
import { ensureVmUser, lookupVmUser, removeVmUser, userNameOf, vmUserName } from './users.js';

type Qmp = QmpClient;

export { probeAccel } from './kvm-probe.js';

export interface QemuDriverOptions {
  /** Holds one 0700 directory per guest, owned by that guest's user (made 0711, root). */
  baseDir: string;
  /** Forces the accelerator; by default BULWARK_ACCEL, else a probe boot decides (kvm-probe.ts). */
  accel?: Accel;
  /**
   * UEFI variable store template for Secure Boot guests, copied per guest.
   * Default Debian's OVMF_VARS_4M.ms.fd (Microsoft keys enrolled); tests use
   * OVMF_VARS_4M.snakeoil.fd, whose signing key is public.
   */
  secureBootVars?: string;
  ovmfDir?: string;
  qemuBinary?: string;
  /** Parent of the per-guest cgroups (`<parent>/vm-<id>`). Default `bulwark`. */
  cgroupParent?: string;
  /** Injected cgroups backend (tests); detected by default. */
  cgroups?: VmCgroups;
  /** How long start() waits for QEMU's QMP socket to answer. Default 30 s. */
  startTimeoutMs?: number;
  /** The swtpm binary for vTPM guests. Default `swtpm` on the PATH. */
  swtpmBinary?: string;
  /**
   * Secure Boot guests: how long the console is watched for the firmware
   * refusing the boot loader (OVMF's `Access Denied`). Default 180 s.
   */
  secureBootWatchMs?: number;
}

/** A running vTPM guest's swtpm, watched (docs/host.md, "vTPM emulator dying"). */
interface WatchedTpm {
  pid: number;
  startTime: number;
  /** Found running at reconcile (not this daemon's child, so no exit event): polled instead. */
  adopted: boolean;
}

/** How often an adopted swtpm (no exit event: not our child) is checked. */
const ADOPTED_TPM_POLL_MS = 2000;
/** swtpm --terminate ends with QEMU: a QEMU gone within this long was ending anyway, not left without a TPM. */
const TPM_EXIT_GRACE_MS = 2000;

interface Live {
  qmp: Qmp;
  pid: number;
  pidStart: number;
  /** Set when the driver itself ends the process, so the exit is not reported as a crash. */
  expectExit: boolean;
}

const GiB = 1024 ** 3;
/** The root overlay's qcow2 node (qemu-args.ts, luks.ts#plugRootDisk): where server snapshots go. */
const ROOT_NODE = 'disk0-fmt';
const cgroupName = (id: string) => `vm-${id}`;

/**
 * Runs guests as QEMU processes driven over QMP. Each guest has its own
 * system user, 0700 directory and cgroup; QEMU is spawned directly as that
 * user with the seccomp sandbox on, started paused, put in its cgroup, then
 * continued. QEMU is detached (own session, stdio on files), so guests
 * outlive the daemon and reconcile() adopts them after a restart.
 */
export class QemuDriver implements HypervisorDriver {
  private readonly lock = new KeyedMutex();
  /** QEMU's chardev serves one client at a time: one guest agent request per guest at a time. */
  private readonly agentLock = new KeyedMutex();
  private readonly live = new Map<string, Live>();
  private readonly tpms = new Map<string, WatchedTpm>();
  private tpmPoll: NodeJS.Timeout | undefined;
  private readonly connecting = new Map<string, Promise<Qmp>>();
  private readonly listeners = new Set<(id: string, event: string, data: unknown) => void>();
  private closing = false;
  private readonly baseDir: string;
  private readonly qemu: string;
  private readonly ovmfDir: string;
  private readonly secureBootVars: string;
  private readonly startTimeoutMs: number;
  private readonly swtpm: string;
  private readonly secureBootWatchMs: number;
  private tpmKeySource: TpmKeySource | undefined;
  private volumeKeys: VolumeKeySource | null = null;

  constructor(
    opts: QemuDriverOptions,
    readonly accel: Accel,
    readonly cgroups: VmCgroups,
  ) {
    this.baseDir = opts.baseDir;
    this.qemu = opts.qemuBinary ?? 'qemu-system-x86_64';
    this.ovmfDir = opts.ovmfDir ?? OVMF_DIR;
    this.secureBootVars = opts.secureBootVars ?? `${this.ovmfDir}/OVMF_VARS_4M.ms.fd`;
    this.startTimeoutMs = opts.startTimeoutMs ?? 30_000;
    this.swtpm = opts.swtpmBinary ?? 'swtpm';
    this.secureBootWatchMs = opts.secureBootWatchMs ?? 180_000;
  }

  /** Makes the base layout: base dir 0711 root (guest users pass through, cannot list), .host 0700. */
  async init(): Promise<void> {
    await mkdir(this.baseDir, { recursive: true, mode: 0o711 });
    await chmod(this.baseDir, 0o711);
    await mkdir(join(this.baseDir, HOST_DIR), { recursive: true, mode: 0o700 });
    await chmod(join(this.baseDir, HOST_DIR), 0o700);
    await mkdir(this.volumesDir, { recursive: true, mode: 0o700 });
    await chmod(this.volumesDir, 0o700);
    // Each guest's user must be able to reach its directory: every ancestor needs o+x.
    for (let d = dirname(this.baseDir); ; d = dirname(d)) {
      if ((statSync(d).mode & 0o001) === 0)
        throw new BulwarkError(
          'Unavailable',
          `${d} is not traversable by other users (mode o+x); guests' users could not reach ${this.baseDir}.`,
        );
      if (d === dirname(d)) break;
    }
  }

  layout(id: string): InstanceLayout {
    return instanceLayout(this.baseDir, id);
  }

  onEvent(listener: (id: string, event: string, data: unknown) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(id: string, event: string, data: unknown = {}): void {
    for (const l of [...this.listeners]) {
      try {
        l(id, event, data);
      } catch {
        // a listener's failure is its own
      }
    }
  }

  // ---- records -------------------------------------------------------------------------------

  private readRecord(id: string): Promise<GuestRecord | null> {
    return readRecord(this.layout(id), id);
  }

  private writeRecord(rec: GuestRecord): Promise<void> {
    return writeRecord(this.layout(rec.spec.id), rec);
  }

  private async record(id: string): Promise<GuestRecord> {
    const rec = await this.readRecord(id);
    if (!rec) throw notFound('server on this host', id);
    return rec;
  }

  /** The guest's QEMU if it is running: the recorded pid, same start time, the guest's uid. */
  private async process(rec: GuestRecord) {
    if (rec.pid === null || rec.pidStart === null) return null;
    const p = await sameProcess(rec.pid, rec.pidStart);
    return p && p.uid === rec.user.uid ? p : null;
  }

  // ---- define --------------------------------------------------------------------------------

  async define(given: GuestSpec): Promise<void> {
    validateGuestSpec(given);
    const spec = this.withTpmSocket(given);
    await this.lock.run(spec.id, async () => {
      const L = this.layout(spec.id);
      this.checkSecureBootFirmware(spec);
      const existing = await this.readRecord(spec.id);
      try {
        const overlay = await lstat(L.overlay).catch(() => null);
        const imageBytes = overlay ? 0 : await inspectImage(spec.bootDisk);
        const wanted = spec.bootDisk.sizeGiB > 0 ? spec.bootDisk.sizeGiB * GiB : imageBytes;
        if (!overlay && wanted < imageBytes)
          throw badRequest(
            `The flavor's disk (${spec.bootDisk.sizeGiB} GiB) is smaller than the image (${(imageBytes / GiB).toFixed(1)} GiB); choose a larger flavor.`,
          );
        const user = await ensureVmUser(spec.id);
        await mkdir(L.staging, { recursive: true, mode: 0o700 });
        await mkdir(L.dir, { mode: 0o700 }).catch((err) => {
          if (errno(err) !== 'EEXIST') throw err;
        });
        const st = await lstat(L.dir);
        if (!st.isDirectory()) throw conflict(`${L.dir} is not a directory; refusing to use it.`);
        await lchown(L.dir, user.uid, user.gid);
        await chmod(L.dir, 0o700);
        if (overlay && (!overlay.isFile() || overlay.uid !== user.uid))
          throw conflict(`Unexpected file at ${L.overlay}; refusing to use it.`);
        if (!overlay) {
          await placeFile(L, user, L.overlay, (tmp) =>
            spec.bootDisk.encrypted
              ? this.withDiskKey(spec.id, (key) => createEncryptedOverlay(tmp, spec.bootDisk, wanted, key))
              : createOverlay(tmp, spec.bootDisk, wanted),
          );
        }
        if (spec.firmware.type === 'uefi') {
          const vars = await lstat(L.vars).catch(() => null);
          if (!vars?.isFile() || vars.uid !== user.uid) {
            const template = spec.firmware.secureBoot
              ? this.secureBootVars
              : uefiImages(false, this.ovmfDir).varsTemplate;
            await placeFile(L, user, L.vars, (tmp) => copyFile(template, tmp));
          }
        }
        if (spec.tpm) await ensureStateDir(swtpmPaths(L), user);
        for (const f of await readdir(L.dir))
          if (f.startsWith('fw_cfg-')) await unlink(join(L.dir, f)).catch(() => undefined);
        for (const [i, [, value]] of fwCfgEntries(spec).entries())
          await placeFile(L, user, L.fwCfgFile(i), (tmp) => writeFile(tmp, value, { mode: 0o600 }));
        if (spec.cloudInit) await placeFile(L, user, L.seed, (tmp) => buildSeed(tmp, spec, L.staging));
        else await unlink(L.seed).catch(() => undefined);
        await this.writeRecord({
          version: 1,
          spec,
          user,
          desired: existing?.desired ?? 'shutoff',
          pid: existing?.pid ?? null,
          pidStart: existing?.pidStart ?? null,
          ...(existing?.volumes ? { volumes: existing.volumes } : {}),
        });
      } catch (err) {
        if (!existing) await this.purge(spec.id).catch(() => undefined);
        throw err instanceof BulwarkError
          ? err
          : new BulwarkError(
              'Unavailable',
              `The server could not be set up on this host: ${(err as Error).message}`,
              {
                cause: err,
              },
            );
      }
    });
  }

  // ---- start ---------------------------------------------------------------------------------

  start(id: string): Promise<void> {
    return this.lock.run(id, async () => {
      const rec = await this.record(id);
      if (await this.process(rec)) return;
      if (rec.desired === 'suspended' && existsSync(this.layout(id).savedState))
        throw conflict(`Server ${id} is suspended; resume it instead.`);
      await this.launch(rec, false);
    });
  }

  /**
   * Starts QEMU for the guest. `incoming`: false boots it; 'saved' loads the
   * suspend state and runs it; 'network' leaves it paused, waiting for a live
   * migration's stream (started over QMP by live-migration.ts), and returns.
   */
  private async launch(rec: GuestRecord, mode: false | 'saved' | 'network'): Promise<void> {
    const incoming = mode === 'saved';
    const id = rec.spec.id;
    const L = this.layout(id);
    const fds: number[] = [];
    let child: ChildProcess;
    let exit: { code: number | null; signal: string | null } | null = null;
    const failed = (why: string, cause?: unknown) => {
      const tail = stderrTail(L.stderrLog);
      return new BulwarkError(
        'Unavailable',
        `The server could not start: ${why}.${tail ? `\nQEMU said:\n${tail}` : ''}`,
        {
          cause,
        },
      );
    };
    try {
      await ensureTaps(rec.spec.nics ?? [], rec.user);
      await this.cgroups.create(cgroupName(id), cgroupLimitsFor(rec.spec));
      await this.startTpm(rec);
      const log = openSync(
        L.stderrLog,
        constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW,
        0o600,
      );
      fds.push(log);
      let base: number;
      try {
        base = openSync(rec.spec.bootDisk.imagePath, constants.O_RDONLY);
      } catch (err) {
        throw conflict(`The server's image is missing on this host (${errno(err)}); re-upload the image.`);
      }
      fds.push(base);
      const stdio: ('ignore' | number)[] = ['ignore', log, log, base];
      if (incoming) {
        const saved = openSync(L.savedState, constants.O_RDONLY | constants.O_NOFOLLOW);
        fds.push(saved);
        stdio.push(saved);
      }
      const args = buildQemuArgs(rec.spec, {
        accel: this.accel,
        paths: L,
        baseImageFd: 3,
        ...(incoming ? { incomingFd: 4 } : {}),
        ...(mode === 'network' ? { incomingDefer: true } : {}),
        ovmfDir: this.ovmfDir,
      });
      await unlink(L.qmpSocket).catch(() => undefined);
      // Straight to the guest's user: QEMU never runs as root (and -runas would clash with the sandbox).
      child = spawn(this.qemu, args, {
        uid: rec.user.uid,
        gid: rec.user.gid,
        detached: true,
        stdio,
        cwd: L.dir,
        env: { PATH: '/usr/bin:/bin', LC_ALL: 'C' },
      });
    } catch (err) {
      await this.stopTpm(id);
      await this.cgroups.remove(cgroupName(id)).catch(() => undefined);
      throw err instanceof BulwarkError ? err : failed((err as Error).message, err);
    } finally {
      for (const fd of fds) closeSync(fd);
    }
    child.on('error', () => undefined); // reported through 'exit' or the missing pid
    child.once('exit', (code, signal) => {
      exit = { code, signal };
    });
    child.unref();
    const pid = child.pid;
    if (pid === undefined) {
      await this.stopTpm(id);
      await this.cgroups.remove(cgroupName(id)).catch(() => undefined);
      throw failed(`${this.qemu} could not be run`);
    }
    const exitedWhy = () => {
      const e = exit as { code: number | null; signal: string | null } | null;
      return e
        ? `QEMU exited during start-up (${e.signal ? `signal ${e.signal}` : `status ${e.code}`})`
        : 'QEMU exited during start-up';
    };
    let live: Live | undefined;
    try {
      // Into the guest's cgroup first: QEMU was started with -S, so no guest code has run yet.
      try {
        await this.cgroups.attach(cgroupName(id), pid);
      } catch (err) {
        await sleep(200);
        throw exit ? new Error(exitedWhy()) : err;
      }
      const info = await procInfo(pid);
      if (!isLive(info)) throw new Error(exitedWhy());
      rec.pid = pid;
      rec.pidStart = info.startTime;
      await this.writeRecord(rec);
      const qmp = await this.waitForQmp(L.qmpSocket, pid, info.startTime, () => exit !== null);
      live = this.attach(id, qmp, pid, info.startTime);
      if (rec.spec.bootDisk.encrypted) await this.plugEncryptedRoot(rec, qmp, mode);
      if (mode === 'network') {
        await this.plugAllVolumes(rec, qmp);
        return; // paused, for the migration stream; migrationFinish() runs it
      }
      if (incoming) await this.waitIncoming(qmp);
      else await this.plugAllVolumes(rec, qmp); // volumes: before the guest's first instruction
      await qmp.execute('cont');
      const status = await qmp.queryStatus();
      if (status.status !== 'running') throw new Error(`the guest is ${status.status} after cont`);
      rec.desired = 'running';
      await this.writeRecord(rec);
      if (!incoming) this.watchSecureBoot(rec, pid, info.startTime);
    } catch (err) {
      if (live) live.expectExit = true;
      await this.killProcess(pid, rec.pidStart ?? (await procInfo(pid))?.startTime ?? null);
      await this.stopTpm(id);
      await this.cgroups.remove(cgroupName(id)).catch(() => undefined);
      this.detach(id);
      rec.pid = null;
      rec.pidStart = null;
      await this.writeRecord(rec);
      if (err instanceof BulwarkError && !(err instanceof QmpError)) throw err;
      await sleep(50); // let the exit status arrive for the message
      const why = exit ? exitedWhy() : (err as Error).message;
      throw failed(why, err);
    }
  }

  private async waitForQmp(path: string, pid: number, start: number, exited: () => boolean): Promise<Qmp> {
    const deadline = Date.now() + this.startTimeoutMs;
    let last: unknown;
    while (Date.now() < deadline) {
      if (exited() || !(await sameProcess(pid, start))) throw new Error('QEMU exited during start-up');
      try {
        return await QmpClient.connect(path, { connectTimeoutMs: 2000 });
      } catch (err) {
        last = err;
      }
      await sleep(50);
    }
    throw new Error(`QEMU's control socket did not answer in ${this.startTimeoutMs} ms (${String(last)})`);
  }

  /** Waits for an incoming migration (resume) to load; QEMU then sits paused. */
  private async waitIncoming(qmp: Qmp): Promise<void> {
    const deadline = Date.now() + 10 * 60_000;
    while (Date.now() < deadline) {
      const s = await qmp.queryStatus();
      if (s.status !== 'inmigrate') return;
      await sleep(100);
    }
    throw new Error('loading the saved state did not finish');
  }

  // ---- QMP connections -----------------------------------------------------------------------

  private attach(id: string, qmp: Qmp, pid: number, pidStart: number): Live {
    this.live.get(id)?.qmp.close();
    const live: Live = { qmp, pid, pidStart, expectExit: false };
    this.live.set(id, live);
    qmp.onEvent((e) => {
      this.emit(id, e.event, e.data);
      // With -no-shutdown QEMU stays up after the guest powers off, so the poweroff
      // is seen even while the daemon is down; when we are here, finish it now.
      if (e.event === 'SHUTDOWN' && e.data.guest === true) {
        void qmp.execute('quit').catch(() => undefined);
        void this.lock
          .run(id, async () => {
            const rec = await this.readRecord(id);
            if (rec && rec.pid === pid && rec.desired === 'running') {
              rec.desired = 'shutoff';
              await this.writeRecord(rec);
            }
          })
          .catch(() => undefined);
      }
    });
    qmp.onClose(() => {
      if (this.live.get(id) === live) this.live.delete(id);
      if (!this.closing && !live.expectExit) void this.onLost(id, live);
    });
    return live;
  }

  private detach(id: string): void {
    const live = this.live.get(id);
    if (!live) return;
    live.expectExit = true;
    this.live.delete(id);
    live.qmp.close();
  }

  /** QMP closed without us asking: QEMU exited (guest poweroff, crash or kill). */
  private async onLost(id: string, live: Live): Promise<void> {
    const gone = await waitGone(live.pid, live.pidStart, 5000);
    if (!gone) return;
    await this.lock
      .run(id, async () => {
        await this.cgroups.remove(cgroupName(id)).catch(() => undefined);
        const rec = await this.readRecord(id);
        if (rec && rec.pid === live.pid) {
          rec.pid = null;
          rec.pidStart = null;
          await this.writeRecord(rec);
        }
        this.emit(id, 'EXITED', { expected: rec?.desired !== 'running' });
      })
      .catch(() => undefined);
  }

  /** The QMP connection to a running guest, connecting (adopting) if needed. */
  private async client(rec: GuestRecord): Promise<Qmp> {
    const id = rec.spec.id;
    const live = this.live.get(id);
    if (live && !live.qmp.closed && live.pid === rec.pid) return live.qmp;
    const proc = await this.process(rec);
    if (!proc) throw conflict(`Server ${id} is not running.`);
    let pending = this.connecting.get(id);
    if (!pending) {
      pending = (async () => {
        let last: unknown;
        for (let i = 0; i < 5; i++) {
          try {
            const qmp = await QmpClient.connect(this.layout(id).qmpSocket, { connectTimeoutMs: 3000 });
            this.attach(id, qmp, proc.pid, proc.startTime);
            return qmp;
          } catch (err) {
            last = err;
            await sleep(200);
          }
        }
        throw new BulwarkError('Unavailable', `Server ${id}'s QEMU does not answer on QMP: ${String(last)}`);
      })().finally(() => this.connecting.delete(id));
      this.connecting.set(id, pending);
    }
    return pending;
  }

  // ---- stopping ------------------------------------------------------------------------------

  private async killProcess(pid: number, start: number | null): Promise<boolean> {
    const p = start === null ? await procInfo(pid) : await sameProcess(pid, start);
    if (!isLive(p)) return false;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      return false;
    }
    await waitGone(pid, p.startTime, 10_000);
    return true;
  }

  /** After the process is gone: no cgroup, no pid; reports `event` (EXITED, expected; null: nothing). */
  private async finishExit(
    rec: GuestRecord,
    desired: Desired,
    event: { name: string; data: unknown } | null = { name: 'EXITED', data: { expected: true } },
  ): Promise<void> {
    const id = rec.spec.id;
    this.detach(id);
    if (rec.spec.tpm) await this.stopTpm(id);
    await this.cgroups.remove(cgroupName(id));
    rec.pid = null;
    rec.pidStart = null;
    rec.desired = desired;
    await this.writeRecord(rec);
    if (event) this.emit(id, event.name, event.data);
  }

  /** Asks QEMU to quit, then kills it if it has not gone in `graceMs`. */
  private async stopProcess(qmp: Qmp | null, pid: number, start: number, graceMs: number): Promise<void> {
    if (qmp) await qmp.execute('quit', undefined, { timeoutMs: 2000 }).catch(() => undefined);
    if (await waitGone(pid, start, graceMs)) return;
    await this.killProcess(pid, start);
  }

  shutdown(id: string, opts: { timeoutMs?: number } = {}): Promise<void> {
    return this.lock.run(id, async () => {
      const rec = await this.record(id);
      const proc = await this.process(rec);
      if (!proc) {
        await rm(this.layout(id).savedState, { force: true });
        await this.cgroups.remove(cgroupName(id));
        rec.pid = null;
        rec.pidStart = null;
        rec.desired = 'shutoff';
        await this.writeRecord(rec);
        return;
      }
      rec.desired = 'shutoff';
      await this.writeRecord(rec);
      const qmp = await this.client(rec).catch(() => null);
      const live = this.live.get(id);
      if (live) live.expectExit = true;
      const status = qmp ? await qmp.queryStatus().catch(() => null) : null;
      if (qmp && status?.status === 'running') {
        // ACPI power button; the guest's SHUTDOWN event makes us quit QEMU (see attach()).
        await qmp.execute('system_powerdown').catch(() => undefined);
        await waitGone(proc.pid, proc.startTime, opts.timeoutMs ?? 60_000);
      }
      await this.stopProcess(qmp, proc.pid, proc.startTime, 5000);
      await this.finishExit(rec, 'shutoff');
    });
  }

  private async running(id: string): Promise<{ rec: GuestRecord; qmp: Qmp }> {
    const rec = await this.record(id);
    return { rec, qmp: await this.client(rec) };
  }

  reboot(id: string): Promise<void> {
    return this.lock.run(id, async () => {
      await (await this.running(id)).qmp.execute('system_reset');
    });
  }

  pause(id: string): Promise<void> {
    return this.lock.run(id, async () => {
      await (await this.running(id)).qmp.execute('stop');
    });
  }

  unpause(id: string): Promise<void> {
    return this.lock.run(id, async () => {
      await (await this.running(id)).qmp.execute('cont');
    });
  }

  /** Saves RAM and device state to a root-only file (save-state.ts) and ends the process. */
  suspend(id: string): Promise<void> {
    return this.lock.run(id, async () => {
      const { rec, qmp } = await this.running(id);
      const proc = await this.process(rec);
      if (!proc) throw conflict(`Server ${id} is not running.`);
      if (rec.volumes?.length)
        throw conflict(`Server ${id} has volumes attached; detach them before suspending it.`);
      const L = this.layout(id);
      const part = `${L.savedState}.part`;
      const before = await qmp.queryStatus();
      let receiver: StateReceiver | undefined;
      try {
        receiver = await receiveState(L.migrateSocket, rec.user, part);
        // Stopped first, the RAM is copied in one pass.
        await qmp.execute('stop');
        await this.migrateOut(qmp, L.migrateSocket);
        await receiver.done;
        const live = this.live.get(id);
        if (live) live.expectExit = true;
        await this.stopProcess(qmp, proc.pid, proc.startTime, 5000);
        await rename(part, L.savedState);
        await this.finishExit(rec, 'suspended');
      } catch (err) {
        await rm(part, { force: true });
        if (before.running && (await this.process(rec))) await qmp.execute('cont').catch(() => undefined);
        throw err instanceof BulwarkError
          ? err
          : new BulwarkError('Unavailable', `The server could not be suspended: ${(err as Error).message}`, {
              cause: err,
            });
      } finally {
        await receiver?.close();
      }
    });
  }

  /** Streams the (stopped) guest's RAM and device state to the receiver on `socket`; waits for the end. */
  private async migrateOut(qmp: Qmp, socket: string): Promise<void> {
    await qmp.execute('migrate-set-parameters', { 'max-bandwidth': 16 * GiB }).catch(() => undefined);
    await qmp.execute('migrate', { uri: `unix:${socket}` });
    for (const deadline = Date.now() + 10 * 60_000; ; ) {
      const m = await qmp.execute('query-migrate');
      const status = isObject(m) && typeof m.status === 'string' ? m.status : 'unknown';
      if (status === 'completed') return;
      if (status === 'failed' || status === 'cancelled' || Date.now() > deadline) {
        const desc = isObject(m) && typeof m['error-desc'] === 'string' ? m['error-desc'] : status;
        throw new Error(`saving the guest's state failed: ${desc}`);
      }
      await sleep(50);
    }
  }

  resume(id: string): Promise<void> {
    return this.lock.run(id, async () => {
      const rec = await this.record(id);
      const L = this.layout(id);
      if (await this.process(rec)) throw conflict(`Server ${id} is running, not suspended.`);
      if (rec.desired !== 'suspended' || !existsSync(L.savedState))
        throw conflict(`Server ${id} has no saved state to resume.`);
      await this.launch(rec, 'saved');
      await rm(L.savedState, { force: true });
    });
  }

  /**
   * Evidence for incident response: the guest's memory (ELF dump over QMP, if
   * it runs; pause it first) and its disk overlay, copied into `destDir`.
   */
  forensicSnapshot(id: string, destDir: string): Promise<ForensicFile[]> {
    return this.lock.run(id, async () => {
      const rec = await this.record(id);
      const L = this.layout(id);
      const files: ForensicFile[] = [];
      if (await this.process(rec)) {
        const dump = join(L.dir, 'memory.elf');
        await rm(dump, { force: true });
        await (await this.client(rec)).execute(
          'dump-guest-memory',
          { paging: false, protocol: `file:${dump}` },
          { timeoutMs: 10 * 60_000 },
        );
        files.push(await collectFile(dump, rec.user.uid, destDir, { remove: true }));
      }
      files.push(await collectFile(L.overlay, rec.user.uid, destDir, { name: 'disk-overlay.qcow2' }));
      return files;
    });
  }

  // ---- queries -------------------------------------------------------------------------------

  async state(id: string): Promise<GuestState> {
    if (!GUEST_ID.test(id)) return 'missing';
    const rec = await this.readRecord(id);
    if (!rec) return 'missing';
    if (!(await this.process(rec))) {
      if (rec.desired === 'suspended' && existsSync(this.layout(id).savedState)) return 'suspended';
      return rec.desired === 'running' ? 'crashed' : 'shutoff';
    }
    try {
      const { status } = await (await this.client(rec)).queryStatus();
      switch (status) {
        case 'running':
          return 'running';
        case 'shutdown':
          return 'shutoff';
        case 'guest-panicked':
        case 'internal-error':
        case 'io-error':
          return 'crashed';
        default:
          return 'paused';
      }
    } catch {
      return 'crashed';
    }
  }

  /** The serial console log, read safely (instance-files.ts: readConsoleLog). */
  async consoleLog(id: string, maxLines?: number): Promise<string> {
    const rec = await this.record(id);
    return readConsoleLog(this.layout(id).consoleLog, rec.user.uid, maxLines);
  }

  async guestAgent(id: string, request: string): Promise<unknown> {
    const rec = await this.record(id);
    if (!rec.spec.guestAgent) throw new BulwarkError('Conflict', `Server ${id} has no guest agent channel.`);
    return this.agentLock.run(id, () =>
      guestAgentCall(join(this.layout(id).dir, GUEST_AGENT_SOCKET), rec.user.uid, request),
    );
  }

  async openConsole(id: string): Promise<Duplex> {
    const rec = await this.record(id);
    return connectGuestSocket(this.layout(id).consoleSocket, rec.user.uid);
  }

  async processInfo(id: string): Promise<{ pid: number; uid: number; user: string } | null> {
    const rec = await this.readRecord(id);
    const proc = rec && (await this.process(rec));
    if (!rec || !proc) return null;
    return { pid: proc.pid, uid: proc.uid, user: (await userNameOf(proc.uid)) ?? rec.user.name };
  }

  // ---- vTPM and Secure Boot (docs/host.md) ---------------------------------------------------

  setTpmKeySource(source: TpmKeySource): void {
    this.tpmKeySource = source;
  }

  /** The spec as stored: the vTPM's socket is always the driver's own path in the guest's dir. */
  private withTpmSocket(spec: GuestSpec): GuestSpec {
    if (!spec.tpm) return spec;
    return { ...spec, tpm: { ...spec.tpm, socketPath: swtpmPaths(this.layout(spec.id)).ctrlSocket } };
  }

  /** Secure Boot is enforced or the guest is not defined: never a silent boot without it. */
  private checkSecureBootFirmware(spec: GuestSpec): void {
    if (spec.firmware.type !== 'uefi' || !spec.firmware.secureBoot) return;
    const code = uefiImages(true, this.ovmfDir).code;
    const missing = [code, this.secureBootVars].filter((f) => !existsSync(f));
    if (missing.length)
      throw new BulwarkError(
        'Unavailable',
        `Secure Boot is required but this host cannot enforce it: ${missing.join(' and ')} ${missing.length > 1 ? 'are' : 'is'} missing (install ovmf, or point --secure-boot-vars at a variable store with enrolled keys). The server was not booted without Secure Boot.`,
      );
  }

  /**
   * Starts the guest's swtpm (its own user, its cgroup, state encrypted with
   * the key from the key source) before QEMU. Any earlier swtpm of the guest
   * is killed first. No key, no vTPM, no guest: fail closed.
   */
  private async startTpm(rec: GuestRecord): Promise<void> {
    const tpm = rec.spec.tpm;
    if (!tpm) return;
    const id = rec.spec.id;
    await this.stopTpm(id);
    if (!this.tpmKeySource)
      throw new BulwarkError(
        'Unavailable',
        'The server has a vTPM but no key manager is configured for its state; it was not started (the vTPM state is never kept unencrypted).',
      );
    let key: Buffer;
    try {
      key = await this.tpmKeySource(id);
    } catch (err) {
      throw new BulwarkError(
        'Unavailable',
        `The key for the server's vTPM state could not be read from the key manager (${(err as Error).message}); the server was not started.`,
        { cause: err },
      );
    }
    try {
      const paths = swtpmPaths(this.layout(id));
      await ensureStateDir(paths, rec.user);
      let started: { pid: number; startTime: number } | undefined;
      started = await startSwtpm({
        binary: this.swtpm,
        version: tpm.version,
        paths,
        user: rec.user,
        key,
        confine: (pid) => this.cgroups.attach(cgroupName(id), pid),
        onExit: (why) => {
          if (started) void this.onTpmExit(id, started.pid, `it ended with ${why}`);
        },
      });
      this.tpms.set(id, { ...started, adopted: false });
    } finally {
      key.fill(0);
    }
  }

  /** Kills the guest's swtpm, if one runs (forgotten first: its exit is asked for). */
  private async stopTpm(id: string): Promise<void> {
    this.tpms.delete(id);
    await killSwtpms((await swtpmProcesses(this.baseDir)).get(id) ?? []);
  }

  /**
   * A watched swtpm ended. Under a QEMU that goes on running, the guest would
   * run with its TPM gone (measured boot and sealed secrets silently broken):
   * fail closed, stop the guest and report TPM_LOST (the control plane
   * restarts it from the saved, encrypted TPM state). An swtpm we stopped, or
   * one that ended with its QEMU, is no loss.
   */
  private async onTpmExit(id: string, swtpmPid: number, why: string): Promise<void> {
    if (this.tpms.get(id)?.pid !== swtpmPid) return;
    const rec = await this.readRecord(id).catch(() => null);
    const qemu = rec && (await this.process(rec));
    if (!rec || !qemu || (await waitGone(qemu.pid, qemu.startTime, TPM_EXIT_GRACE_MS))) {
      if (this.tpms.get(id)?.pid === swtpmPid) this.tpms.delete(id);
      return;
    }
    await this.lock
      .run(id, async () => {
        if (this.tpms.get(id)?.pid !== swtpmPid) return;
        this.tpms.delete(id);
        const now = await this.readRecord(id);
        const proc = now && (await this.process(now));
        if (!now || !proc || now.desired !== 'running') return;
        await this.quitUnheard(id, proc.pid, proc.startTime);
        await this.finishExit(now, 'shutoff', { name: 'TPM_LOST', data: { reason: why } });
      })
      .catch(() => undefined);
  }

  /**
   * Ends a guest's QEMU for the driver's own reason, reported by the caller:
   * the watching QMP connection is dropped first, so the SHUTDOWN that `quit`
   * causes is not taken for a power-off. `quit` lets QEMU flush the disks.
   */
  private async quitUnheard(id: string, pid: number, start: number): Promise<void> {
    this.detach(id);
    const qmp = await QmpClient.connect(this.layout(id).qmpSocket, { connectTimeoutMs: 2000 }).catch(
      () => null,
    );
    try {
      await this.stopProcess(qmp, pid, start, 2000);
    } finally {
      qmp?.close();
    }
  }

  /** Adopted swtpms are not our children (no exit event): check them on a timer. */
  private watchAdoptedTpms(): void {
    if (this.tpmPoll) return;
    this.tpmPoll = setInterval(() => {
      for (const [id, t] of this.tpms)
        if (t.adopted)
          void sameProcess(t.pid, t.startTime).then((alive) => {
            if (!alive) void this.onTpmExit(id, t.pid, 'it was found gone');
          });
    }, ADOPTED_TPM_POLL_MS);
    this.tpmPoll.unref();
  }

  /**
   * OVMF refusing the boot loader under Secure Boot prints `Access Denied`
   * and falls back to nothing bootable. Watch the console for it for a while
   * after start; if seen, end the guest and report SECURE_BOOT_DENIED, so the
   * server shows why it did not boot rather than sitting in the firmware.
   */
  private watchSecureBoot(rec: GuestRecord, pid: number, pidStart: number): void {
    if (rec.spec.firmware.type !== 'uefi' || !rec.spec.firmware.secureBoot) return;
    const id = rec.spec.id;
    const L = this.layout(id);
    const deadline = Date.now() + this.secureBootWatchMs;
    const denied = /BdsDxe: failed to (load|start)[^\n]*Access Denied/;
    const read = () => {
      try {
        return readConsoleLog(L.consoleLog, rec.user.uid, 400);
      } catch {
        return '';
      }
    };
    void (async () => {
      while (Date.now() < deadline && !this.closing) {
        await sleep(500);
        if (!(await sameProcess(pid, pidStart))) return;
        const m = denied.exec(read());
        if (!m) continue;
        await this.lock.run(id, async () => {
          const now = await this.readRecord(id);
          if (!now || now.pid !== pid || !(await sameProcess(pid, pidStart))) return;
          now.desired = 'shutoff';
          await this.writeRecord(now);
          const live = this.live.get(id);
          if (live) live.expectExit = true;
          await this.stopProcess(live?.qmp ?? null, pid, pidStart, 3000);
          await this.finishExit(now, 'shutoff');
          this.emit(id, 'SECURE_BOOT_DENIED', { firmware: m[0].trim() });
        });
        return;
      }
    })().catch(() => undefined);
  }

  // ---- removal and reconciliation --------------------------------------------------------------

  /** QEMU processes started from this driver's base dir, by guest id. */
  private async ourQemus(): Promise<Map<string, { pid: number; startTime: number }[]>> {
    const prefix = `${this.baseDir}/`;
    const out = new Map<string, { pid: number; startTime: number }[]>();
    for (const p of await qemuProcesses()) {
      for (const arg of p.argv) {
        const at = arg.indexOf(prefix);
        if (at < 0) continue;
        const id = arg.slice(at + prefix.length, at + prefix.length + 36);
        if (!GUEST_ID.test(id)) continue;
        out.set(id, [...(out.get(id) ?? []), { pid: p.pid, startTime: p.startTime }]);
        break;
      }
    }
    return out;
  }

  /**
   * Kills every process of the guest, removes its cgroup, taps, files and user.
   * `sharedUser` (a live migration's source): the user goes only when nothing
   * runs as it any more; on a machine several agents share (one /etc/passwd,
   * the test hosts), the destination's guest runs as the same user and keeps it.
   * `keepUser`: another host on this machine holds the guest now, running or
   * not (a cold migration's other end).
   */
  private async purge(
    id: string,
    spec?: GuestSpec,
    opts: { sharedUser?: boolean; keepUser?: boolean } = {},
  ): Promise<boolean> {
    const L = this.layout(id);
    this.detach(id);
    let killed = false;
    for (const p of (await this.ourQemus()).get(id) ?? [])
      killed = (await this.killProcess(p.pid, p.startTime)) || killed;
    await this.stopTpm(id);
    await this.cgroups.remove(cgroupName(id));
    await deleteTaps(spec?.nics ?? []);
    await this.releaseAllVolumes(id);
    await rm(L.dir, { recursive: true, force: true });
    await rm(L.hostDir, { recursive: true, force: true });
    // Processes of the user outside our base dir would keep userdel from working: there should be none.
    const user = await lookupVmUser(vmUserName(id));
    if (user && !opts.keepUser && !(opts.sharedUser && (await processesOf(user.uid)).length > 0))
      await removeVmUser(id);
    return killed;
  }

  undefine(id: string): Promise<void> {
    return this.lock.run(id, async () => {
      const rec = await this.readRecord(id);
      if (rec) {
        const proc = await this.process(rec);
        if (proc) await this.killProcess(proc.pid, proc.startTime);
      }
      const killed = await this.purge(id, rec?.spec);
      if (killed || rec?.pid) this.emit(id, 'EXITED', { expected: true });
    });
  }

  async reconcile(
    knownIds: string[],
  ): Promise<{ adopted: string[]; vanished: string[]; orphansKilled: string[]; tpmLost: string[] }> {
    const known = new Set(knownIds);
    const qemus = await this.ourQemus();
    const swtpms = await swtpmProcesses(this.baseDir);
    const adopted: string[] = [];
    const vanished: string[] = [];
    const orphansKilled: string[] = [];
    const tpmLost: string[] = [];
    for (const id of knownIds) {
      if (!GUEST_ID.test(id)) continue;
      await this.lock.run(id, async () => {
        const rec = await this.readRecord(id);
        if (!rec) {
          vanished.push(id);
          return;
        }
        const proc = await this.process(rec);
        // Any other QEMU for this id (a start interrupted before its pid was kept) is not the guest.
        for (const p of qemus.get(id) ?? [])
          if (p.pid !== proc?.pid) await this.killProcess(p.pid, p.startTime);
        if (!proc) {
          await this.stopTpm(id);
          await this.cgroups.remove(cgroupName(id));
          if (rec.desired === 'running') vanished.push(id);
          if (rec.pid !== null) {
            rec.pid = null;
            rec.pidStart = null;
            await this.writeRecord(rec);
          }
          return;
        }
        try {
          const qmp = await this.client(rec);
          const { status } = await qmp.queryStatus();
          if (status === 'shutdown') {
            // The guest powered off while the daemon was away.
            const live = this.live.get(id);
            if (live) live.expectExit = true;
            await this.stopProcess(qmp, proc.pid, proc.startTime, 5000);
            await this.finishExit(rec, 'shutoff');
            return;
          }
          if (rec.spec.tpm) {
            const tpm = swtpms.get(id)?.[0];
            if (!tpm) {
              // Its swtpm died while the daemon was away: the guest runs without its TPM. Fail closed.
              await this.quitUnheard(id, proc.pid, proc.startTime);
              await this.finishExit(rec, 'shutoff', null);
              tpmLost.push(id);
              return;
            }
            this.tpms.set(id, { pid: tpm.pid, startTime: tpm.startTime, adopted: true });
            this.watchAdoptedTpms();
          }
          adopted.push(id);
        } catch {
          // Alive but not answering: leave it to state() (crashed) rather than kill a tenant's guest.
        }
      });
    }
    const onDisk = async (dir: string) =>
      (await readdir(dir).catch(() => [] as string[])).filter((e) => GUEST_ID.test(e));
    const strays = new Set([
      ...[...qemus.keys()].filter((id) => !known.has(id)),
      ...[...swtpms.keys()].filter((id) => !known.has(id)),
      ...(await onDisk(this.baseDir)).filter((id) => !known.has(id)),
      ...(await onDisk(join(this.baseDir, HOST_DIR))).filter((id) => !known.has(id)),
    ]);
    for (const id of strays) {
      await this.lock.run(id, async () => {
        const rec = await this.readRecord(id).catch(() => null);
        // A stray may be a guest that moved to another host of this machine (its user is theirs then).
        if (await this.purge(id, rec?.spec, { sharedUser: true })) orphansKilled.push(id);
      });
    }
    return { adopted, vanished, orphansKilled, tpmLost };
  }

  // ---- live migration between hosts (live-migration.ts, docs/multi-host.md) -------------------

  /**
   * Destination: defines the guest here (a fresh overlay with its own LUKS
   * header under the same key, from the key source), starts its swtpm and a
   * paused QEMU with `-incoming defer`, then the TLS disk export and listener.
   */
  async migrationPrepare(spec: GuestSpec, o: IncomingMigration): Promise<void> {
    await this.define(spec);
    await this.lock.run(spec.id, async () => {
      const rec = await this.record(spec.id);
      if (await this.process(rec)) throw conflict(`Server ${spec.id} already runs on this host.`);
      const L = this.layout(spec.id);
      await writeTlsDir(L, rec.user, 'server', o.tls);
      await this.launch(rec, 'network');
      await startIncoming((await this.running(spec.id)).qmp, L, o);
    });
  }

  /** Destination, once the source sent everything: the guest runs here. */
  migrationFinish(id: string): Promise<void> {
    return this.lock.run(id, async () => {
      const { rec, qmp } = await this.running(id);
      await finishIncoming(qmp);
      await removeTlsDir(this.layout(id));
      await qmp.execute('cont');
      const status = await qmp.queryStatus();
      if (status.status !== 'running') throw new Error(`the guest is ${status.status} after cont`);
      rec.desired = 'running';
      await this.writeRecord(rec);
    });
  }

  /** Source: mirrors the disk and streams the guest to the destination; resolves with the guest paused here. */
  migrationSend(id: string, o: OutgoingMigration): Promise<void> {
    return this.lock.run(id, async () => {
      const { rec, qmp } = await this.running(id);
      const L = this.layout(id);
      await writeTlsDir(L, rec.user, 'client', o.tls);
      try {
        await sendOutgoing(qmp, L, o);
      } finally {
        await removeTlsDir(L);
      }
    });
  }

  /** Source, after the destination took over: the guest's process, files and disks here go. */
  migrationCleanup(id: string): Promise<void> {
    return this.lock.run(id, async () => {
      const rec = await this.readRecord(id);
      await this.purge(id, rec?.spec, { sharedUser: true });
    });
  }

  // ---- cold migration between hosts (guest-transfer.ts, docs/multi-host.md) ------------------

  /** The stopped guest's files, hashed, as a cold migration carries them (ciphertext at rest). */
  transferList(id: string): Promise<GuestFile[]> {
    return this.lock.run(id, async () => listGuestFiles(this.layout(id), await this.stopped(id)));
  }

  /** Not under the lock: reads go on while the copy runs; the control plane keeps the guest stopped. */
  async transferRead(id: string, name: string, offset: number, length: number): Promise<Buffer> {
    return readGuestFile(this.layout(id), await this.record(id), name, offset, length);
  }

  async transferWrite(id: string, name: string, offset: number, data: Buffer): Promise<void> {
    await this.record(id);
    await writeGuestFile(this.layout(id), name, offset, data);
  }

  /** Destination: the staged files, checked against the source's hashes, replace the fresh ones define made. */
  transferCommit(id: string, files: GuestFile[]): Promise<void> {
    return this.lock.run(id, async () => commitGuestFiles(this.layout(id), await this.stopped(id), files));
  }

  /** A guest leaves this host after a cold migration (confirm: the source; revert or failure: the destination). */
  release(id: string, opts: { keepUser: boolean }): Promise<void> {
    return this.lock.run(id, async () => {
      const rec = await this.readRecord(id);
      const proc = rec ? await this.process(rec) : null;
      if (proc) await this.killProcess(proc.pid, proc.startTime);
      await this.purge(id, rec?.spec, { keepUser: opts.keepUser });
    });
  }

  private async stopped(id: string): Promise<GuestRecord> {
    const rec = await this.record(id);
    if (await this.process(rec)) throw conflict(`Server ${id} is running on this host; stop it first.`);
    return rec;
  }

  /** Source: what the migration has moved so far (not under the guest's lock: it is read while sending). */
  async migrationProgress(id: string): Promise<MigrationProgress> {
    return progressOf(await this.client(await this.record(id)));
  }

  // ---- volumes (docs/volumes.md) -------------------------------------------------------------
  //
  // Volume files live in <base>/.volumes (root 0700), root-owned 0600. While a
  // volume is attached, a hard link to it sits in the guest's own 0700 dir
  // (made in root's staging dir, renamed in) and the file belongs to the
  // guest's user, so its QEMU (never root) can open it there and no other
  // guest's user can reach it; on detach the link goes and the file is root's
  // again. Encrypted volumes are LUKS inside qcow2; the key reaches QEMU over
  // QMP only, as a secret object that is deleted on unplug.

  get volumesDir(): string {
    return join(this.baseDir, '.volumes');
  }

  private volumePath(volumeId: string): string {
    if (!GUEST_ID.test(volumeId)) throw badRequest(`Bad volume id ${JSON.stringify(volumeId)}.`);
    return join(this.volumesDir, `${volumeId}.qcow2`);
  }

  private guestVolumePath(serverId: string, volumeId: string): string {
    return join(this.layout(serverId).dir, `vol-${volumeId}.qcow2`);
  }

  setVolumeKeySource(source: VolumeKeySource): void {
    this.volumeKeys = source;
  }

  private async volumeKey(volumeId: string): Promise<Buffer | null> {
    if (!this.volumeKeys)
      throw new BulwarkError('Unavailable', 'No key source for volumes is configured on this host.');
    return this.volumeKeys(volumeId);
  }

  createVolume(id: string, bytes: number, key: Buffer | null): Promise<void> {
    return this.lock.run(`volume:${id}`, async () => {
      const path = this.volumePath(id);
      if (await lstat(path).catch(() => null)) throw conflict(`Volume ${id} already exists on this host.`);
      const part = join(this.volumesDir, `.${id}.part`);
      await rm(part, { force: true });
      try {
        await createQcow2(part, bytes, key);
        await chmod(part, 0o600);
        await checkVolumeFile(part, key !== null);
        await rename(part, path);
      } finally {
        await rm(part, { force: true });
      }
    });
  }

  resizeVolume(id: string, bytes: number, key: Buffer | null): Promise<void> {
    return this.lock.run(`volume:${id}`, async () => {
      const path = this.volumePath(id);
      const st = await lstat(path).catch(() => null);
      if (!st?.isFile()) throw notFound('volume file', id);
      if (st.uid !== 0) throw conflict(`Volume ${id} is attached; detach it before extending it.`);
      await checkVolumeFile(path, key !== null);
      await resizeQcow2(path, bytes, key);
    });
  }

  deleteVolume(id: string): Promise<void> {
    return this.lock.run(`volume:${id}`, async () => {
      const path = this.volumePath(id);
      const st = await lstat(path).catch(() => null);
      if (st && st.uid !== 0) throw conflict(`Volume ${id} is attached; detach it first.`);
      await rm(path, { force: true });
    });
  }

  /**
   * A volume's plaintext over qemu-nbd (host/disk-export.ts). Reading an
   * attached volume of a running guest pauses the guest first (QMP `stop`
   * drains and flushes its disks, so the file is a crash-consistent image)
   * and opens the file without a lock; `cont` follows on close, unless the
   * guest was already paused.
   */
  async openVolumeData(
    volumeId: string,
    key: Buffer | null,
    mode: 'read' | 'write',
    serverId?: string | null,
  ): Promise<DiskHandle> {
    const path = this.volumePath(volumeId);
    const st = await lstat(path).catch(() => null);
    if (!st?.isFile()) throw notFound('volume file', volumeId);
    const attached = st.uid !== 0;
    // Writing an attached volume: only while its guest is not running (an in-place server restore).
    if (mode === 'write' && attached && (!serverId || (await this.hasProcess(serverId))))
      throw conflict(`Volume ${volumeId} is attached; detach it first.`);
    const resume = mode === 'read' && attached && serverId ? await this.pauseForRead(serverId) : null;
    try {
      await checkVolumeFile(path, key !== null);
      const h = await openQcow2(path, key, {
        writable: mode === 'write',
        shared: attached && mode === 'read',
        socketParent: this.volumesDir,
      });
      // Read-only, with no backing file: its bytes are this file's alone. An attached volume is
      // stamped only with its guest known (paused, or not running); the stamp is what vouches either way.
      const stamp = mode === 'read' && (!attached || serverId) ? () => fileStamp(path) : undefined;
      return resumingOnClose(stamp ? { ...h, stamp } : h, resume);
    } catch (err) {
      await resume?.().catch(() => undefined);
      throw err;
    }
  }

  private async hasProcess(serverId: string): Promise<boolean> {
    const rec = await this.readRecord(serverId);
    return !!rec && !!(await this.process(rec));
  }

  /**
   * Pauses a running guest (QMP `stop` drains and flushes its disks, so its
   * files are a crash-consistent image); returns what continues it, or null
   * if it was not running (then it stays as it was).
   */
  private async pauseForRead(serverId: string): Promise<(() => Promise<void>) | null> {
    const rec = await this.readRecord(serverId);
    if (!rec || !(await this.process(rec))) return null;
    return this.lock.run(serverId, async () => {
      const qmp = await this.client(rec);
      const status = await qmp.execute('query-status');
      if (!(isObject(status) && status.running === true)) return null;
      await qmp.execute('stop');
      return () => this.lock.run(serverId, async () => void (await qmp.execute('cont')));
    });
  }

  /**
   * A server's root disk as its guest sees it (the overlay over its image),
   * for a server backup (`read`: a running guest is paused until close) or
   * a restore (`write`: the guest must not run; every byte is written, zeros
   * as zero clusters, so the image below no longer shows through).
   */
  async openRootDisk(serverId: string, mode: 'read' | 'write'): Promise<DiskHandle> {
    const rec = await this.record(serverId);
    const L = this.layout(serverId);
    const st = await lstat(L.overlay).catch(() => null);
    if (!st?.isFile() || st.uid !== rec.user.uid) throw conflict(`Server ${serverId} has no root disk here.`);
    const live = !!(await this.process(rec));
    if (mode === 'write' && live)
      throw conflict(`Server ${serverId} is running; stop it before its disk is overwritten.`);
    const resume = mode === 'read' ? await this.pauseForRead(serverId) : null;
    const open = (key: Buffer | null) =>
      openQcow2(L.overlay, key, {
        writable: mode === 'write',
        shared: live,
        socketParent: L.hostDir,
        backing: { path: rec.spec.bootDisk.imagePath, format: rec.spec.bootDisk.imageFormat },
        detectZeroes: mode === 'write',
      });
    try {
      const h = await (rec.spec.bootDisk.encrypted ? this.withDiskKey(serverId, open) : open(null));
      return resumingOnClose(h, resume);
    } catch (err) {
      await resume?.().catch(() => undefined);
      throw err;
    }
  }

  /** The guest device a volume shows up as (informational; the guest names its disks itself). */
  private deviceOf(rec: GuestRecord, volumeId: string): string {
    const i = Math.max(0, (rec.volumes ?? []).indexOf(volumeId));
    return `/dev/vd${String.fromCharCode('b'.charCodeAt(0) + Math.min(i, 24))}`;
  }

  attachVolume(serverId: string, volumeId: string): Promise<{ device: string }> {
    return this.lock.run(serverId, () =>
      this.lock.run(`volume:${volumeId}`, async () => {
        const rec = await this.record(serverId);
        const path = this.volumePath(volumeId);
        if ((rec.volumes ?? []).includes(volumeId)) return { device: this.deviceOf(rec, volumeId) };
        const st = await lstat(path).catch(() => null);
        if (!st?.isFile()) throw notFound('volume file', volumeId);
        if (st.uid !== 0) throw conflict(`Volume ${volumeId} is attached to another server.`);
        if (rec.desired === 'suspended') throw conflict(`Server ${serverId} is suspended; resume it first.`);
        if (await this.process(rec)) await this.plugOne(rec, await this.client(rec), volumeId);
        rec.volumes = [...(rec.volumes ?? []), volumeId];
        await this.writeRecord(rec);
        return { device: this.deviceOf(rec, volumeId) };
      }),
    );
  }

  detachVolume(serverId: string, volumeId: string): Promise<void> {
    return this.lock.run(serverId, () =>
      this.lock.run(`volume:${volumeId}`, async () => {
        const rec = await this.readRecord(serverId);
        if (rec && (await this.process(rec))) await unplugVolume(await this.client(rec), volumeId);
        await this.releaseVolumeFile(serverId, volumeId);
        if (rec?.volumes?.includes(volumeId)) {
          rec.volumes = rec.volumes.filter((v) => v !== volumeId);
          if (!rec.volumes.length) delete rec.volumes;
          await this.writeRecord(rec);
        }
      }),
    );
  }

  /** Links the volume into the guest's dir for its user, checks it, and plugs it in over QMP. */
  private async plugOne(rec: GuestRecord, qmp: Qmp, volumeId: string): Promise<void> {
    const id = rec.spec.id;
    const L = this.layout(id);
    const path = this.volumePath(volumeId);
    const inGuestDir = this.guestVolumePath(id, volumeId);
    let key: Buffer | null = null;
    try {
      key = await this.volumeKey(volumeId);
      const st = await lstat(path);
      if (!st.isFile()) throw conflict(`Volume ${volumeId}'s file is not a regular file.`);
      // Root's own file again, and checked, before the guest's user may touch it.
      await lchown(path, 0, 0);
      await chmod(path, 0o600);
      await checkVolumeFile(path, key !== null);
      const tmp = join(L.staging, `vol-${volumeId}.qcow2`);
      await mkdir(L.staging, { recursive: true, mode: 0o700 });
      await rm(tmp, { force: true });
      await link(path, tmp);
      // rename() replaces whatever name the guest's user left there, and never follows a link.
      await rename(tmp, inGuestDir);
      await lchown(path, rec.user.uid, rec.user.gid);
      const ports =
        rec.spec.machine === 'q35' ? Array.from({ length: VOLUME_PORTS }, (_, i) => volumePort(i)) : [];
      await plugVolume(qmp, volumeId, inGuestDir, key, ports);
    } catch (err) {
      await this.releaseVolumeFile(id, volumeId).catch(() => undefined);
      throw err instanceof BulwarkError
        ? err
        : new BulwarkError('Unavailable', `The volume could not be attached: ${(err as Error).message}`, {
            cause: err,
          });
    } finally {
      key?.fill(0);
    }
  }

  // ---- encrypted root disks (docs/volumes.md) ----

  private diskKeys: DiskKeySource | null = null;

  setDiskKeySource(source: DiskKeySource): void {
    this.diskKeys = source;
  }

  /** Runs `use` with the guest's disk key, wiped afterwards; no key source or no key: it fails (closed). */
  private async withDiskKey<T>(id: string, use: (key: Buffer) => Promise<T>): Promise<T> {
    if (!this.diskKeys)
      throw new BulwarkError('Unavailable', 'No key source for encrypted disks is configured on this host.');
    const key = await this.diskKeys(id).catch((err: unknown) => {
      throw new BulwarkError(
        'Unavailable',
        `The server's disk key could not be had (${(err as Error).message}); its encrypted disk stays locked.`,
        { cause: err },
      );
    });
    try {
      return await use(key);
    } finally {
      key.fill(0);
    }
  }

  /**
   * The encrypted overlay over QMP, while QEMU is paused: then a machine reset
   * (still paused) so the firmware's boot order lists the new boot disk, or,
   * resuming, the deferred incoming migration from the saved state on fd 4.
   */
  private async plugEncryptedRoot(
    rec: GuestRecord,
    qmp: Qmp,
    mode: false | 'saved' | 'network',
  ): Promise<void> {
    const L = this.layout(rec.spec.id);
    const st = await lstat(L.overlay);
    if (!st.isFile() || st.uid !== rec.user.uid)
      throw conflict(`Unexpected file at ${L.overlay}; refusing to use it.`);
    await this.withDiskKey(rec.spec.id, (key) =>
      plugRootDisk(
        qmp,
        L.overlay,
        key,
        throttleLimits(rec.spec.io),
        rec.spec.machine === 'q35' ? DISK_PORT : undefined,
      ),
    );
    if (mode === 'network') return;
    if (mode === 'saved') {
      await qmp.execute('migrate-incoming', { uri: 'fd:4' });
      return;
    }
    const reset = new Promise<void>((resolve) => {
      const off = qmp.onEvent((e) => {
        if (e.event === 'RESET') {
          off();
          resolve();
        }
      });
      setTimeout(() => {
        off();
        resolve();
      }, 5000);
    });
    await qmp.execute('system_reset');
    await reset;
  }

  /** Every attached volume, before the guest's first instruction (launch, before `cont`). */
  private async plugAllVolumes(rec: GuestRecord, qmp: Qmp): Promise<void> {
    for (const v of rec.volumes ?? []) await this.plugOne(rec, qmp, v);
  }

  /** The guest's link goes and the file is root's again (0600). */
  private async releaseVolumeFile(serverId: string, volumeId: string): Promise<void> {
    await unlink(this.guestVolumePath(serverId, volumeId)).catch((err) => {
      if (errno(err) !== 'ENOENT') throw err;
    });
    const path = this.volumePath(volumeId);
    if (await lstat(path).catch(() => null)) {
      await lchown(path, 0, 0);
      await chmod(path, 0o600);
    }
  }

  private async releaseAllVolumes(id: string): Promise<void> {
    const rec = await this.readRecord(id).catch(() => null);
    for (const v of rec?.volumes ?? []) await this.releaseVolumeFile(id, v).catch(() => undefined);
  }

  // ---- snapshots (docs/snapshots.md) ----

  /** The running guest that has `volumeId` plugged, if any. */
  private async pluggedIn(serverId: string | null, volumeId: string) {
    if (!serverId) return null;
    const rec = await this.readRecord(serverId);
    if (!rec?.volumes?.includes(volumeId) || !(await this.process(rec))) return null;
    return this.client(rec);
  }

  /** A volume file qemu-img may open as root: regular, no backing or data file, encrypted as recorded. */
  private async volumeFileWithKey<T>(
    volumeId: string,
    use: (path: string, key: Buffer | null) => Promise<T>,
  ) {
    const path = this.volumePath(volumeId);
    const st = await lstat(path).catch(() => null);
    if (!st?.isFile()) throw notFound('volume file', volumeId);
    const key = await this.volumeKey(volumeId);
    try {
      await checkVolumeFile(path, key !== null);
      return await use(path, key);
    } finally {
      key?.fill(0);
    }
  }

  /** Under the volume's lock, and its server's first when attached (the order attach/detach take them in). */
  private volumeLocked(volumeId: string, serverId: string | null, fn: () => Promise<void>): Promise<void> {
    const inner = () => this.lock.run(`volume:${volumeId}`, fn);
    return serverId ? this.lock.run(serverId, inner) : inner();
  }

  snapshotVolume(volumeId: string, tag: string, serverId: string | null): Promise<void> {
    return this.volumeLocked(volumeId, serverId, async () => {
      const qmp = await this.pluggedIn(serverId, volumeId);
      if (qmp) return liveSnapshot(qmp, volumeNodes(volumeId).fmt, tag);
      await this.volumeFileWithKey(volumeId, (path, key) => fileSnapshot('create', path, tag, key));
    });
  }

  deleteVolumeSnapshot(volumeId: string, tag: string, serverId: string | null): Promise<void> {
    return this.volumeLocked(volumeId, serverId, async () => {
      const qmp = await this.pluggedIn(serverId, volumeId);
      if (qmp) return liveSnapshotDelete(qmp, volumeNodes(volumeId).fmt, tag);
      await this.volumeFileWithKey(volumeId, (path, key) => fileSnapshot('delete', path, tag, key));
    });
  }

  copyRootDisk(fromId: string, toId: string): Promise<void> {
    return this.lock.run(fromId, () =>
      this.lock.run(toId, async () => {
        const from = await this.record(fromId);
        const to = await this.record(toId);
        if (await this.process(from))
          throw conflict(`Server ${fromId} is running; stop it before cloning it.`);
        if (await this.process(to)) throw conflict(`Server ${toId} is running; its disk cannot be replaced.`);
        if (from.spec.bootDisk.imagePath !== to.spec.bootDisk.imagePath)
          throw conflict("A clone boots from its source's image; the images differ.");
        const L = this.layout(toId);
        // Inside withDiskKey: it wipes the key once its callback is done.
        const copy = (dst: Buffer | null) =>
          this.overlayWithKey(from, (source, src) =>
            placeFile(L, to.user, L.overlay, (tmp) =>
              copyRootOverlay(source, to.spec.bootDisk, tmp, { src, dst }),
            ),
          );
        await (to.spec.bootDisk.encrypted ? this.withDiskKey(toId, copy) : copy(null));
      }),
    );
  }

  /** Runs `use` on the guest's stopped overlay (checked as plugEncryptedRoot does) with its key, if encrypted. */
  private async overlayWithKey(rec: GuestRecord, use: (path: string, key: Buffer | null) => Promise<void>) {
    const L = this.layout(rec.spec.id);
    const st = await lstat(L.overlay);
    if (!st.isFile() || st.uid !== rec.user.uid)
      throw conflict(`Unexpected file at ${L.overlay}; refusing to use it.`);
    if (rec.spec.bootDisk.encrypted) await this.withDiskKey(rec.spec.id, (key) => use(L.overlay, key));
    else await use(L.overlay, null);
  }

  snapshotServer(serverId: string, tag: string, opts: { memory: boolean }): Promise<void> {
    return this.lock.run(serverId, async () => {
      const rec = await this.record(serverId);
      const running = await this.process(rec);
      if (opts.memory) {
        if (!running)
          throw conflict(`Server ${serverId} is not running; a memory snapshot needs it running.`);
        if (rec.volumes?.length)
          throw conflict(
            `Server ${serverId} has volumes attached; a memory snapshot covers the root disk only, so detach them first (or take a disk snapshot).`,
          );
        return this.memorySnapshot(rec, await this.client(rec), tag);
      }
      if (running) return liveSnapshot(await this.client(rec), ROOT_NODE, tag);
      await this.overlayWithKey(rec, (path, key) => fileSnapshot('create', path, tag, key));
    });
  }

  /** Where a memory snapshot's encrypted state lives: the guest's root-only host dir. */
  private memoryStatePath(serverId: string, tag: string): string {
    if (!/^bw-[0-9a-f-]{36}$/.test(tag)) throw badRequest(`Bad snapshot tag ${JSON.stringify(tag)}.`);
    return join(this.layout(serverId).hostDir, `${tag}.state`);
  }

  /**
   * Disk and memory at one instant: the guest is stopped, its disk gets an
   * internal snapshot, its RAM and device state stream over the migration
   * socket into a root-only file encrypted under the disk's key
   * (state-cipher.ts), and it continues if it ran before.
   */
  private async memorySnapshot(rec: GuestRecord, qmp: Qmp, tag: string): Promise<void> {
    if (!rec.spec.bootDisk.encrypted)
      throw conflict(
        `Server ${rec.spec.id} has an unencrypted disk; memory snapshots are kept only encrypted.`,
      );
    const L = this.layout(rec.spec.id);
    const state = this.memoryStatePath(rec.spec.id, tag);
    const part = `${state}.part`;
    const before = await qmp.queryStatus();
    let receiver: StateReceiver | undefined;
    let diskTaken = false;
    try {
      receiver = await this.withDiskKey(rec.spec.id, (key) =>
        receiveState(L.migrateSocket, rec.user, part, stateCipher(key, tag)),
      );
      await qmp.execute('stop');
      await liveSnapshot(qmp, ROOT_NODE, tag);
      diskTaken = true;
      await this.migrateOut(qmp, L.migrateSocket);
      await receiver.done;
      await rename(part, state);
    } catch (err) {
      await rm(part, { force: true });
      if (diskTaken) await liveSnapshotDelete(qmp, ROOT_NODE, tag).catch(() => undefined);
      throw err instanceof BulwarkError
        ? err
        : new BulwarkError('Unavailable', `The memory snapshot failed: ${(err as Error).message}`, {
            cause: err,
          });
    } finally {
      await receiver?.close();
      if (before.running) await qmp.execute('cont').catch(() => undefined);
    }
  }

  deleteServerSnapshot(serverId: string, tag: string): Promise<void> {
    return this.lock.run(serverId, async () => {
      const rec = await this.readRecord(serverId);
      await rm(this.memoryStatePath(serverId, tag), { force: true });
      if (!rec || !existsSync(this.layout(serverId).overlay)) return;
      if (await this.process(rec)) return liveSnapshotDelete(await this.client(rec), ROOT_NODE, tag);
      await this.overlayWithKey(rec, (path, key) => fileSnapshot('delete', path, tag, key));
    });
  }

  /** Disconnects from every guest and leaves them running (a daemon restart must not stop guests). */
  async close(): Promise<void> {
    this.closing = true;
    // The guests' swtpms go on with their guests; a later daemon adopts them.
    this.tpms.clear();
    clearInterval(this.tpmPoll);
    this.tpmPoll = undefined;
    for (const live of this.live.values()) {
      live.expectExit = true;
      live.qmp.close();
    }
    this.live.clear();
    this.closing = false;
  }
}

/** The real driver: accelerator from BULWARK_ACCEL or a probe boot, cgroups detected (v2 or v1). */
export async function createQemuDriver(opts: QemuDriverOptions): Promise<QemuDriver> {
  const accel = opts.accel ?? (await probeAccel(opts.qemuBinary ? { qemuBinary: opts.qemuBinary } : {}));
  const cgroups = opts.cgroups ?? (await detectCgroups({ parent: opts.cgroupParent ?? 'bulwark' }));
  const driver = new QemuDriver(opts, accel, cgroups);
  await driver.init();
  return driver;
}

/** `h`, continuing its paused guest (if any) once closed. */
function resumingOnClose(h: DiskHandle, resume: (() => Promise<void>) | null): DiskHandle {
  return {
    size: h.size,
    read: (o, l) => h.read(o, l),
    write: (o, d) => h.write(o, d),
    ...(h.stamp ? { stamp: h.stamp } : {}),
    close: async () => {
      try {
        await h.close();
      } finally {
        await resume?.();
      }
    },
  };
}
