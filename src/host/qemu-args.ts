import { featuresFromQemu } from '../compute/cpu-features.js';
import { guestAgentArgs } from '../compute/guest-agent.js';
import { passthroughArgs } from '../compute/passthrough-policy.js';
import { badRequest } from '../errors.js';
import { memoryLimitBytes } from './cgroups.js';
import type { GuestSpec } from './hypervisor.js';
import { checkGuestId, type InstanceLayout } from './layout.js';

export type Accel = 'kvm' | 'tcg';

/** Every seccomp option QEMU has, all on (qemu(1), `-sandbox`). */
export const SANDBOX = 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny';

export const OVMF_DIR = '/usr/share/OVMF';

/** TCG's translation cache defaults to 1 GiB on 64-bit hosts; 64 MiB fits in QEMU's cgroup overhead. */
export const TCG_TB_SIZE_MIB = 64;

export interface QemuArgsOptions {
  accel: Accel;
  paths: Pick<
    InstanceLayout,
    | 'dir'
    | 'overlay'
    | 'vars'
    | 'qmpSocket'
    | 'consoleSocket'
    | 'consoleLog'
    | 'pidFile'
    | 'fwCfgFile'
    | 'seed'
  >;
  /** The child's fd holding the base image open read-only (QEMU sees it as /dev/fdset/1). Default 3. */
  baseImageFd?: number;
  /** Resume: the child's fd from which to load the saved RAM and device state. */
  incomingFd?: number;
  /** A live migration's destination: `-incoming defer`, the stream started over QMP (live-migration.ts). */
  incomingDefer?: boolean;
  /** UEFI code images; default Debian's OVMF in /usr/share/OVMF. */
  ovmfDir?: string;
  /**
   * fw_cfg payloads are read from files in the guest's 0700 dir by default,
   * so user data never shows on a command line every host user can read
   * (/proc/<pid>/cmdline). `inline` puts them on the command line instead.
   */
  fwCfg?: 'files' | 'inline';
}

/** Escapes a value for QEMU's `key=value,...` option syntax: a comma is written twice. */
export const optValue = (v: string): string => {
  if (v.includes('\0')) throw badRequest('QEMU option values cannot hold NUL characters.');
  return v.replaceAll(',', ',,');
};

const json = (o: Record<string, unknown>): string => JSON.stringify(o);

/** The OVMF code image for a guest's firmware, and the template of its per-guest variable store. */
export function uefiImages(secureBoot: boolean, ovmfDir = OVMF_DIR): { code: string; varsTemplate: string } {
  return secureBoot
    ? { code: `${ovmfDir}/OVMF_CODE_4M.secboot.fd`, varsTemplate: `${ovmfDir}/OVMF_VARS_4M.ms.fd` }
    : { code: `${ovmfDir}/OVMF_CODE_4M.fd`, varsTemplate: `${ovmfDir}/OVMF_VARS_4M.fd` };
}

/** Nova's `quota:disk_*` I/O limits as a QEMU throttle-group's `limits` (ThrottleLimits in qapi/block-core.json). */
export function throttleLimits(io: GuestSpec['io']): Record<string, number> | null {
  if (!io) return null;
  const map = [
    ['readBytesSec', 'bps-read'],
    ['writeBytesSec', 'bps-write'],
    ['totalBytesSec', 'bps-total'],
    ['readIopsSec', 'iops-read'],
    ['writeIopsSec', 'iops-write'],
    ['totalIopsSec', 'iops-total'],
  ] as const;
  const limits: Record<string, number> = {};
  for (const [field, key] of map) {
    const v = io[field];
    if (v !== undefined && v > 0) limits[key] = v;
  }
  return Object.keys(limits).length ? limits : null;
}

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;
const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;
/** fw_cfg file names: QEMU wants them under opt/ and shorter than 56 bytes (FW_CFG_MAX_FILE_PATH). */
const FW_CFG_NAME = /^opt\/[A-Za-z0-9._/-]{1,51}$/;
const posInt = (v: unknown): boolean => typeof v === 'number' && Number.isSafeInteger(v) && v > 0;

/** Refuses a spec QEMU would reject or that would weaken isolation; BadRequest with the reason. */
export function validateGuestSpec(spec: GuestSpec): void {
  checkGuestId(spec.id);
  if (!posInt(spec.vcpus) || spec.vcpus > 255) throw badRequest('vcpus must be an integer from 1 to 255.');
  if (!posInt(spec.memoryMiB) || spec.memoryMiB < 16)
    throw badRequest('memoryMiB must be an integer of at least 16.');
  if (spec.machine !== 'pc' && spec.machine !== 'q35') throw badRequest('machine must be pc or q35.');
  if (spec.firmware.type === 'uefi' && spec.firmware.secureBoot && spec.machine !== 'q35')
    throw badRequest('Secure Boot needs the q35 machine type (its firmware must run in SMM).');
  const disk = spec.bootDisk;
  if (!disk.imagePath.startsWith('/')) throw badRequest('The boot image path must be absolute.');
  if (disk.imageFormat !== 'raw' && disk.imageFormat !== 'qcow2')
    throw badRequest('The boot image format must be raw or qcow2.');
  if (!Number.isSafeInteger(disk.sizeGiB) || disk.sizeGiB < 0)
    throw badRequest('The boot disk size must be a whole number of GiB (0 = the image size).');
  for (const c of spec.cpu?.pinning ?? [])
    if (!Number.isSafeInteger(c) || c < 0) throw badRequest(`Bad host CPU number ${c} in the pinning.`);
  const floor = memoryLimitBytes(spec.memoryMiB) / 2 ** 20;
  if (spec.memoryMaxMiB !== undefined && (!posInt(spec.memoryMaxMiB) || spec.memoryMaxMiB < floor))
    throw badRequest(`The memory limit must be at least ${floor} MiB (RAM + QEMU's overhead).`);
  featuresFromQemu(spec.cpu?.features ?? []);
  const q = spec.cpu?.quotaPercent;
  if (q !== undefined && (!posInt(q) || q > 100_000))
    throw badRequest('The CPU quota must be a whole percentage from 1 to 100000.');
  for (const [k, v] of Object.entries(spec.io ?? {}))
    if (v !== undefined && (!Number.isSafeInteger(v) || v < 0))
      throw badRequest(`The I/O limit ${k} must be a non-negative integer.`);
  const io = spec.io ?? {};
  if ((io.totalBytesSec ?? 0) > 0 && ((io.readBytesSec ?? 0) > 0 || (io.writeBytesSec ?? 0) > 0))
    throw badRequest(
      'disk_total_bytes_sec cannot be combined with disk_read_bytes_sec or disk_write_bytes_sec.',
    );
  if ((io.totalIopsSec ?? 0) > 0 && ((io.readIopsSec ?? 0) > 0 || (io.writeIopsSec ?? 0) > 0))
    throw badRequest(
      'disk_total_iops_sec cannot be combined with disk_read_iops_sec or disk_write_iops_sec.',
    );
  for (const name of Object.keys(spec.fwCfg ?? {}))
    if (!FW_CFG_NAME.test(name) || name.includes('//') || name.endsWith('/'))
      throw badRequest(`Bad fw_cfg name ${JSON.stringify(name)}: use opt/<org>/<name>, under 56 characters.`);
  if (spec.tpm) {
    if (spec.tpm.model === 'tpm-crb' && spec.tpm.version !== '2.0')
      throw badRequest('tpm-crb is a TPM 2.0 interface; use tpm-tis for TPM 1.2.');
    if (spec.tpm.socketPath !== undefined && !spec.tpm.socketPath.startsWith('/'))
      throw badRequest('The TPM socket path must be absolute.');
  }
  for (const nic of spec.nics ?? []) {
    if (!IFNAME.test(nic.tap)) throw badRequest(`Bad tap device name ${JSON.stringify(nic.tap)}.`);
    if (!MAC.test(nic.mac)) throw badRequest(`Bad MAC address ${JSON.stringify(nic.mac)}.`);
  }
}

/** fw_cfg entries in a stable order, so entry `i` is always the same file. */
export const fwCfgEntries = (spec: GuestSpec): [string, string][] =>
  Object.entries(spec.fwCfg ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));

/**
 * The QEMU command line for a guest. Pure: no I/O.
 *
 * Nothing the spec does not ask for (`-nodefaults`: no display, VGA, audio,
 * USB, floppy, CD, network or serial unless given), the seccomp sandbox fully
 * on, nested virtualisation off, KSM merging and guest RAM in core dumps off,
 * S3/S4 off, and the guest started paused (`-S`) so the driver can put QEMU in
 * its cgroup before a single guest instruction runs. Structured options use
 * QEMU's JSON syntax, so paths need no escaping there; the rest go through
 * optValue().
 */
export function buildQemuArgs(spec: GuestSpec, opts: QemuArgsOptions): string[] {
  validateGuestSpec(spec);
  const { paths } = opts;
  const baseFd = opts.baseImageFd ?? 3;
  const secure = spec.firmware.type === 'uefi' && spec.firmware.secureBoot;
  const machine = [
    spec.machine,
    'usb=off',
    'dump-guest-core=off',
    'mem-merge=off',
    'vmport=off',
    ...(secure ? ['smm=on'] : []),
    ...(spec.firmware.type === 'uefi' ? ['pflash0=fw-code', 'pflash1=fw-vars'] : []),
  ];
  const pm = spec.machine === 'q35' ? 'ICH9-LPC' : 'PIIX4_PM';
  const args: string[] = [
    '-name',
    `guest=bulwark-${spec.id},debug-threads=on`,
    '-uuid',
    spec.id,
    '-nodefaults',
    '-no-user-config',
    '-nographic',
    '-display',
    'none',
    '-vga',
    'none',
    '-sandbox',
    SANDBOX,
    '-machine',
    machine.join(','),
    '-accel',
    opts.accel === 'tcg' ? `tcg,tb-size=${TCG_TB_SIZE_MIB}` : 'kvm',
    // Nested virtualisation off: the guest never sees VMX (Intel) or SVM (AMD).
    '-cpu',
    // Extra features (allow-listed) with `enforce`: QEMU refuses to start if it cannot give one.
    [
      opts.accel === 'kvm' ? 'host,-vmx,-svm' : 'qemu64,-vmx,-svm',
      ...(spec.cpu?.features?.length ? [...spec.cpu.features, 'enforce'] : []),
    ].join(','),
    '-m',
    `${spec.memoryMiB}M`,
    '-smp',
    `${spec.vcpus},sockets=1,cores=${spec.vcpus},threads=1`,
    '-global',
    `${pm}.disable_s3=1`,
    '-global',
    `${pm}.disable_s4=1`,
    '-rtc',
    'base=utc',
    '-boot',
    'strict=on',
    '-S',
    '-no-shutdown',
    '-msg',
    'timestamp=on',
    '-pidfile',
    paths.pidFile,
    '-chardev',
    `socket,id=qmp,path=${optValue(paths.qmpSocket)},server=on,wait=off`,
    '-mon',
    'chardev=qmp,mode=control',
    // The serial console: logged for `console log show`, and a socket for an interactive console.
    '-chardev',
    `socket,id=serial0,path=${optValue(paths.consoleSocket)},server=on,wait=off,logfile=${optValue(paths.consoleLog)},logappend=on`,
    '-serial',
    'chardev:serial0',
  ];
  if (spec.firmware.type === 'uefi') {
    const fw = uefiImages(spec.firmware.secureBoot, opts.ovmfDir);
    if (secure) args.push('-global', 'driver=cfi.pflash01,property=secure,value=on');
    args.push(
      '-blockdev',
      json({ driver: 'file', 'node-name': 'fw-code-file', filename: fw.code, 'read-only': true }),
      '-blockdev',
      json({ driver: 'raw', 'node-name': 'fw-code', file: 'fw-code-file', 'read-only': true }),
      '-blockdev',
      json({ driver: 'file', 'node-name': 'fw-vars-file', filename: paths.vars }),
      '-blockdev',
      json({ driver: 'raw', 'node-name': 'fw-vars', file: 'fw-vars-file' }),
    );
  }
  // The boot disk: a per-guest qcow2 overlay whose backing is the base image,
  // which QEMU only ever reaches through a read-only fd the daemon opened. The
  // base's own backing is null, so a crafted image cannot name another file.
  args.push(
    '-add-fd',
    `fd=${baseFd},set=1,opaque=base-image`,
    '-blockdev',
    json({ driver: 'file', 'node-name': 'base-file', filename: '/dev/fdset/1', 'read-only': true }),
    '-blockdev',
    json({
      driver: spec.bootDisk.imageFormat,
      'node-name': 'base',
      file: 'base-file',
      'read-only': true,
      ...(spec.bootDisk.imageFormat === 'qcow2' ? { backing: null } : {}),
    }),
  );
  // An encrypted overlay (and its throttle and device) is added over QMP before `cont` (luks.ts).
  if (!spec.bootDisk.encrypted) args.push(...plainOverlayArgs(spec, paths.overlay));
  // q35's root bus takes no hot-plugged devices: PCIe root ports for the disk and for volumes.
  if (spec.machine === 'q35') args.push(...hotplugPorts(spec));
  for (const [i, nic] of (spec.nics ?? []).entries()) {
    args.push(
      '-netdev',
      `tap,id=net${i},ifname=${optValue(nic.tap)},script=no,downscript=no,vhost=off`,
      '-device',
      json({ driver: 'virtio-net-pci', id: `nic${i}`, netdev: `net${i}`, mac: nic.mac.toLowerCase() }),
    );
  }
  if (spec.tpm) {
    // swtpm's control socket; the driver fills the path in (swtpm.ts) before QEMU is built.
    if (!spec.tpm.socketPath) throw badRequest('The vTPM has no swtpm socket.');
    args.push(
      '-chardev',
      `socket,id=tpm0-chr,path=${optValue(spec.tpm.socketPath)}`,
      '-tpmdev',
      'emulator,id=tpm0,chardev=tpm0-chr',
      '-device',
      json({ driver: spec.tpm.model, tpmdev: 'tpm0' }),
    );
  }
  if (spec.cloudInit)
    // The NoCloud seed: a read-only CD-ROM on its own virtio-scsi controller, never a boot device (no
    // bootindex; -boot strict=on). Not virtio-blk: it would take /dev/vdb and move every volume.
    args.push(
      '-blockdev',
      json({ driver: 'file', 'node-name': 'seed-file', filename: paths.seed, 'read-only': true }),
      '-blockdev',
      json({ driver: 'raw', 'node-name': 'seed', file: 'seed-file', 'read-only': true }),
      '-device',
      json({ driver: 'virtio-scsi-pci', id: 'seedscsi' }),
      '-device',
      json({ driver: 'scsi-cd', id: 'seed0', bus: 'seedscsi.0', drive: 'seed' }),
    );
  if (spec.guestAgent) args.push(...guestAgentArgs({ dir: paths.dir }));
  if (spec.hostDevices) args.push(...passthroughArgs(spec.hostDevices));
  for (const [i, [name, value]] of fwCfgEntries(spec).entries()) {
    const payload =
      opts.fwCfg === 'inline' ? `string=${optValue(value)}` : `file=${optValue(paths.fwCfgFile(i))}`;
    args.push('-fw_cfg', `name=${optValue(name)},${payload}`);
  }
  if (opts.incomingDefer) args.push('-incoming', 'defer');
  else if (opts.incomingFd !== undefined)
    // With an encrypted disk the stream can only load once the disk is plugged: the driver starts it then.
    args.push('-incoming', spec.bootDisk.encrypted ? 'defer' : `fd:${opts.incomingFd}`);
  return args;
}

/** The boot disk's overlay, throttle and device on the command line (an unencrypted overlay). */
function plainOverlayArgs(spec: GuestSpec, overlay: string): string[] {
  const args = [
    '-blockdev',
    json({ driver: 'file', 'node-name': 'disk0-file', filename: overlay, discard: 'unmap' }),
    '-blockdev',
    json({
      driver: 'qcow2',
      'node-name': 'disk0-fmt',
      file: 'disk0-file',
      backing: 'base',
      discard: 'unmap',
    }),
  ];
  let root = 'disk0-fmt';
  const limits = throttleLimits(spec.io);
  if (limits) {
    args.push(
      '-object',
      json({ 'qom-type': 'throttle-group', id: 'disk0-limits', limits }),
      '-blockdev',
      json({ driver: 'throttle', 'node-name': 'disk0', 'throttle-group': 'disk0-limits', file: 'disk0-fmt' }),
    );
    root = 'disk0';
  }
  args.push('-device', json({ driver: 'virtio-blk-pci', id: 'vda', drive: root, bootindex: 1 }));
  return args;
}

/** Root ports for devices plugged over QMP on q35: the encrypted boot disk's, and VOLUME_PORTS for volumes. */
export const VOLUME_PORTS = 4;
export const DISK_PORT = 'bw-rp-disk';
export const volumePort = (i: number): string => `bw-rp-v${i}`;

function hotplugPorts(spec: GuestSpec): string[] {
  const ids = [
    ...(spec.bootDisk.encrypted ? [DISK_PORT] : []),
    ...Array.from({ length: VOLUME_PORTS }, (_, i) => volumePort(i)),
  ];
  return ids.flatMap((id, i) => [
    '-device',
    json({ driver: 'pcie-root-port', id, bus: 'pcie.0', chassis: i + 1 }),
  ]);
}
