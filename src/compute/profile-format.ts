import { type Static, Type } from 'typebox';
import { Value } from 'typebox/value';
import { badRequest } from '../errors.js';
import { cpuFeatureRefusal, cpuFeaturesSpec } from './cpu-features.js';
import { memoryFloorMiB } from './properties.js';

/**
 * Hyper-NixOS style per-VM JSON profiles (docs/profiles.md): the format, its
 * checks and how it maps onto a flavor's shape and extra specs. Pure.
 */

const NAME = '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$';
const closed = { additionalProperties: false } as const;

export const ProfileSchema = Type.Object(
  {
    name: Type.String({ pattern: NAME }),
    cpus: Type.Integer({ minimum: 1, maximum: 64 }),
    /** MiB of guest RAM. */
    memory: Type.Integer({ minimum: 64, maximum: 262_144 }),
    disks: Type.Array(
      Type.Object(
        {
          name: Type.String({ minLength: 1, maxLength: 63 }),
          size_gb: Type.Integer({ minimum: 1, maximum: 16_384 }),
          image: Type.String({ minLength: 1, maxLength: 255, pattern: '^[^\\x00-\\x1f]*$' }),
        },
        closed,
      ),
      { minItems: 1, maxItems: 1 },
    ),
    network: Type.Optional(
      Type.Object(
        {
          zone: Type.String({ pattern: '^[a-z][a-z0-9-]{0,31}$' }),
          name: Type.Optional(Type.String({ minLength: 1, maxLength: 255, pattern: '^[^\\x00-\\x1f]*$' })),
        },
        closed,
      ),
    ),
    limits: Type.Optional(
      Type.Object(
        {
          cpu_quota_percent: Type.Optional(Type.Integer({ minimum: 1, maximum: 6400 })),
          memory_max_mb: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_048_576 })),
          io_bandwidth_mb: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000 })),
        },
        closed,
      ),
    ),
    firmware: Type.Optional(
      Type.Object(
        {
          type: Type.Optional(Type.Union([Type.Literal('bios'), Type.Literal('uefi')])),
          secure_boot: Type.Boolean(),
        },
        closed,
      ),
    ),
    tpm: Type.Optional(
      Type.Object(
        {
          version: Type.Union([Type.Literal('1.2'), Type.Literal('2.0')]),
          model: Type.Union([Type.Literal('tpm-tis'), Type.Literal('tpm-crb')]),
        },
        closed,
      ),
    ),
    cpu_features: Type.Optional(
      Type.Record(Type.String({ pattern: '^[a-z0-9_]{1,32}$' }), Type.Boolean(), { maxProperties: 32 }),
    ),
    /** User metadata for the server (guide section 14); platform keys are refused. */
    metadata: Type.Optional(
      Type.Record(Type.String({ minLength: 1, maxLength: 255 }), Type.String({ maxLength: 255 }), {
        maxProperties: 128,
      }),
    ),
  },
  closed,
);

export type Profile = Static<typeof ProfileSchema>;

/** Fields of Hyper-NixOS profiles that are refused by name, with why (JSON pointer -> reason). */
const UNSAFE_FIELDS: Record<string, string> = {
  '/firmware/enrolled_keys':
    'host paths are not accepted; Secure Boot uses the keys enrolled in the host firmware store',
  '/network/bridge':
    'host bridges are not accepted; the zone decides which network and bridge the server gets',
  '/memory_options': 'guest_memfd/private memory need SEV or TDX, which this platform does not offer',
  '/metadata/created_by': 'it is set by the platform from the caller',
  '/metadata/created_at': 'it is set by the platform',
  '/metadata/approved_by': 'it is set by the platform from the approval',
};

const refuse = (field: string, why: string) => badRequest(`Profile field ${field} is refused: ${why}.`);

function checkUnsafe(data: unknown, path = ''): void {
  if (!data || typeof data !== 'object' || Array.isArray(data)) {
    if (Array.isArray(data)) data.forEach((d, i) => void checkDisk(d, `${path}/${i}`));
    return;
  }
  for (const [k, v] of Object.entries(data)) {
    const p = `${path}/${k}`;
    const why = UNSAFE_FIELDS[p];
    if (why) throw refuse(p, why);
    if (path === '' && ['/firmware', '/network', '/disks', '/metadata'].includes(p)) checkUnsafe(v, p);
  }
}

function checkDisk(d: unknown, path: string): void {
  if (!d || typeof d !== 'object') return;
  const disk = d as Record<string, unknown>;
  if ('path' in disk)
    throw refuse(`${path}/path`, 'host paths are not accepted; name an image the project can boot from');
  if (typeof disk.name === 'string' && (disk.name.includes('/') || disk.name.includes('..')))
    throw refuse(
      `${path}/name`,
      `'${disk.name}' is a path; a disk name is letters, digits, '.', '_' and '-'`,
    );
}

/** The first schema error, as "field: what is wrong" (unknown fields named). */
function schemaError(data: unknown): string | null {
  if (Value.Check(ProfileSchema, data)) return null;
  const e = [...Value.Errors(ProfileSchema, data)][0];
  if (!e) return 'the profile does not match the format';
  const at = e.instancePath || '/';
  // additionalProperties: false fails first as a false schema at the unknown field's own path.
  if (e.schemaPath.endsWith('/additionalProperties'))
    return `unknown field ${at} (see docs/profiles.md for the format)`;
  return `${at} ${e.message}`;
}

/**
 * Checks a profile as sent: unsafe fields by name, then the schema (unknown
 * fields refused), then what the schema cannot say. BadRequest naming the
 * field and why; nothing is looked up or changed.
 */
export function parseProfile(data: unknown): Profile {
  if (!data || typeof data !== 'object' || Array.isArray(data))
    throw badRequest('A profile must be a JSON object (see docs/profiles.md).');
  checkUnsafe(data);
  const err = schemaError(data);
  if (err) throw badRequest(`Invalid profile: ${err}.`);
  const p = data as Profile;
  const disk = p.disks[0] as Profile['disks'][number];
  if (disk.name !== 'root')
    throw refuse(
      '/disks/0/name',
      `the boot disk is called root (got '${disk.name}'); add other disks as volumes`,
    );
  const q = p.limits?.cpu_quota_percent;
  if (q !== undefined && q > 100 * p.cpus)
    throw refuse(
      '/limits/cpu_quota_percent',
      `${q}% is more than ${p.cpus} vCPU(s) can use (at most ${100 * p.cpus})`,
    );
  const mm = p.limits?.memory_max_mb;
  if (mm !== undefined && mm < memoryFloorMiB(p.memory))
    throw refuse(
      '/limits/memory_max_mb',
      `${mm} MiB is below what ${p.memory} MiB of guest RAM needs: at least ${memoryFloorMiB(p.memory)} (RAM + 256 MiB QEMU overhead + RAM/64)`,
    );
  if (mm !== undefined && mm > 2 * memoryFloorMiB(p.memory))
    throw refuse(
      '/limits/memory_max_mb',
      `${mm} MiB is more than twice what the guest needs (${2 * memoryFloorMiB(p.memory)} at most); raise memory instead`,
    );
  if (p.firmware?.secure_boot && p.firmware.type === 'bios')
    throw refuse('/firmware/secure_boot', 'Secure Boot needs UEFI firmware; set firmware.type to uefi');
  if (p.tpm?.model === 'tpm-crb' && p.tpm.version !== '2.0')
    throw refuse('/tpm/model', 'tpm-crb is a TPM 2.0 interface; use tpm-tis for TPM 1.2');
  for (const [name, on] of Object.entries(p.cpu_features ?? {})) {
    const why = cpuFeatureRefusal(name, on);
    if (why) throw refuse(`/cpu_features/${name}`, why);
  }
  return p;
}

/** The flavor a profile needs: its size and the extra specs that carry its limits, firmware, TPM and CPU. */
export interface ProfileFlavor {
  vcpus: number;
  ram: number;
  disk: number;
  extraSpecs: Record<string, string>;
}

export const MiB = 1024 * 1024;

export function profileFlavor(p: Profile): ProfileFlavor {
  const specs: Record<string, string> = {};
  const l = p.limits ?? {};
  if (l.cpu_quota_percent !== undefined) specs['quota:cpu_quota_percent'] = String(l.cpu_quota_percent);
  if (l.memory_max_mb !== undefined) specs['quota:memory_max_mb'] = String(l.memory_max_mb);
  if (l.io_bandwidth_mb !== undefined) specs['quota:disk_total_bytes_sec'] = String(l.io_bandwidth_mb * MiB);
  const uefi = p.firmware?.type === 'uefi' || p.firmware?.secure_boot === true;
  if (uefi) specs['hw:firmware_type'] = 'uefi';
  if (p.firmware?.secure_boot) {
    specs['os:secure_boot'] = 'required';
    specs['hw:machine_type'] = 'q35';
  }
  if (p.tpm) {
    specs['hw:tpm_version'] = p.tpm.version;
    specs['hw:tpm_model'] = p.tpm.model;
  }
  if (p.cpu_features && Object.keys(p.cpu_features).length)
    specs['hw:cpu_features'] = cpuFeaturesSpec(p.cpu_features);
  return {
    vcpus: p.cpus,
    ram: p.memory,
    disk: (p.disks[0] as Profile['disks'][number]).size_gb,
    extraSpecs: specs,
  };
}

/** The `openstack flavor create` command that makes the flavor a profile needs (for the refusal message). */
export function flavorCreateCommand(name: string, f: ProfileFlavor): string {
  const props = Object.entries(f.extraSpecs)
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([k, v]) => ` --property ${k}=${v}`)
    .join('');
  return `openstack flavor create --vcpus ${f.vcpus} --ram ${f.ram} --disk ${f.disk}${props} ${name}`;
}

/** Same keys and values. */
export const sameSpecs = (a: Record<string, string>, b: Record<string, string>): boolean =>
  Object.keys(a).length === Object.keys(b).length && Object.entries(a).every(([k, v]) => b[k] === v);
