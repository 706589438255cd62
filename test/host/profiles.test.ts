import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseProfile, profileFlavor } from '../../src/compute/profile-format.js';
import { resolveGuestPlan } from '../../src/compute/properties.js';
import { planSpec } from '../../src/compute/servers.js';
import { probeCapabilities } from '../../src/host/capabilities.js';
import { createQemuDriver, type QemuDriver } from '../../src/host/qemu-driver.js';
import type { QmpClient } from '../../src/host/qmp.js';
import { biosSpec, isRoot, join, MiB, makeBaseDir, teardownDriver, waitConsole } from './host-helpers.js';

/**
 * A profile's limits, enforced below a real TCG guest: the path an import takes
 * (profile -> flavor extra specs -> guest plan -> the spec the server service
 * hands the driver), then what the kernel and QEMU hold: cpu.max and
 * memory.max of the guest's cgroup, QEMU's throttle group, and the CPU
 * features QEMU gives the guest (`enforce`: one it cannot give stops the start).
 */
describe.runIf(isRoot)('VM profile limits on a real guest', () => {
  let base: string;
  let driver: QemuDriver;
  const ids = new Set<string>();
  const host = probeCapabilities();
  const hasHostFlags = ['aes', 'pclmulqdq'].every((f) => host.cpuFlags?.includes(f));

  /** The spec the server service would give the driver for this profile (no image properties). */
  const specOf = (profile: unknown, run = '') => {
    const p = parseProfile(profile);
    const f = profileFlavor(p);
    const plan = resolveGuestPlan({}, f.extraSpecs, host, f.ram);
    const spec = biosSpec({
      name: p.name,
      vcpus: f.vcpus,
      memoryMiB: f.ram,
      ...planSpec(plan),
      ...(run ? { fwCfg: { 'opt/org.bulwark/run': run } } : {}),
    });
    ids.add(spec.id);
    return spec;
  };
  const qmp = (id: string) =>
    (driver as unknown as { live: Map<string, { qmp: QmpClient }> }).live.get(id)?.qmp as QmpClient;

  beforeAll(async () => {
    base = makeBaseDir('profiles');
    driver = await createQemuDriver({ baseDir: base, accel: 'tcg', cgroupParent: 'bulwark-test' });
  });
  afterAll(async () => teardownDriver(driver, base, ids));

  it.runIf(hasHostFlags)(
    'cpu.max, memory.max, the throttle group and CPU features hold the profile',
    async () => {
      const spec = specOf(
        {
          name: 'limited',
          cpus: 1,
          memory: 256,
          disks: [{ name: 'root', size_gb: 1, image: 'bios' }],
          limits: { cpu_quota_percent: 50, memory_max_mb: 600, io_bandwidth_mb: 10 },
          cpu_features: { aes: true, pclmulqdq: true },
        },
        'echo "BW-PROFILE aes=$(grep -c -w aes /proc/cpuinfo)"',
      );
      await driver.define(spec);
      await driver.start(spec.id);

      const cg = await driver.cgroups.read(`vm-${spec.id}`);
      expect(cg).toMatchObject({ cpuQuotaUs: 50_000, cpuPeriodUs: 100_000, memoryBytes: 600 * MiB });
      const info = await driver.processInfo(spec.id);
      expect(cg?.procs).toContain(info?.pid);
      if (driver.cgroups.version === 2) {
        const dir = driver.cgroups.paths(`vm-${spec.id}`)[0] as string;
        expect(readFileSync(join(dir, 'cpu.max'), 'utf8').trim()).toBe('50000 100000');
        expect(readFileSync(join(dir, 'memory.max'), 'utf8').trim()).toBe(String(600 * MiB));
      }

      const limits = (await qmp(spec.id).execute('qom-get', {
        path: '/objects/disk0-limits',
        property: 'limits',
      })) as Record<string, number>;
      expect(limits['bps-total']).toBe(10 * MiB);

      const cpus = (await qmp(spec.id).execute('query-cpus-fast')) as { 'qom-path': string }[];
      for (const feature of ['aes', 'pclmulqdq'])
        expect(
          await qmp(spec.id).execute('qom-get', { path: cpus[0]?.['qom-path'], property: feature }),
        ).toBe(true);
      // And the guest sees it.
      await waitConsole(driver, spec.id, 'BW-PROFILE aes=1', 1, 120_000);
    },
  );

  it('a CPU feature the accelerator cannot give stops the start (QEMU enforce)', async () => {
    // TCG has no SHA extensions; a host whose CPU lacks them refuses earlier, at the plan.
    const profile = {
      name: 'no-sha',
      cpus: 1,
      memory: 256,
      disks: [{ name: 'root', size_gb: 1, image: 'bios' }],
      cpu_features: { sha_ni: true },
    };
    if (!host.cpuFlags?.includes('sha_ni')) {
      expect(() => specOf(profile)).toThrow(/sha_ni is refused: this host's CPU does not have it/);
      return;
    }
    const spec = specOf(profile);
    await driver.define(spec);
    await expect(driver.start(spec.id)).rejects.toThrow(/doesn't support requested feature.*sha-ni/s);
    expect(await driver.state(spec.id)).not.toBe('running');
  });
});
