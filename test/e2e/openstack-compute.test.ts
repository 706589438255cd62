/**
 * The spec's compute commands, verbatim where they apply, through the real
 * `openstack` CLI against the real daemon, booting real QEMU guests (TCG).
 */
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DaemonProcess, startDaemonProcess, stopDaemon } from '../helpers/daemon-process.js';
import { guestImage, imageCreateArgs, waitFor } from '../helpers/guests.js';

// Each openstack CLI call takes seconds, and guests boot under TCG beside the other suites.
describe.runIf(process.getuid?.() === 0)(
  'openstack compute against bulwark serve (real guests)',
  { timeout: 300_000 },
  () => {
    let d: DaemonProcess;
    beforeAll(async () => {
      d = await startDaemonProcess();
    });
    afterAll(() => stopDaemon(d));

    const os = (...args: string[]) => d.os(...args);

    const osJson = (...args: string[]) => d.osJson(...args);
    const status = async (name: string) =>
      (await os('server', 'show', name, '-f', 'value', '-c', 'status')).trim();

    it('flavor create, set --property, list, show', async () => {
      await os('flavor', 'create', '--vcpus', '1', '--ram', '256', '--disk', '1', 'tiny');
      await os('flavor', 'set', 'tiny', '--property', 'quota:disk_read_bytes_sec=104857600');
      const list = await osJson('flavor', 'list');
      expect(list).toEqual([expect.objectContaining({ Name: 'tiny', RAM: 256, VCPUs: 1, Disk: 1 })]);
      const show = await osJson('flavor', 'show', 'tiny');
      expect(show.properties).toMatchObject({ 'quota:disk_read_bytes_sec': '104857600' });
    });

    it('refuses bad flavors with 4xx and creates nothing', async () => {
      const zero = await d.openstack([
        'flavor',
        'create',
        '--vcpus',
        '1',
        '--ram',
        '0',
        '--disk',
        '1',
        'zero-ram',
      ]);
      expect(zero.code).not.toBe(0);
      expect(zero.stderr).toMatch(/ram.*HTTP 400|HTTP 400.*ram|must be >= 1/is);
      const bad = await d.openstack(['flavor', 'set', 'tiny', '--property', 'hw:tpm_version=9.9']);
      expect(bad.code).not.toBe(0);
      expect(bad.stderr).toMatch(/1\.2, 2\.0/);
      expect((await osJson('flavor', 'list')).map((f: { Name: string }) => f.Name)).toEqual(['tiny']);
    });

    it('image create --file, set --property, show -c properties -f json', async () => {
      await os(...imageCreateArgs('tiny-bios', 'bios.raw'));
      await os(
        'image',
        'set',
        '--property',
        'hw_machine_type=pc',
        '--property',
        'hw_firmware_type=bios',
        'tiny-bios',
      );
      const props = await osJson('image', 'show', 'tiny-bios', '-c', 'properties');
      expect(props.properties).toMatchObject({ hw_machine_type: 'pc', hw_firmware_type: 'bios' });
      const img = await osJson('image', 'show', 'tiny-bios');
      expect(img.status).toBe('active');
      const sha = execFileSync('sha256sum', [guestImage('bios.raw')])
        .toString()
        .split(' ')[0];
      expect(props.properties.os_hash_value ?? img.os_hash_value ?? img.properties?.os_hash_value).toBe(sha);
    });

    it('refuses an unknown property value, and an image whose data is not what it claims', async () => {
      const bad = await d.openstack(['image', 'set', '--property', 'hw_firmware_type=coreboot', 'tiny-bios']);
      expect(bad.code).not.toBe(0);
      expect(bad.stderr).toMatch(/bios, uefi/);
      const liar = await d.openstack([
        'image',
        'create',
        '--disk-format',
        'qcow2',
        '--container-format',
        'bare',
        '--file',
        guestImage('bios.raw'),
        'liar',
      ]);
      expect(liar.code).not.toBe(0);
      expect(liar.stderr).toMatch(/not qcow2/);
    });

    it('network create and subnet create for the guests', async () => {
      await os('network', 'create', 'private-net');
      await os(
        'subnet',
        'create',
        '--network',
        'private-net',
        '--subnet-range',
        '10.0.0.0/24',
        'private-subnet',
      );
      expect(await osJson('subnet', 'show', 'private-subnet')).toMatchObject({
        cidr: '10.0.0.0/24',
        gateway_ip: '10.0.0.1',
      });
    });

    /** QEMU processes of one server (its id is in their command line). */
    const qemuPids = (id: string) => {
      try {
        return execFileSync('pgrep', ['-f', `qemu-system.*${id}`], { encoding: 'utf8' })
          .split('\n')
          .filter(Boolean)
          .map(Number);
      } catch {
        return [];
      }
    };
    let serverId = '';

    it('server create reaches ACTIVE with its marker on the console; list, show, stop, start, delete', async () => {
      await os(
        'server',
        'create',
        '--flavor',
        'tiny',
        '--image',
        'tiny-bios',
        '--network',
        'private-net',
        '--property',
        'purpose=e2e',
        'vm1',
      );
      await waitFor('vm1 ACTIVE', async () => (await status('vm1')) === 'ACTIVE', 120_000, 1000);
      await waitFor(
        'guest marker',
        async () => (await os('console', 'log', 'show', 'vm1')).includes('BULWARK-GUEST-READY'),
        90_000,
        1000,
      );
      const list = await osJson('server', 'list');
      expect(list).toEqual([expect.objectContaining({ Name: 'vm1', Status: 'ACTIVE' })]);
      const show = await osJson('server', 'show', 'vm1');
      serverId = show.id;
      expect(qemuPids(serverId)).toHaveLength(1);
      expect(show.properties).toMatchObject({ purpose: 'e2e' });
      expect(show.addresses).toMatchObject({ 'private-net': ['10.0.0.2'] });
      expect(show.addresses).toMatchObject({ 'private-net': ['10.0.0.2'] });
      await os('server', 'stop', 'vm1');
      await waitFor('vm1 SHUTOFF', async () => (await status('vm1')) === 'SHUTOFF', 60_000, 1000);
      await os('server', 'start', 'vm1');
      await waitFor('vm1 ACTIVE again', async () => (await status('vm1')) === 'ACTIVE', 60_000, 1000);
      await os('server', 'delete', '--wait', 'vm1');
      expect(await osJson('server', 'list')).toEqual([]);
      expect(qemuPids(serverId)).toEqual([]);
    });

    it('SIGKILL of the daemon with guests running: restart adopts the live one, marks the dead one, leaves no orphan', async () => {
      for (const name of ['keep', 'lost'])
        await os(
          'server',
          'create',
          '--flavor',
          'tiny',
          '--image',
          'tiny-bios',
          '--network',
          'private-net',
          name,
        );
      for (const name of ['keep', 'lost'])
        await waitFor(`${name} ACTIVE`, async () => (await status(name)) === 'ACTIVE', 120_000, 1000);
      const keep = (await osJson('server', 'show', 'keep')).id as string;
      const lost = (await osJson('server', 'show', 'lost')).id as string;
      const [keepPid] = qemuPids(keep);
      const [lostPid] = qemuPids(lost);
      expect(keepPid).toBeDefined();
      await d.kill('SIGKILL');
      // While the daemon is down one guest dies too.
      process.kill(lostPid as number, 'SIGKILL');
      await waitFor('lost QEMU gone', async () => qemuPids(lost).length === 0, 10_000);
      // Restarted with pages of one server (Nova's osapi_max_limit): the real CLI's paging is tested too.
      d = await startDaemonProcess({
        dataDir: d.dataDir,
        netns: d.netns,
        extraArgs: ['--api-max-limit', '1'],
      });
      const list = (await osJson('server', 'list', '--limit', '-1')) as { ID: string; Name: string }[];
      expect(list.map((s) => s.Name).sort()).toEqual(['keep', 'lost']);
      // One page without --limit (as Nova answers), the next after --marker, newest first.
      const first = (await osJson('server', 'list')) as { ID: string; Name: string }[];
      expect(first.map((s) => s.Name)).toEqual(['lost']);
      const after = (await osJson('server', 'list', '--limit', '1', '--marker', first[0]?.ID as string)) as {
        Name: string;
      }[];
      expect(after.map((s) => s.Name)).toEqual(['keep']);
      expect(await status('keep')).toBe('ACTIVE');
      expect(qemuPids(keep)).toEqual([keepPid]);
      expect(await status('lost')).toMatch(/SHUTOFF|ERROR/);
      expect(qemuPids(lost)).toEqual([]);
      // The adopted guest is fully manageable again.
      await os('server', 'stop', 'keep');
      await waitFor('keep SHUTOFF', async () => (await status('keep')) === 'SHUTOFF', 60_000, 1000);
      expect(qemuPids(keep)).toEqual([]);
      for (const name of ['keep', 'lost']) await os('server', 'delete', '--wait', name);
    });
  },
);
