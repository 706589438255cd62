import { describe, expect, it } from 'vitest';
import type { GuestSpec } from './hypervisor.js';
import { instanceLayout } from './layout.js';
import { buildQemuArgs, optValue, SANDBOX, throttleLimits, validateGuestSpec } from './qemu-args.js';

const id = '0b7c1a6e-4d2f-4a8b-9c3d-5e6f7a8b9c0d';
const paths = instanceLayout('/var/lib/bulwark/instances', id);

const base: GuestSpec = {
  id,
  name: 'web-1',
  vcpus: 2,
  memoryMiB: 512,
  machine: 'pc',
  firmware: { type: 'bios' },
  bootDisk: { imagePath: '/var/lib/bulwark/images/img', imageFormat: 'raw', sizeGiB: 10 },
};

const build = (spec: Partial<GuestSpec> = {}, opts: Partial<Parameters<typeof buildQemuArgs>[1]> = {}) =>
  buildQemuArgs({ ...base, ...spec }, { accel: 'tcg', paths, ...opts });

/** The value after each occurrence of `flag`. */
const values = (args: string[], flag: string) =>
  args.flatMap((a, i) => (a === flag ? [args[i + 1] ?? ''] : []));
const value = (args: string[], flag: string) => values(args, flag)[0];
const blockdevs = (args: string[]) => values(args, '-blockdev').map((v) => JSON.parse(v));
const devices = (args: string[]) => values(args, '-device').map((v) => JSON.parse(v));

describe('buildQemuArgs', () => {
  it('attaches the cloud-init seed read-only and never as a boot device', () => {
    const args = build({ cloudInit: true });
    expect(blockdevs(args).filter((b) => String(b['node-name']).startsWith('seed'))).toEqual([
      { driver: 'file', 'node-name': 'seed-file', filename: paths.seed, 'read-only': true },
      { driver: 'raw', 'node-name': 'seed', file: 'seed-file', 'read-only': true },
    ]);
    // A CD-ROM on its own virtio-scsi controller, as Nova's config drive: it takes no /dev/vdX name,
    // so the first volume stays /dev/vdb.
    expect(devices(args).filter((d) => String(d.id).startsWith('seed'))).toEqual([
      { driver: 'virtio-scsi-pci', id: 'seedscsi' },
      { driver: 'scsi-cd', id: 'seed0', bus: 'seedscsi.0', drive: 'seed' },
    ]);
    expect(devices(args).some((d) => d.driver === 'virtio-blk-pci' && d.drive === 'seed')).toBe(false);
    expect(build()).not.toContain(paths.seed);
  });

  it('starts from nothing: no defaults, no display, no user config, full sandbox, paused', () => {
    const args = build();
    for (const flag of ['-nodefaults', '-no-user-config', '-nographic', '-S', '-no-shutdown'])
      expect(args).toContain(flag);
    expect(value(args, '-display')).toBe('none');
    expect(value(args, '-vga')).toBe('none');
    expect(value(args, '-sandbox')).toBe(SANDBOX);
    expect(SANDBOX).toBe('on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny');
    expect(value(args, '-machine')).toBe('pc,usb=off,dump-guest-core=off,mem-merge=off,vmport=off');
    expect(value(args, '-m')).toBe('512M');
    expect(value(args, '-smp')).toBe('2,sockets=1,cores=2,threads=1');
    expect(value(args, '-uuid')).toBe(id);
    // The user-chosen name stays off the command line other host users can read.
    expect(args.join(' ')).not.toContain('web-1');
    // Only the boot disk: no NIC, sound, USB, TPM or fw_cfg unless asked for.
    expect(devices(args).map((d) => d.driver)).toEqual(['virtio-blk-pci']);
    for (const flag of ['-netdev', '-tpmdev', '-fw_cfg', '-audiodev', '-usb', '-incoming', '-runas'])
      expect(args).not.toContain(flag);
  });

  it('turns nested virtualisation off for both accelerators', () => {
    expect(value(build(), '-cpu')).toBe('qemu64,-vmx,-svm');
    expect(value(build(), '-accel')).toBe('tcg,tb-size=64');
    const kvm = build({}, { accel: 'kvm' });
    expect(value(kvm, '-cpu')).toBe('host,-vmx,-svm');
    expect(value(kvm, '-accel')).toBe('kvm');
  });

  it('adds allow-listed CPU features with enforce, so QEMU refuses one it cannot give', () => {
    expect(value(build({ cpu: { features: ['+aes', '-avx'] } }), '-cpu')).toBe(
      'qemu64,-vmx,-svm,+aes,-avx,enforce',
    );
  });

  it('has QMP and a serial console that is both logged and a socket', () => {
    const args = build();
    const chardevs = values(args, '-chardev');
    expect(chardevs).toContain(`socket,id=qmp,path=${paths.qmpSocket},server=on,wait=off`);
    expect(value(args, '-mon')).toBe('chardev=qmp,mode=control');
    expect(chardevs).toContain(
      `socket,id=serial0,path=${paths.consoleSocket},server=on,wait=off,logfile=${paths.consoleLog},logappend=on`,
    );
    expect(value(args, '-serial')).toBe('chardev:serial0');
    expect(value(args, '-pidfile')).toBe(paths.pidFile);
  });

  it('reaches the base image only through a read-only fd, under a per-guest qcow2 overlay', () => {
    const args = build({}, { baseImageFd: 3 });
    expect(value(args, '-add-fd')).toBe('fd=3,set=1,opaque=base-image');
    expect(blockdevs(args)).toEqual([
      { driver: 'file', 'node-name': 'base-file', filename: '/dev/fdset/1', 'read-only': true },
      { driver: 'raw', 'node-name': 'base', file: 'base-file', 'read-only': true },
      { driver: 'file', 'node-name': 'disk0-file', filename: paths.overlay, discard: 'unmap' },
      { driver: 'qcow2', 'node-name': 'disk0-fmt', file: 'disk0-file', backing: 'base', discard: 'unmap' },
    ]);
    expect(args.join(' ')).not.toContain(base.bootDisk.imagePath);
    expect(devices(args)[0]).toEqual({
      driver: 'virtio-blk-pci',
      id: 'vda',
      drive: 'disk0-fmt',
      bootindex: 1,
    });
    // A qcow2 base may not name a backing file of its own.
    const q = blockdevs(build({ bootDisk: { ...base.bootDisk, imageFormat: 'qcow2' } }));
    expect(q[1]).toEqual({
      driver: 'qcow2',
      'node-name': 'base',
      file: 'base-file',
      'read-only': true,
      backing: null,
    });
  });

  it("maps Nova's quota:disk_* limits to a throttle group in front of the disk", () => {
    const args = build({ io: { readBytesSec: 1_000_000, writeIopsSec: 200, totalIopsSec: 0 } });
    expect(JSON.parse(value(args, '-object') ?? '')).toEqual({
      'qom-type': 'throttle-group',
      id: 'disk0-limits',
      limits: { 'bps-read': 1_000_000, 'iops-write': 200 },
    });
    expect(blockdevs(args).at(-1)).toEqual({
      driver: 'throttle',
      'node-name': 'disk0',
      'throttle-group': 'disk0-limits',
      file: 'disk0-fmt',
    });
    expect(devices(args)[0]?.drive).toBe('disk0');
    expect(
      throttleLimits({
        readBytesSec: 1,
        writeBytesSec: 2,
        totalBytesSec: 0,
        readIopsSec: 3,
        writeIopsSec: 4,
        totalIopsSec: 0,
      }),
    ).toEqual({ 'bps-read': 1, 'bps-write': 2, 'iops-read': 3, 'iops-write': 4 });
    expect(throttleLimits({ totalBytesSec: 5, totalIopsSec: 6 })).toEqual({
      'bps-total': 5,
      'iops-total': 6,
    });
    expect(throttleLimits({})).toBeNull();
    expect(build({ io: {} })).not.toContain('-object');
  });

  it('boots UEFI from read-only OVMF code and the guest’s own variable store', () => {
    const args = build({ firmware: { type: 'uefi', secureBoot: false } });
    expect(value(args, '-machine')).toBe(
      'pc,usb=off,dump-guest-core=off,mem-merge=off,vmport=off,pflash0=fw-code,pflash1=fw-vars',
    );
    expect(blockdevs(args).slice(0, 4)).toEqual([
      {
        driver: 'file',
        'node-name': 'fw-code-file',
        filename: '/usr/share/OVMF/OVMF_CODE_4M.fd',
        'read-only': true,
      },
      { driver: 'raw', 'node-name': 'fw-code', file: 'fw-code-file', 'read-only': true },
      { driver: 'file', 'node-name': 'fw-vars-file', filename: paths.vars },
      { driver: 'raw', 'node-name': 'fw-vars', file: 'fw-vars-file' },
    ]);
    expect(values(args, '-global')).not.toContain('driver=cfi.pflash01,property=secure,value=on');
  });

  it('Secure Boot: q35 with SMM, the secboot code and secure pflash', () => {
    const args = build({ machine: 'q35', firmware: { type: 'uefi', secureBoot: true } });
    expect(value(args, '-machine')).toMatch(/^q35,.*,smm=on,pflash0=fw-code,pflash1=fw-vars$/);
    expect(values(args, '-global')).toEqual([
      'ICH9-LPC.disable_s3=1',
      'ICH9-LPC.disable_s4=1',
      'driver=cfi.pflash01,property=secure,value=on',
    ]);
    expect(blockdevs(args)[0]?.filename).toBe('/usr/share/OVMF/OVMF_CODE_4M.secboot.fd');
    expect(() => build({ machine: 'pc', firmware: { type: 'uefi', secureBoot: true } })).toThrow(/q35/);
  });

  it('passes fw_cfg from files in the guest dir, or inline with commas doubled', () => {
    const fwCfg = { 'opt/org.bulwark/run': 'echo a,b\necho c', 'opt/org.bulwark/a': 'x' };
    expect(values(build({ fwCfg }), '-fw_cfg')).toEqual([
      `name=opt/org.bulwark/a,file=${paths.fwCfgFile(0)}`,
      `name=opt/org.bulwark/run,file=${paths.fwCfgFile(1)}`,
    ]);
    expect(values(build({ fwCfg }, { fwCfg: 'inline' }), '-fw_cfg')).toEqual([
      'name=opt/org.bulwark/a,string=x',
      'name=opt/org.bulwark/run,string=echo a,,b\necho c',
    ]);
    expect(optValue('a,b,,c')).toBe('a,,b,,,,c');
    expect(() => build({ fwCfg: { 'etc/foo': 'x' } })).toThrow(/opt\//);
    expect(() => build({ fwCfg: { [`opt/${'x'.repeat(60)}`]: 'x' } })).toThrow(/56/);
  });

  it('escapes commas in paths given to QEMU option syntax', () => {
    const odd = instanceLayout('/srv/a,b', id);
    const args = buildQemuArgs(base, { accel: 'tcg', paths: odd });
    expect(values(args, '-chardev')[0]).toBe(
      `socket,id=qmp,path=/srv/a,,b/${id}/qmp.sock,server=on,wait=off`,
    );
  });

  it('wires a vTPM and NICs only when asked', () => {
    const args = build({
      tpm: { version: '2.0', model: 'tpm-crb', socketPath: '/run/bulwark/swtpm/x.sock' },
      nics: [{ tap: 'tap0123abcd', mac: 'FA:16:3E:00:00:01', ips: [] }],
    });
    expect(values(args, '-chardev')).toContain('socket,id=tpm0-chr,path=/run/bulwark/swtpm/x.sock');
    expect(value(args, '-tpmdev')).toBe('emulator,id=tpm0,chardev=tpm0-chr');
    expect(value(args, '-netdev')).toBe('tap,id=net0,ifname=tap0123abcd,script=no,downscript=no,vhost=off');
    expect(devices(args).map((d) => d.driver)).toEqual(['virtio-blk-pci', 'virtio-net-pci', 'tpm-crb']);
    expect(devices(args)[1]).toMatchObject({ netdev: 'net0', mac: 'fa:16:3e:00:00:01' });
    expect(() => build({ tpm: { version: '1.2', model: 'tpm-crb', socketPath: '/x' } })).toThrow(/tpm-tis/);
    expect(() => build({ nics: [{ tap: 'tap0;rm -rf', mac: 'fa:16:3e:00:00:01', ips: [] }] })).toThrow(/tap/);
    expect(() => build({ nics: [{ tap: 'tap0', mac: 'nope', ips: [] }] })).toThrow(/MAC/);
  });

  it('resumes from a saved state fd', () => {
    expect(value(build({}, { incomingFd: 4 }), '-incoming')).toBe('fd:4');
  });

  it('refuses specs QEMU would reject or that weaken isolation', () => {
    const bad: [Partial<GuestSpec>, RegExp][] = [
      [{ id: '../../etc' }, /UUID/],
      [{ vcpus: 0 }, /vcpus/],
      [{ memoryMiB: 1.5 }, /memoryMiB/],
      [{ bootDisk: { imagePath: 'relative.img', imageFormat: 'raw', sizeGiB: 1 } }, /absolute/],
      [{ io: { totalBytesSec: 10, readBytesSec: 5 } }, /cannot be combined/],
      [{ cpu: { pinning: [-1] } }, /CPU/],
      [{ cpu: { quotaPercent: 0 } }, /quota/],
      [{ cpu: { features: ['+vmx'] } }, /not allowed/],
      [{ cpu: { features: ['-md-clear'] } }, /not allowed/],
      [{ cpu: { features: ['+aes,+vmx'] } }, /not allowed/],
      [{ memoryMiB: 256, memoryMaxMiB: 300 }, /at least 516 MiB/],
    ];
    for (const [spec, why] of bad)
      expect(() => validateGuestSpec({ ...base, ...spec }), String(why)).toThrow(why);
  });
});
