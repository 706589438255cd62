import { spawn } from 'node:child_process';
import {
  closeSync,
  constants,
  existsSync,
  mkdtempSync,
  openSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { badRequest } from '../errors.js';
import type { Accel } from './qemu-args.js';
import { SANDBOX } from './qemu-args.js';
import { lookupVmUser } from './users.js';

/**
 * Whether KVM really runs guests here. /dev/kvm can exist and answer while
 * guests die with "KVM internal error ... emulation failure" (nested
 * virtualisation under another hypervisor, as on this project's CI machines),
 * so the device node alone proves nothing: the probe boots a guest.
 *
 * The probe guest is this boot sector. SeaBIOS loads it from a virtio disk;
 * it goes from real mode to protected mode, enters virtual-8086 mode with an
 * IRET (as boot loaders such as SYSLINUX do to call the BIOS: the step that
 * fails on those machines), comes back to ring 0 through a #GP, turns on long
 * mode with identity-mapped 2 MiB pages, and writes 0x31 to isa-debug-exit at
 * port 0xf4, so QEMU exits with status (0x31 << 1) | 1 = 99.
 *
 *     cli; ds=ss=0; sp=0x7c00; lgdt; cr0.PE=1; ljmp 0x08:pm32
 *   pm32: ds=es=ss=0x10; esp=0x7000; tss.esp0=0x7000; tss.ss0=0x10; ltr 0x18; lidt
 *         push gs,fs,ds,es=0, ss=0, esp=0x6000, eflags=VM|2, cs=0, eip=v86; iret
 *   v86:  hlt                      ; privileged in v86 mode -> #GP -> gp (IDT[13])
 *   gp:   page tables at 0x1000-0x3fff; cr3; cr4.PAE; EFER.LME; cr0.PG; ljmp 0x20:lm64
 *   lm64: mov al,0x31; out 0xf4,al; hlt
 *   GDT: null, code32, data32, TSS (0x18), code64 (0x20); IDT: 14 gates; TSS: 104 bytes
 *
 * (Assembled with GNU as --32, linked -Ttext 0 --oformat binary; sha256 of the
 * 512 bytes 5fee4f57f0492d5108f08ae37f45ebfb2be77ffdae0ba0a8b10773f116953ff7.)
 */
export const PROBE_BOOT_SECTOR = Buffer.from(
  '+jHAjtiO0LwAfA8BFgh9DyDADAEPIsBm6h98AAAIAGa4EACO2I7AjtC8AHAAAMcFiH0AAABwAADHBYx9AAAQAAAAZrgYAA8A2A8BHX59AABqAGoAagBqAGoAaABgAABoAgACAGoAaGx8AADP9Ga4EACO2I7AvwAQAAAxwLkADAAA86vHBQAQAAADIAAAxwUAIAAAAzAAAMcFADAAAIMAAAC4ABAAAA8i2A8g4IPIIA8i4LmAAADADzINAAEAAA8wDyDADQAAAIAPIsDq0nwAACAAsDHm9PTr/Y20JgAAAAAAAAAAAAAAAP//AAAAms8A//8AAACSzwBnAIR9AIkAAP//AAAAmq8AJwDgfAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABtfAgAAI4AAG8ADn0AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAVao=',
  'base64',
);

/** SeaBIOS will not boot a disk smaller than one cylinder (16 heads x 63 sectors). */
const PROBE_DISK_BYTES = 1024 * 1024;
const PROBE_EXIT_OK = 99;

export interface ProbeResult {
  ok: boolean;
  detail: string;
}

export interface ProbeOptions {
  qemuBinary?: string;
  /** Who runs the probe QEMU; default `nobody`, since guests run unprivileged too. */
  uid?: number;
  gid?: number;
  timeoutMs?: number;
  /** Also boot this Linux kernel (no initrd: it must reach its root-mount panic). */
  kernel?: string;
}

function runQemu(
  args: string[],
  opts: ProbeOptions,
  extraFd: number | undefined,
): Promise<{ code: number | null; output: string; timedOut: boolean }> {
  return new Promise((resolve) => {
    const child = spawn(opts.qemuBinary ?? 'qemu-system-x86_64', args, {
      stdio: ['ignore', 'pipe', 'pipe', ...(extraFd === undefined ? [] : [extraFd])],
      env: { PATH: '/usr/bin:/bin' },
      ...(opts.uid === undefined ? {} : { uid: opts.uid }),
      ...(opts.gid === undefined ? {} : { gid: opts.gid }),
    });
    let output = '';
    let timedOut = false;
    const onData = (d: Buffer) => {
      output = (output + d.toString()).slice(-16_384);
      // QEMU pauses the VM on an emulation failure and would sit there until the timeout.
      if (/KVM internal error|emulation failure/.test(output)) child.kill('SIGKILL');
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs ?? 15_000);
    child.on('error', (err) => {
      output += String(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output, timedOut });
    });
  });
}

/** The line that says why, else the last few. */
const lastLines = (s: string, n = 3) =>
  /^.*(KVM internal error|emulation failure|Could not access KVM|failed to initialize kvm).*$/im
    .exec(s)?.[0]
    .trim() ?? s.trim().split('\n').slice(-n).join(' | ');

/** Boots the probe guest with `accel` (and the kernel, if given). */
export async function runAccelProbe(accel: Accel, opts: ProbeOptions = {}): Promise<ProbeResult> {
  const cpu = accel === 'kvm' ? 'host,-vmx,-svm' : 'qemu64,-vmx,-svm';
  const common = [
    '-nodefaults',
    '-no-user-config',
    '-display',
    'none',
    '-sandbox',
    SANDBOX,
    '-machine',
    'pc',
    '-accel',
    accel,
    '-cpu',
    cpu,
    '-m',
    '64',
  ];
  const dir = mkdtempSync(join(tmpdir(), 'bulwark-probe-'));
  let fd: number | undefined;
  try {
    const img = join(dir, 'probe.img');
    const disk = Buffer.alloc(PROBE_DISK_BYTES);
    PROBE_BOOT_SECTOR.copy(disk);
    writeFileSync(img, disk, { mode: 0o600 });
    fd = openSync(img, constants.O_RDONLY);
    const r = await runQemu(
      [
        ...common,
        '-add-fd',
        'fd=3,set=1',
        '-blockdev',
        JSON.stringify({ driver: 'file', 'node-name': 'f', filename: '/dev/fdset/1', 'read-only': true }),
        '-blockdev',
        JSON.stringify({ driver: 'raw', 'node-name': 'd', file: 'f', 'read-only': true }),
        '-device',
        'virtio-blk-pci,drive=d',
        '-device',
        'isa-debug-exit,iobase=0xf4,iosize=4',
      ],
      opts,
      fd,
    );
    if (r.code !== PROBE_EXIT_OK)
      return {
        ok: false,
        detail: r.timedOut
          ? `the probe guest did not finish (${lastLines(r.output) || 'no output'})`
          : `the probe guest failed: ${lastLines(r.output) || `exit ${r.code}`}`,
      };
  } finally {
    if (fd !== undefined) closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  }
  if (opts.kernel) {
    const r = await runQemu(
      [
        ...common,
        '-no-reboot',
        '-serial',
        'stdio',
        '-kernel',
        opts.kernel,
        '-append',
        'console=ttyS0 panic=-1 root=/dev/nonexistent',
      ],
      opts,
      undefined,
    );
    if (r.code !== 0 || !r.output.includes('Linux version'))
      return {
        ok: false,
        detail: `the probe kernel did not boot: ${lastLines(r.output) || `exit ${r.code}`}`,
      };
  }
  return { ok: true, detail: `a probe guest ran under ${accel}` };
}

export interface AccelChoice {
  accel: Accel;
  reason: string;
}

let cached: Promise<AccelChoice> | undefined;

/**
 * Chooses the accelerator once per process: BULWARK_ACCEL=kvm|tcg forces it;
 * otherwise KVM only if /dev/kvm is usable by unprivileged users (guests run
 * as their own users and libuv drops supplementary groups, so Debian's default
 * 0666 is needed) and a probe guest runs under it as `nobody`. Else TCG.
 * BULWARK_PROBE_KERNEL (or `kernel`) adds a Linux boot to the probe.
 */
export function chooseAccel(opts: ProbeOptions = {}): Promise<AccelChoice> {
  cached ??= (async (): Promise<AccelChoice> => {
    const forced = process.env.BULWARK_ACCEL;
    if (forced) {
      if (forced !== 'kvm' && forced !== 'tcg')
        throw badRequest(`BULWARK_ACCEL must be kvm or tcg, not ${forced}.`);
      return { accel: forced, reason: 'BULWARK_ACCEL' };
    }
    if (!existsSync('/dev/kvm')) return { accel: 'tcg', reason: 'no /dev/kvm' };
    if ((statSync('/dev/kvm').mode & 0o006) !== 0o006)
      return { accel: 'tcg', reason: '/dev/kvm is not usable by unprivileged users (want mode 0666)' };
    const nobody = await lookupVmUser('nobody').catch(() => null);
    const kernel = opts.kernel ?? process.env.BULWARK_PROBE_KERNEL;
    const r = await runAccelProbe('kvm', {
      ...opts,
      uid: opts.uid ?? nobody?.uid ?? 65534,
      gid: opts.gid ?? nobody?.gid ?? 65534,
      ...(kernel ? { kernel } : {}),
    });
    return r.ok
      ? { accel: 'kvm', reason: r.detail }
      : { accel: 'tcg', reason: `KVM does not work: ${r.detail}` };
  })();
  return cached;
}

/** The accelerator guests on this host use (see chooseAccel). */
export async function probeAccel(opts: ProbeOptions = {}): Promise<Accel> {
  return (await chooseAccel(opts)).accel;
}

/** Forgets the cached choice (tests). */
export function resetAccelCache(): void {
  cached = undefined;
}
