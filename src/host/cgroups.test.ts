import { describe, expect, it } from 'vitest';
import {
  type CgroupFs,
  CgroupV1,
  CgroupV2,
  cgroupLimitsFor,
  cpuQuotaUs,
  detectCgroups,
  memoryLimitBytes,
  parseMountinfo,
} from './cgroups.js';
import type { GuestSpec } from './hypervisor.js';

const MiB = 1024 * 1024;

/** An in-memory cgroupfs: directories and files, with the writes in order. */
class FakeFs implements CgroupFs {
  readonly files = new Map<string, string>();
  readonly dirs = new Set<string>();
  readonly writes: [string, string][] = [];
  constructor(seed: Record<string, string> = {}) {
    for (const [p, v] of Object.entries(seed)) this.files.set(p, v);
  }
  async read(p: string) {
    const v = this.files.get(p);
    if (v === undefined) throw Object.assign(new Error(`ENOENT ${p}`), { code: 'ENOENT' });
    return v;
  }
  async write(p: string, v: string) {
    this.writes.push([p, v]);
    this.files.set(p, p.endsWith('subtree_control') ? `${this.files.get(p) ?? ''} ${v.slice(1)}`.trim() : v);
  }
  async exists(p: string) {
    return this.files.has(p) || this.dirs.has(p);
  }
  async mkdir(p: string) {
    this.dirs.add(p);
  }
  async rmdir(p: string) {
    this.dirs.delete(p);
    for (const f of [...this.files.keys()]) if (f.startsWith(`${p}/`)) this.files.delete(f);
  }
}

const spec = (over: Partial<GuestSpec> = {}): GuestSpec => ({
  id: '0b7c1a6e-4d2f-4a8b-9c3d-5e6f7a8b9c0d',
  name: 'x',
  vcpus: 2,
  memoryMiB: 1024,
  machine: 'pc',
  firmware: { type: 'bios' },
  bootDisk: { imagePath: '/img', imageFormat: 'raw', sizeGiB: 1 },
  ...over,
});

describe('cgroup limits from a flavor', () => {
  it('memory: flavor RAM + 256 MiB + RAM/64', () => {
    expect(memoryLimitBytes(256)).toBe((256 + 256 + 4) * MiB);
    expect(memoryLimitBytes(1024)).toBe((1024 + 256 + 16) * MiB);
    expect(memoryLimitBytes(100)).toBe((100 + 256 + 2) * MiB);
  });

  it('cpu: one CPU per vCPU, or quota:cpu_quota_percent of one CPU', () => {
    expect(cpuQuotaUs({ vcpus: 2 })).toBe(200_000);
    expect(cpuQuotaUs({ vcpus: 2, cpu: { quotaPercent: 50 } })).toBe(50_000);
    expect(cpuQuotaUs({ vcpus: 1, cpu: { quotaPercent: 250 } })).toBe(250_000);
  });

  it('pinning becomes a sorted cpuset', () => {
    expect(cgroupLimitsFor(spec({ cpu: { pinning: [3, 1, 3] } })).cpus).toEqual([1, 3]);
    expect(cgroupLimitsFor(spec()).cpus).toBeNull();
    // A profile's memory_max_mb (quota:memory_max_mb) replaces the default limit.
    expect(cgroupLimitsFor(spec({ memoryMaxMiB: 3000 })).memoryBytes).toBe(3000 * MiB);
  });
});

describe('cgroup v2', () => {
  const root = '/sys/fs/cgroup';
  const seed = () =>
    new FakeFs({
      [`${root}/cgroup.controllers`]: 'cpuset cpu io memory pids',
      [`${root}/cgroup.subtree_control`]: 'memory',
      [`${root}/bulwark/cgroup.controllers`]: 'cpuset cpu memory pids',
      [`${root}/bulwark/vm-a/memory.swap.max`]: 'max',
      [`${root}/bulwark/vm-a/memory.oom.group`]: '0',
      [`${root}/bulwark/vm-a/cgroup.kill`]: '',
    });

  it('enables controllers down the chain and writes the limits', async () => {
    const fs = seed();
    const cg = new CgroupV2(root, 'bulwark', fs);
    await cg.create('vm-a', cgroupLimitsFor(spec({ cpu: { pinning: [1, 0] } })));
    const dir = `${root}/bulwark/vm-a`;
    expect(fs.files.get(`${root}/cgroup.subtree_control`)).toBe('memory cpu cpuset pids');
    expect(fs.files.get(`${root}/bulwark/cgroup.subtree_control`)).toBe('memory cpu cpuset pids');
    expect(fs.files.get(`${dir}/memory.max`)).toBe(String(memoryLimitBytes(1024)));
    expect(fs.files.get(`${dir}/memory.swap.max`)).toBe('0');
    expect(fs.files.get(`${dir}/memory.oom.group`)).toBe('1');
    expect(fs.files.get(`${dir}/cpu.max`)).toBe('200000 100000');
    expect(fs.files.get(`${dir}/cpuset.cpus`)).toBe('0,1');
    expect(fs.files.get(`${dir}/pids.max`)).toBe('260');
    await cg.attach('vm-a', 4242);
    expect(fs.files.get(`${dir}/cgroup.procs`)).toBe('4242');
    expect(cg.paths('vm-a')).toEqual([dir]);
  });

  it('reads back, and removes', async () => {
    const fs = seed();
    const cg = new CgroupV2(root, 'bulwark', fs);
    await cg.create('vm-a', cgroupLimitsFor(spec()));
    fs.files.set(`${root}/bulwark/vm-a/cgroup.procs`, '');
    expect(await cg.read('vm-a')).toMatchObject({
      memoryBytes: memoryLimitBytes(1024),
      cpuQuotaUs: 200_000,
      cpuPeriodUs: 100_000,
      pidsMax: 260,
      procs: [],
    });
    await cg.remove('vm-a');
    expect(await cg.exists('vm-a')).toBe(false);
    await cg.remove('vm-a'); // idempotent
  });

  it('refuses names that would leave the tree', async () => {
    const cg = new CgroupV2(root, 'bulwark', seed());
    await expect(cg.create('../x', cgroupLimitsFor(spec()))).rejects.toThrow(/bad cgroup name/);
    expect(() => new CgroupV2(root, '../etc', seed())).toThrow(/bad cgroup name/);
  });
});

describe('cgroup v1', () => {
  const m = {
    memory: '/sys/fs/cgroup/memory',
    cpu: '/sys/fs/cgroup/cpu,cpuacct',
    cpuset: '/sys/fs/cgroup/cpuset',
    pids: '/sys/fs/cgroup/pids',
  };

  it('copies cpuset cpus/mems down, sets memory (+memsw), CFS quota and pids; attaches everywhere', async () => {
    const fs = new FakeFs({
      [`${m.cpuset}/cpuset.cpus`]: '0-3',
      [`${m.cpuset}/cpuset.mems`]: '0',
      [`${m.memory}/bulwark/vm-a/memory.memsw.limit_in_bytes`]: '9223372036854771712',
    });
    const cg = new CgroupV1(m, 'bulwark', fs);
    await cg.create('vm-a', cgroupLimitsFor(spec({ cpu: { quotaPercent: 150 } })));
    expect(fs.files.get(`${m.cpuset}/bulwark/cpuset.cpus`)).toBe('0-3');
    expect(fs.files.get(`${m.cpuset}/bulwark/vm-a/cpuset.cpus`)).toBe('0-3');
    expect(fs.files.get(`${m.cpuset}/bulwark/vm-a/cpuset.mems`)).toBe('0');
    expect(fs.files.get(`${m.memory}/bulwark/vm-a/memory.limit_in_bytes`)).toBe(
      String(memoryLimitBytes(1024)),
    );
    expect(fs.files.get(`${m.memory}/bulwark/vm-a/memory.memsw.limit_in_bytes`)).toBe(
      String(memoryLimitBytes(1024)),
    );
    expect(fs.files.get(`${m.cpu}/bulwark/vm-a/cpu.cfs_period_us`)).toBe('100000');
    expect(fs.files.get(`${m.cpu}/bulwark/vm-a/cpu.cfs_quota_us`)).toBe('150000');
    expect(fs.files.get(`${m.pids}/bulwark/vm-a/pids.max`)).toBe('260');
    await cg.attach('vm-a', 77);
    for (const dir of cg.paths('vm-a')) expect(fs.files.get(`${dir}/cgroup.procs`)).toBe('77');
    expect(cg.paths('vm-a')).toHaveLength(4);
  });
});

describe('detecting the cgroup layout', () => {
  const v1 = [
    '31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
    '32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct',
    '34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset',
    '35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory',
    '39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids',
    '41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw',
  ].join('\n');

  it('parses mountinfo', () => {
    expect(parseMountinfo('1 2 0:1 / /a\\040b rw - cgroup2 cgroup2 rw,nsdelegate')).toEqual([
      { point: '/a b', fstype: 'cgroup2', superOptions: ['rw', 'nsdelegate'] },
    ]);
  });

  it('uses v1 on a hybrid host whose unified tree has no controllers', async () => {
    const cg = await detectCgroups({
      mountinfo: v1,
      fs: new FakeFs({ '/sys/fs/cgroup/unified/cgroup.controllers': '' }),
    });
    expect(cg.version).toBe(1);
    expect(cg.paths('vm-x')).toContain('/sys/fs/cgroup/cpu,cpuacct/bulwark/vm-x');
  });

  it('uses v2 when the unified tree has the memory controller', async () => {
    const cg = await detectCgroups({
      mountinfo: '30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate',
      fs: new FakeFs({ '/sys/fs/cgroup/cgroup.controllers': 'cpuset cpu io memory hugetlb pids rdma misc' }),
    });
    expect(cg.version).toBe(2);
    expect(cg.paths('vm-x')).toEqual(['/sys/fs/cgroup/bulwark/vm-x']);
  });

  it('refuses to run guests on a host without cgroups', async () => {
    await expect(detectCgroups({ mountinfo: '', fs: new FakeFs() })).rejects.toThrow(/cannot confine guests/);
  });
});
