import { constants } from 'node:fs';
import { access, mkdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BulwarkError } from '../errors.js';
import type { GuestSpec } from './hypervisor.js';
import { sleep } from './run.js';

/**
 * Per-guest cgroups: a memory hard limit, a CFS CPU quota, optional pinning
 * (cpuset) and a pid cap, on cgroup v2 (unified) or v1 (one hierarchy per
 * controller), detected at runtime from /proc/self/mountinfo.
 */

const MiB = 1024 * 1024;

/**
 * QEMU's own memory beside the guest's RAM: its heap, device state and I/O
 * buffers, and under TCG the translation cache (capped at 64 MiB by
 * `-accel tcg,tb-size=64`). A booted 256 MiB TCG test guest's QEMU charges
 * about 200 MiB in all, guest pages included.
 */
export const QEMU_OVERHEAD_MIB = 256;

/**
 * The memory hard limit of a guest's cgroup (memory.max / memory.limit_in_bytes):
 *
 *     limit = (flavor RAM + 256 MiB + ceil(flavor RAM / 64)) MiB
 *
 * RAM/64 covers what grows with guest RAM (QEMU's page-tracking bitmaps, the
 * host page tables of the guest's memory). Swap is not allowed on top of it
 * (memory.swap.max = 0 / memsw = limit), so guest RAM never reaches a disk.
 */
export function memoryLimitBytes(memoryMiB: number): number {
  return (memoryMiB + QEMU_OVERHEAD_MIB + Math.ceil(memoryMiB / 64)) * MiB;
}

export const CPU_PERIOD_US = 100_000;

/** CFS quota per period: `quota:cpu_quota_percent` of one CPU, or by default one full CPU per vCPU. */
export function cpuQuotaUs(spec: Pick<GuestSpec, 'vcpus' | 'cpu'>): number {
  const pct = spec.cpu?.quotaPercent;
  return pct !== undefined
    ? Math.max(1000, Math.round((CPU_PERIOD_US * pct) / 100))
    : spec.vcpus * CPU_PERIOD_US;
}

/** QEMU's threads (main, vCPUs, RCU, the block I/O pool of up to 64 workers) with room to spare; no forks (seccomp). */
export const pidsLimit = (vcpus: number): number => 256 + 2 * vcpus;

export interface CgroupLimits {
  memoryBytes: number;
  cpuQuotaUs: number;
  cpuPeriodUs: number;
  /** Host CPUs to confine the guest to (`hw:cpu_policy=dedicated`); null = all. */
  cpus: number[] | null;
  pidsMax: number;
}

export function cgroupLimitsFor(spec: GuestSpec): CgroupLimits {
  const pins = spec.cpu?.pinning;
  return {
    memoryBytes: spec.memoryMaxMiB !== undefined ? spec.memoryMaxMiB * MiB : memoryLimitBytes(spec.memoryMiB),
    cpuQuotaUs: cpuQuotaUs(spec),
    cpuPeriodUs: CPU_PERIOD_US,
    cpus: pins?.length ? [...new Set(pins)].sort((a, b) => a - b) : null,
    pidsMax: pidsLimit(spec.vcpus),
  };
}

/** What the kernel holds for a guest's cgroup, read back (for tests, audits and compliance checks). */
export interface CgroupState {
  memoryBytes: number | null;
  cpuQuotaUs: number | null;
  cpuPeriodUs: number;
  cpus: string;
  pidsMax: number | null;
  procs: number[];
}

/** The few file operations cgroups need; a fake backs the unit tests. */
export interface CgroupFs {
  read(path: string): Promise<string>;
  write(path: string, value: string): Promise<void>;
  exists(path: string): Promise<boolean>;
  /** Creates one directory; fine if it exists. */
  mkdir(path: string): Promise<void>;
  /** Removes one (empty) cgroup directory; fine if it is gone. */
  rmdir(path: string): Promise<void>;
}

export const realCgroupFs: CgroupFs = {
  read: (p) => readFile(p, 'utf8'),
  async write(p, v) {
    try {
      await writeFile(p, v);
    } catch (err) {
      throw new Error(`cannot write ${JSON.stringify(v)} to ${p}: ${(err as Error).message}`);
    }
  },
  exists: (p) =>
    access(p, constants.F_OK).then(
      () => true,
      () => false,
    ),
  async mkdir(p) {
    await mkdir(p).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
  },
  async rmdir(p) {
    await rmdir(p).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
  },
};

export interface VmCgroups {
  readonly version: 1 | 2;
  /** Creates the guest's cgroup with its limits, or updates them; idempotent. */
  create(name: string, limits: CgroupLimits): Promise<void>;
  /** Moves a process, with all its threads, into the guest's cgroup. */
  attach(name: string, pid: number): Promise<void>;
  read(name: string): Promise<CgroupState | null>;
  procs(name: string): Promise<number[]>;
  exists(name: string): Promise<boolean>;
  /** Kills whatever is still inside, then removes the cgroup; a no-op when gone. */
  remove(name: string): Promise<void>;
  /** The path of the guest's cgroup in each hierarchy (for diagnostics). */
  paths(name: string): string[];
}

const NAME = /^[A-Za-z0-9_.-]+$/;
const checkName = (name: string): string => {
  if (!NAME.test(name) || name.startsWith('.')) throw new Error(`bad cgroup name ${name}`);
  return name;
};
const parsePids = (text: string): number[] =>
  text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .map(Number)
    .filter((n) => Number.isSafeInteger(n) && n > 0);
const numOrNull = (text: string): number | null => {
  const n = Number(text.trim());
  return Number.isFinite(n) ? n : null;
};

async function killAll(fs: CgroupFs, procsFile: string): Promise<void> {
  for (let i = 0; i < 50; i++) {
    const pids = parsePids(await fs.read(procsFile).catch(() => ''));
    if (!pids.length) return;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await sleep(100);
  }
  throw new Error(`processes in ${procsFile} did not exit`);
}

/** cgroup v2: one unified tree; controllers enabled down the parent chain via cgroup.subtree_control. */
export class CgroupV2 implements VmCgroups {
  readonly version = 2 as const;
  constructor(
    private readonly root: string,
    private readonly parent: string,
    private readonly fs: CgroupFs = realCgroupFs,
  ) {
    for (const seg of parent.split('/')) checkName(seg);
  }

  private dir(name: string): string {
    return join(this.root, this.parent, checkName(name));
  }

  paths(name: string): string[] {
    return [this.dir(name)];
  }

  private async prepareParent(): Promise<void> {
    let dir = this.root;
    for (const seg of this.parent.split('/')) {
      await this.enableControllers(dir);
      dir = join(dir, seg);
      await this.fs.mkdir(dir);
    }
    await this.enableControllers(dir);
  }

  private async enableControllers(dir: string): Promise<void> {
    const available = (await this.fs.read(join(dir, 'cgroup.controllers')).catch(() => '')).split(/\s+/);
    const enabled = (await this.fs.read(join(dir, 'cgroup.subtree_control')).catch(() => '')).split(/\s+/);
    for (const c of ['memory', 'cpu', 'cpuset', 'pids']) {
      if (available.includes(c) && !enabled.includes(c))
        await this.fs.write(join(dir, 'cgroup.subtree_control'), `+${c}`);
    }
  }

  async create(name: string, limits: CgroupLimits): Promise<void> {
    await this.prepareParent();
    const dir = this.dir(name);
    await this.fs.mkdir(dir);
    const w = (file: string, v: string | number) => this.fs.write(join(dir, file), String(v));
    const optional = async (file: string, v: string | number) => {
      if (await this.fs.exists(join(dir, file))) await w(file, v);
    };
    await w('memory.max', limits.memoryBytes);
    await optional('memory.swap.max', 0);
    // An OOM kill takes the whole QEMU, never one of its threads.
    await optional('memory.oom.group', 1);
    await w('cpu.max', `${limits.cpuQuotaUs} ${limits.cpuPeriodUs}`);
    if (limits.cpus) await w('cpuset.cpus', limits.cpus.join(','));
    await w('pids.max', limits.pidsMax);
  }

  async attach(name: string, pid: number): Promise<void> {
    await this.fs.write(join(this.dir(name), 'cgroup.procs'), String(pid));
  }

  async procs(name: string): Promise<number[]> {
    return parsePids(await this.fs.read(join(this.dir(name), 'cgroup.procs')).catch(() => ''));
  }

  exists(name: string): Promise<boolean> {
    return this.fs.exists(this.dir(name));
  }

  async read(name: string): Promise<CgroupState | null> {
    const dir = this.dir(name);
    if (!(await this.fs.exists(dir))) return null;
    const r = (f: string) => this.fs.read(join(dir, f)).then((t) => t.trim());
    const [quota, period] = (await r('cpu.max')).split(' ');
    return {
      memoryBytes: numOrNull(await r('memory.max')),
      cpuQuotaUs: quota === 'max' || quota === undefined ? null : Number(quota),
      cpuPeriodUs: Number(period),
      cpus: await r('cpuset.cpus').catch(() => ''),
      pidsMax: numOrNull(await r('pids.max')),
      procs: await this.procs(name),
    };
  }

  async remove(name: string): Promise<void> {
    const dir = this.dir(name);
    if (!(await this.fs.exists(dir))) return;
    if (await this.fs.exists(join(dir, 'cgroup.kill'))) {
      if ((await this.procs(name)).length) await this.fs.write(join(dir, 'cgroup.kill'), '1');
    }
    await killAll(this.fs, join(dir, 'cgroup.procs'));
    await this.fs.rmdir(dir);
  }
}

export type V1Controller = 'memory' | 'cpu' | 'cpuset' | 'pids';
export const V1_CONTROLLERS: readonly V1Controller[] = ['memory', 'cpu', 'cpuset', 'pids'];

/** cgroup v1: a hierarchy per controller (or co-mounted ones, e.g. cpu,cpuacct). */
export class CgroupV1 implements VmCgroups {
  readonly version = 1 as const;
  constructor(
    private readonly mounts: Record<V1Controller, string>,
    private readonly parent: string,
    private readonly fs: CgroupFs = realCgroupFs,
  ) {
    for (const seg of parent.split('/')) checkName(seg);
  }

  private dir(c: V1Controller, name?: string): string {
    return join(this.mounts[c], this.parent, ...(name === undefined ? [] : [checkName(name)]));
  }

  paths(name: string): string[] {
    return [...new Set(V1_CONTROLLERS.map((c) => this.dir(c, name)))];
  }

  /** A v1 cpuset cannot take a task until its cpus and mems are set: copy them down from the parent. */
  private async inheritCpuset(dir: string, parent: string): Promise<void> {
    for (const f of ['cpuset.cpus', 'cpuset.mems']) {
      const mine = (await this.fs.read(join(dir, f)).catch(() => '')).trim();
      if (!mine) await this.fs.write(join(dir, f), (await this.fs.read(join(parent, f))).trim());
    }
  }

  async create(name: string, limits: CgroupLimits): Promise<void> {
    for (const c of V1_CONTROLLERS) {
      let dir = this.mounts[c];
      for (const seg of [...this.parent.split('/'), name]) {
        const parent = dir;
        dir = join(dir, seg);
        await this.fs.mkdir(dir);
        if (c === 'cpuset') await this.inheritCpuset(dir, parent);
      }
    }
    const w = (c: V1Controller, file: string, v: string | number) =>
      this.fs.write(join(this.dir(c, name), file), String(v));
    // memory.memsw (RAM + swap) must stay >= memory.limit; set both to the same value, in the order the change allows.
    const memsw = join(this.dir('memory', name), 'memory.memsw.limit_in_bytes');
    const hasMemsw = await this.fs.exists(memsw);
    try {
      await w('memory', 'memory.limit_in_bytes', limits.memoryBytes);
      if (hasMemsw) await w('memory', 'memory.memsw.limit_in_bytes', limits.memoryBytes);
    } catch (err) {
      if (!hasMemsw) throw err;
      await w('memory', 'memory.memsw.limit_in_bytes', limits.memoryBytes);
      await w('memory', 'memory.limit_in_bytes', limits.memoryBytes);
    }
    await w('cpu', 'cpu.cfs_period_us', limits.cpuPeriodUs);
    await w('cpu', 'cpu.cfs_quota_us', limits.cpuQuotaUs);
    if (limits.cpus) await w('cpuset', 'cpuset.cpus', limits.cpus.join(','));
    await w('pids', 'pids.max', limits.pidsMax);
  }

  async attach(name: string, pid: number): Promise<void> {
    for (const dir of this.paths(name)) await this.fs.write(join(dir, 'cgroup.procs'), String(pid));
  }

  async procs(name: string): Promise<number[]> {
    const all = new Set<number>();
    for (const dir of this.paths(name))
      for (const p of parsePids(await this.fs.read(join(dir, 'cgroup.procs')).catch(() => ''))) all.add(p);
    return [...all];
  }

  exists(name: string): Promise<boolean> {
    return this.fs.exists(this.dir('memory', name));
  }

  async read(name: string): Promise<CgroupState | null> {
    if (!(await this.exists(name))) return null;
    const r = (c: V1Controller, f: string) => this.fs.read(join(this.dir(c, name), f)).then((t) => t.trim());
    const quota = Number(await r('cpu', 'cpu.cfs_quota_us'));
    return {
      memoryBytes: numOrNull(await r('memory', 'memory.limit_in_bytes')),
      cpuQuotaUs: quota < 0 ? null : quota,
      cpuPeriodUs: Number(await r('cpu', 'cpu.cfs_period_us')),
      cpus: await r('cpuset', 'cpuset.cpus'),
      pidsMax: numOrNull(await r('pids', 'pids.max')),
      procs: parsePids(await r('memory', 'cgroup.procs')),
    };
  }

  async remove(name: string): Promise<void> {
    for (const dir of this.paths(name)) {
      if (!(await this.fs.exists(dir))) continue;
      await killAll(this.fs, join(dir, 'cgroup.procs'));
      await this.fs.rmdir(dir);
    }
  }
}

interface Mount {
  point: string;
  fstype: string;
  superOptions: string[];
}

/** Mounts from /proc/self/mountinfo (proc(5)); octal escapes in paths decoded. */
export function parseMountinfo(text: string): Mount[] {
  const decode = (s: string) =>
    s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  const out: Mount[] = [];
  for (const line of text.split('\n')) {
    const [left, right] = line.split(' - ');
    if (!left || !right) continue;
    const point = left.split(' ')[4];
    const [fstype, , opts] = right.split(' ');
    if (!point || !fstype) continue;
    out.push({ point: decode(point), fstype, superOptions: (opts ?? '').split(',') });
  }
  return out;
}

/**
 * Picks v2 when the unified hierarchy has the memory controller, else v1 when
 * every needed controller has a v1 hierarchy. A host with neither cannot
 * enforce guest limits, so guests are refused there (Unavailable).
 */
export async function detectCgroups(
  opts: { parent?: string; mountinfo?: string; fs?: CgroupFs } = {},
): Promise<VmCgroups> {
  const fs = opts.fs ?? realCgroupFs;
  const parent = opts.parent ?? 'bulwark';
  const mounts = parseMountinfo(opts.mountinfo ?? (await readFile('/proc/self/mountinfo', 'utf8')));
  for (const m of mounts.filter((m) => m.fstype === 'cgroup2')) {
    const controllers = (await fs.read(join(m.point, 'cgroup.controllers')).catch(() => '')).split(/\s+/);
    if (controllers.includes('memory')) return new CgroupV2(m.point, parent, fs);
  }
  const v1: Partial<Record<V1Controller, string>> = {};
  for (const m of mounts.filter((m) => m.fstype === 'cgroup'))
    for (const c of V1_CONTROLLERS) if (m.superOptions.includes(c) && !v1[c]) v1[c] = m.point;
  const missing = V1_CONTROLLERS.filter((c) => !v1[c]);
  if (missing.length === 0 && v1.memory && v1.cpu && v1.cpuset && v1.pids)
    return new CgroupV1({ memory: v1.memory, cpu: v1.cpu, cpuset: v1.cpuset, pids: v1.pids }, parent, fs);
  throw new BulwarkError(
    'Unavailable',
    `This host cannot confine guests: no cgroup v2 memory controller and no cgroup v1 ${missing.join(', ')} hierarchy.`,
  );
}
