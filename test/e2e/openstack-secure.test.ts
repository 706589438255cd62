/**
 * The spec's vTPM and Secure Boot commands through the real `openstack` CLI
 * against the real daemon, booting real guests (TCG) under OVMF with Secure
 * Boot enforced (Debian's snakeoil keys enrolled: the test images are signed
 * with that public test key) and a vTPM whose state the key manager's key
 * encrypts.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DaemonProcess, startDaemonProcess, stopDaemon } from '../helpers/daemon-process.js';
import { guestImage, waitFor } from '../helpers/guests.js';
import { SNAKEOIL_VARS } from '../host/host-helpers.js';

describe.runIf(process.getuid?.() === 0)(
  'openstack vTPM + Secure Boot against bulwark serve (real guests)',
  { timeout: 300_000 },
  () => {
    let d: DaemonProcess;
    beforeAll(async () => {
      d = await startDaemonProcess({ extraArgs: ['--secure-boot-vars', SNAKEOIL_VARS] });
    });
    afterAll(() => stopDaemon(d));

    const os = (...args: string[]) => d.os(...args);
    const osJson = (...args: string[]) => d.osJson(...args);
    const show = (name: string) => osJson('server', 'show', name);
    const untilStatus = (name: string, want: string[], timeoutMs = 120_000) =>
      waitFor(
        `${name} in ${want.join('|')}`,
        async () => {
          const s = await show(name);
          return want.includes(s.status) ? s : undefined;
        },
        timeoutMs,
        1000,
      );
    const consoleLog = (name: string) => os('console', 'log', 'show', name);
    /** swtpm processes whose control socket is under this daemon's data dir. */
    const swtpms = () =>
      readdirSync('/proc')
        .filter((e) => /^\d+$/.test(e))
        .map((pid) => {
          try {
            const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
            const uid = Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
            return { pid: Number(pid), argv, uid };
          } catch {
            return null;
          }
        })
        .filter(
          (p): p is { pid: number; argv: string[]; uid: number } =>
            p !== null && p.argv[0]?.endsWith('swtpm') === true && p.argv.join(' ').includes(`${d.dataDir}/`),
        );

    it('refuses unknown TPM and Secure Boot values at flavor set / image set, changing nothing', async () => {
      await os('flavor', 'create', '--vcpus', '1', '--ram', '256', '--disk', '1', 'secure-vm-medium');
      const bad = await d.openstack([
        'flavor',
        'set',
        '--property',
        'hw:tpm_model=tpm-xyz',
        'secure-vm-medium',
      ]);
      expect(bad.code).not.toBe(0);
      expect(bad.stderr).toMatch(/tpm-tis, tpm-crb/);
      expect((await osJson('flavor', 'show', 'secure-vm-medium')).properties ?? {}).toEqual({});
    });

    it('flavor set --property hw:tpm_model=tpm-crb --property hw:tpm_version=2.0', async () => {
      await os(
        'flavor',
        'set',
        '--property',
        'hw:tpm_model=tpm-crb',
        '--property',
        'hw:tpm_version=2.0',
        'secure-vm-medium',
      );
      expect((await osJson('flavor', 'show', 'secure-vm-medium')).properties).toMatchObject({
        'hw:tpm_model': 'tpm-crb',
        'hw:tpm_version': '2.0',
      });
      await os('flavor', 'create', '--vcpus', '1', '--ram', '256', '--disk', '1', 'plain');
    });

    it('image create + image set hw_firmware_type=uefi hw_machine_type=q35 os_secure_boot=required', async () => {
      for (const [name, file] of [
        ['ubuntu-24.04-secure', 'uefi-signed.raw'],
        ['unsigned-secure', 'uefi-unsigned.raw'],
      ] as const) {
        await os(
          'image',
          'create',
          '--disk-format',
          'raw',
          '--container-format',
          'bare',
          '--file',
          guestImage(file),
          name,
        );
        const bad = await d.openstack(['image', 'set', '--property', 'os_secure_boot=sometimes', name]);
        expect(bad.code).not.toBe(0);
        expect(bad.stderr).toMatch(/required, optional, disabled/);
        await os(
          'image',
          'set',
          '--property',
          'hw_firmware_type=uefi',
          '--property',
          'hw_machine_type=q35',
          '--property',
          'os_secure_boot=required',
          name,
        );
        const props = (await osJson('image', 'show', name, '-c', 'properties')).properties;
        expect(props).toMatchObject({
          hw_firmware_type: 'uefi',
          hw_machine_type: 'q35',
          os_secure_boot: 'required',
        });
      }
    });

    it('a signed image on the vTPM flavor boots ACTIVE with Secure Boot enforced and a TPM', async () => {
      await os(
        'server',
        'create',
        '--flavor',
        'secure-vm-medium',
        '--image',
        'ubuntu-24.04-secure',
        'secure-vm',
      );
      const s = await untilStatus('secure-vm', ['ACTIVE', 'ERROR']);
      expect(s.status, JSON.stringify(s.fault)).toBe('ACTIVE');
      await waitFor(
        'console',
        async () => (await consoleLog('secure-vm')).includes('BULWARK-FIRMWARE:'),
        120_000,
        2000,
      );
      const text = await consoleLog('secure-vm');
      expect(text).toContain('BULWARK-SECUREBOOT: enabled');
      expect(text).toContain('BULWARK-TPM: present');
      // One swtpm, as the guest's own user (not root), its state encrypted with a key passed on a pipe.
      const sw = swtpms();
      expect(sw).toHaveLength(1);
      expect(sw[0]?.uid).not.toBe(0);
      expect(sw[0]?.argv).toContain('fd=3,mode=aes-256-cbc,format=binary');
      expect(JSON.stringify(s)).not.toMatch(/tpm_secret|secret_id/);
    });

    it('an unsigned image with os_secure_boot=required never boots: ERROR, fault says Secure Boot refused it', async () => {
      await os('server', 'create', '--flavor', 'plain', '--image', 'unsigned-secure', 'unsigned-vm');
      const s = await untilStatus('unsigned-vm', ['ERROR'], 120_000);
      expect(s.fault?.message ?? JSON.stringify(s)).toMatch(/Secure Boot refused the image's boot loader/);
      const text = await consoleLog('unsigned-vm');
      expect(text).toMatch(/Access Denied/);
      expect(text).not.toContain('BULWARK-GUEST-READY');
    });

    it('server delete removes the guest, its swtpm and its TPM state', async () => {
      const id = (await show('secure-vm')).id as string;
      await os('server', 'delete', '--wait', 'secure-vm');
      expect(swtpms()).toHaveLength(0);
      expect(readdirSync(join(d.dataDir, 'instances'))).not.toContain(id);
    });
  },
);
