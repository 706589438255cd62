import { badRequest } from '../errors.js';
import { memoryLimitBytes } from '../host/cgroups.js';
import { parseCpuFeatures, qemuCpuFeatures } from './cpu-features.js';
import { guestAgentDecision } from './guest-agent.js';

/**
 * Image properties and flavor extra specs that change how a guest runs, with
 * the values each accepts. Unknown values are refused with the list of good
 * ones; unknown flavor extra-spec keys are refused (as Nova does since 2.86),
 * while images keep Glance's free-form properties.
 */
const ENUMS: Record<string, readonly string[]> = {
  hw_firmware_type: ['bios', 'uefi'],
  hw_machine_type: ['pc', 'q35'],
  os_secure_boot: ['required', 'optional', 'disabled'],
  hw_tpm_model: ['tpm-tis', 'tpm-crb'],
  hw_tpm_version: ['1.2', '2.0'],
  'hw:firmware_type': ['bios', 'uefi'],
  'hw:machine_type': ['pc', 'q35'],
  'os:secure_boot': ['required', 'optional', 'disabled'],
  'hw:tpm_model': ['tpm-tis', 'tpm-crb'],
  'hw:tpm_version': ['1.2', '2.0'],
  'hw:cpu_policy': ['shared', 'dedicated'],
  // The guest agent (compute/guest-agent.ts): off unless one of these asks.
  hw_qemu_guest_agent: ['yes', 'no', 'true', 'false'],
  'hw:qemu_guest_agent': ['yes', 'no', 'true', 'false'],
};

const NON_NEGATIVE_INTS = [
  'quota:disk_read_bytes_sec',
  'quota:disk_write_bytes_sec',
  'quota:disk_total_bytes_sec',
  'quota:disk_read_iops_sec',
  'quota:disk_write_iops_sec',
  'quota:disk_total_iops_sec',
  'quota:cpu_quota_percent',
  // Bulwark's: the guest cgroup's memory.max in MiB (docs/profiles.md); at least RAM + QEMU's overhead.
  'quota:memory_max_mb',
] as const;

export const FLAVOR_EXTRA_SPEC_KEYS: readonly string[] = [
  ...Object.keys(ENUMS).filter((k) => k.includes(':')),
  ...NON_NEGATIVE_INTS,
  'hw:cpu_cores_pinned',
  // Bulwark's: allow-listed CPU features on top of the base model, `+aes,-avx` (compute/cpu-features.ts).
  'hw:cpu_features',
];

function checkEnum(key: string, value: string): void {
  const allowed = Object.hasOwn(ENUMS, key) ? ENUMS[key] : undefined;
  if (allowed && !allowed.includes(value)) {
    throw badRequest(`Invalid value '${value}' for ${key}; use one of: ${allowed.join(', ')}.`);
  }
}

/** Validates image properties being set (values of known keys only). */
export function validateImageProperties(props: Record<string, unknown>): void {
  for (const [key, value] of Object.entries(props)) {
    if (Object.hasOwn(ENUMS, key)) {
      if (typeof value !== 'string') throw badRequest(`Image property ${key} must be a string.`);
      checkEnum(key, value);
    }
  }
}

/** Validates flavor extra specs being set: known keys, good values. */
export function validateExtraSpecs(specs: Record<string, unknown>): void {
  for (const [key, value] of Object.entries(specs)) {
    if (!FLAVOR_EXTRA_SPEC_KEYS.includes(key)) {
      throw badRequest(`Unknown flavor extra spec ${key}; supported: ${FLAVOR_EXTRA_SPEC_KEYS.join(', ')}.`);
    }
    if (typeof value !== 'string') throw badRequest(`Extra spec ${key} must be a string.`);
    checkEnum(key, value);
    if ((NON_NEGATIVE_INTS as readonly string[]).includes(key) && !/^\d{1,15}$/.test(value)) {
      throw badRequest(`Extra spec ${key} must be a non-negative integer, got '${value}'.`);
    }
    if (key === 'quota:cpu_quota_percent' && (Number(value) < 1 || Number(value) > 100_000)) {
      throw badRequest('quota:cpu_quota_percent must be between 1 and 100000.');
    }
    if (key === 'hw:cpu_features') parseCpuFeatures(value);
    if (key === 'hw:cpu_cores_pinned' && !/^\d{1,4}(,\d{1,4})*$/.test(value)) {
      throw badRequest(`hw:cpu_cores_pinned must list host CPU numbers, e.g. 0,1; got '${value}'.`);
    }
  }
}

/** How a server's guest runs, resolved from its flavor and image. */
export interface GuestPlan {
  machine: 'pc' | 'q35';
  firmware: { type: 'bios' } | { type: 'uefi'; secureBoot: boolean };
  tpm: { version: '1.2' | '2.0'; model: 'tpm-tis' | 'tpm-crb' } | null;
  /** `features`: QEMU `-cpu` options, e.g. `+aes` (compute/cpu-features.ts). */
  cpu: { pinning?: number[]; quotaPercent?: number; features?: string[] };
  /** The guest cgroup's memory.max in MiB (`quota:memory_max_mb`); absent: RAM + QEMU's overhead. */
  memoryMaxMiB?: number;
  io: {
    readBytesSec?: number;
    writeBytesSec?: number;
    totalBytesSec?: number;
    readIopsSec?: number;
    writeIopsSec?: number;
    totalIopsSec?: number;
  };
  /** A guest agent channel (docs/passthrough-and-agent.md); absent in plans stored before it existed: off. */
  guestAgent?: boolean;
}

/** What the host can do, asked once at start-up. */
export interface HostCapabilities {
  secureBoot: boolean;
  uefi: boolean;
  tpm: boolean;
  cpus: number;
  /** The host CPU's /proc/cpuinfo flags; absent: none, so no extra CPU feature can be turned on. */
  cpuFlags?: readonly string[];
}

/** The smallest memory.max (MiB) a guest with `ramMiB` of RAM can run in (host/cgroups.ts). */
export const memoryFloorMiB = (ramMiB: number): number => memoryLimitBytes(ramMiB) / 2 ** 20;

/**
 * Merges image properties and flavor extra specs the way Nova does, but
 * refusing what Nova lets slide: Secure Boot required on BIOS firmware, or
 * flavor and image disagreeing, is a 400, never a silent BIOS boot.
 */
export function resolveGuestPlan(
  image: Record<string, unknown>,
  specs: Record<string, string>,
  host: HostCapabilities,
  /** The flavor's RAM, for `quota:memory_max_mb`'s floor. */
  ramMiB?: number,
): GuestPlan {
  const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
  const both = (imgKey: string, specKey: string): string | undefined => {
    const a = str(image[imgKey]);
    const b = specs[specKey];
    if (a !== undefined && b !== undefined && a !== b) {
      throw badRequest(`Flavor ${specKey}=${b} conflicts with image ${imgKey}=${a}; make them agree.`);
    }
    return a ?? b;
  };
  const secureBoot = both('os_secure_boot', 'os:secure_boot') ?? 'disabled';
  const firmwareType =
    both('hw_firmware_type', 'hw:firmware_type') ?? (secureBoot === 'required' ? undefined : 'bios');
  if (secureBoot === 'required' && firmwareType !== 'uefi') {
    throw badRequest(
      'Secure Boot is required but the firmware is not UEFI: set hw_firmware_type=uefi on the image.',
    );
  }
  const machine = (both('hw_machine_type', 'hw:machine_type') ?? (firmwareType === 'uefi' ? 'q35' : 'pc')) as
    | 'pc'
    | 'q35';
  if (firmwareType === 'uefi' && !host.uefi)
    throw badRequest('UEFI firmware is not available on this host (install ovmf).');
  // required on a host without Secure Boot firmware is not refused here: the server goes to ERROR
  // with a fault saying so (servers.ts, and the driver checks the firmware files again), never a
  // silent boot without Secure Boot.
  if (secureBoot === 'required' && machine !== 'q35') {
    throw badRequest('Secure Boot needs the q35 machine type (SMM); set hw_machine_type=q35.');
  }
  // optional: Secure Boot when the host and machine allow it, plain OVMF otherwise; disabled: plain OVMF.
  const useSecureBoot =
    secureBoot === 'required' || (secureBoot === 'optional' && host.secureBoot && machine === 'q35');

  const tpmVersion = both('hw_tpm_version', 'hw:tpm_version') as '1.2' | '2.0' | undefined;
  const tpmModel = both('hw_tpm_model', 'hw:tpm_model') as 'tpm-tis' | 'tpm-crb' | undefined;
  if (tpmModel && !tpmVersion) throw badRequest('hw:tpm_model needs hw:tpm_version (1.2 or 2.0).');
  if (tpmModel === 'tpm-crb' && tpmVersion === '1.2') throw badRequest('tpm-crb needs hw:tpm_version=2.0.');
  if (tpmVersion && !host.tpm) throw badRequest('vTPM is not available on this host (install swtpm).');

  const num = (k: string) => (specs[k] === undefined ? undefined : Number(specs[k]));
  const cpu: GuestPlan['cpu'] = {};
  if (specs['hw:cpu_policy'] === 'dedicated') {
    const pins = specs['hw:cpu_cores_pinned']?.split(',').map(Number);
    if (!pins) throw badRequest('hw:cpu_policy=dedicated needs hw:cpu_cores_pinned listing the host CPUs.');
    const bad = pins.find((c) => c >= host.cpus);
    if (bad !== undefined) throw badRequest(`Host CPU ${bad} does not exist (this host has ${host.cpus}).`);
    cpu.pinning = pins;
  }
  const quota = num('quota:cpu_quota_percent');
  if (quota !== undefined) cpu.quotaPercent = quota;
  if (specs['hw:cpu_features'])
    cpu.features = qemuCpuFeatures(parseCpuFeatures(specs['hw:cpu_features']), host.cpuFlags ?? []);
  const memoryMax = num('quota:memory_max_mb');
  if (memoryMax !== undefined && ramMiB !== undefined && memoryMax < memoryFloorMiB(ramMiB))
    throw badRequest(
      `quota:memory_max_mb=${memoryMax} is below what a guest with ${ramMiB} MiB of RAM needs: at least ${memoryFloorMiB(ramMiB)} (RAM + QEMU's overhead).`,
    );
  const io: GuestPlan['io'] = {};
  const ioMap = [
    ['quota:disk_read_bytes_sec', 'readBytesSec'],
    ['quota:disk_write_bytes_sec', 'writeBytesSec'],
    ['quota:disk_total_bytes_sec', 'totalBytesSec'],
    ['quota:disk_read_iops_sec', 'readIopsSec'],
    ['quota:disk_write_iops_sec', 'writeIopsSec'],
    ['quota:disk_total_iops_sec', 'totalIopsSec'],
  ] as const;
  for (const [k, field] of ioMap) {
    const v = num(k);
    if (v !== undefined && v > 0) io[field] = v;
  }
  return {
    machine,
    firmware: firmwareType === 'uefi' ? { type: 'uefi', secureBoot: useSecureBoot } : { type: 'bios' },
    tpm: tpmVersion ? { version: tpmVersion, model: tpmModel ?? 'tpm-tis' } : null,
    cpu,
    ...(memoryMax !== undefined ? { memoryMaxMiB: memoryMax } : {}),
    io,
    guestAgent: guestAgentDecision(specs, image).enabled,
  };
}
