/**
 * VM profiles (docs/profiles.md) against the real `bulwark serve`, a real
 * guest under TCG: the refusal's `openstack flavor create` command runs
 * verbatim in the real openstack CLI, the import boots the server, the
 * guest's cgroup holds the profile's limits and QEMU its CPU feature, and
 * export gives the same profile back.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { detectCgroups } from '../../src/host/cgroups.js';
import { type DaemonProcess, startDaemonProcess, stopDaemon } from '../helpers/daemon-process.js';
import { imageCreateArgs } from '../helpers/guests.js';

const MiB = 1024 * 1024;
const hostHasAes = /^flags\s*:.*\baes\b/m.test(readFileSync('/proc/cpuinfo', 'utf8'));

describe.runIf(process.getuid?.() === 0 && hostHasAes)(
  'VM profiles on the real daemon',
  { timeout: 900_000 },
  () => {
    let d: DaemonProcess;
    let dir: string;
    const profile = {
      name: 'e2e-profiled',
      cpus: 1,
      memory: 256,
      disks: [{ name: 'root', size_gb: 1, image: 'tiny-bios' }],
      limits: { cpu_quota_percent: 60, memory_max_mb: 640, io_bandwidth_mb: 25 },
      firmware: { type: 'bios', secure_boot: false },
      cpu_features: { aes: true },
    };

    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), 'bw-e2e-profile-'));
      d = await startDaemonProcess();
      await d.os(...imageCreateArgs('tiny-bios', 'bios.raw'));
    });
    afterAll(async () => {
      await stopDaemon(d);
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it('import (after the named flavor is made with the openstack CLI), limits below the guest, export', async () => {
      const file = join(dir, 'profile.json');
      writeFileSync(file, JSON.stringify(profile));
      const refused = await d.bulwark(['profile', 'import', file]);
      expect(refused.code).not.toBe(0);
      const command = /openstack flavor create [^()]*? profile-e2e-profiled/.exec(refused.stderr)?.[0];
      expect(command, refused.stderr).toBeDefined();
      // The command the message names, verbatim.
      await d.os(...(command as string).split(' ').slice(1));

      const made = await d.bulwark(['profile', 'import', file, '--wait', '-f', 'json']);
      expect(made.code, made.stderr).toBe(0);
      const r = JSON.parse(made.stdout);
      expect(r).toMatchObject({ flavor: 'profile-e2e-profiled', image: 'tiny-bios', status: 'ACTIVE' });

      // Below the guest: its cgroup (as the daemon's driver made it) and its QEMU's -cpu.
      const cgroups = await detectCgroups({ parent: 'bulwark' });
      const cg = await cgroups.read(`vm-${r.server_id}`);
      expect(cg).toMatchObject({ cpuQuotaUs: 60_000, cpuPeriodUs: 100_000, memoryBytes: 640 * MiB });
      const qemu = cg?.procs.find((pid) =>
        readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(`bulwark-${r.server_id}`),
      );
      const cmdline = readFileSync(`/proc/${qemu}/cmdline`, 'utf8').split('\0');
      expect(cmdline[cmdline.indexOf('-cpu') + 1]).toMatch(/,\+aes,enforce$/);

      const exported = await d.bulwark(['profile', 'export', 'e2e-profiled']);
      expect(exported.code, exported.stderr).toBe(0);
      expect(JSON.parse(exported.stdout)).toEqual(profile);
      expect((await d.osJson('flavor', 'show', 'profile-e2e-profiled')).properties).toMatchObject({
        'quota:disk_total_bytes_sec': String(25 * MiB),
      });
    });
  },
);
