import { badRequest } from '../errors.js';

/**
 * CPU features a guest may ask for beyond its base model (flavor extra spec
 * `hw:cpu_features`, profiles' `cpu_features`; docs/profiles.md). Only an
 * allow-list: instruction-set extensions that add nothing to what a guest can
 * reach. Names are /proc/cpuinfo's; QEMU's differ for a few.
 */
const EXTENSIONS: Record<string, string> = {
  aes: 'aes',
  pclmulqdq: 'pclmulqdq',
  ssse3: 'ssse3',
  sse4_1: 'sse4.1',
  sse4_2: 'sse4.2',
  popcnt: 'popcnt',
  avx: 'avx',
  avx2: 'avx2',
  f16c: 'f16c',
  fma: 'fma',
  bmi1: 'bmi1',
  bmi2: 'bmi2',
  adx: 'adx',
  movbe: 'movbe',
  rdrand: 'rdrand',
  rdseed: 'rdseed',
  sha_ni: 'sha-ni',
  xsave: 'xsave',
};

/** Speculative-execution mitigations: a guest may turn them on, never off (that would weaken isolation). */
const MITIGATIONS: Record<string, string> = {
  ssbd: 'ssbd',
  md_clear: 'md-clear',
  ibpb: 'ibpb',
  stibp: 'stibp',
};

/** Features refused whatever the host has, and why. */
const FORBIDDEN: Record<string, string> = {
  vmx: 'nested virtualisation is off on this platform (a guest hypervisor widens the escape surface)',
  svm: 'nested virtualisation is off on this platform (a guest hypervisor widens the escape surface)',
  hypervisor: 'guests always see the hypervisor bit; hiding it is not offered',
  monitor: 'MONITOR/MWAIT lets a guest idle host CPUs; it is not offered',
  sev: 'AMD SEV is a KVM launch mode on SEV firmware, not a CPU flag; this platform does not offer it',
  sev_es: 'AMD SEV-ES is a KVM launch mode on SEV firmware, not a CPU flag; this platform does not offer it',
  sev_snp:
    'AMD SEV-SNP is a KVM launch mode on SEV firmware, not a CPU flag; this platform does not offer it',
};

export const ALLOWED_CPU_FEATURES: readonly string[] = [
  ...Object.keys(EXTENSIONS),
  ...Object.keys(MITIGATIONS),
];

/** Why `name` (on when `on`) is refused, or null when it is allowed (the host check is separate). */
export function cpuFeatureRefusal(name: string, on: boolean): string | null {
  if (FORBIDDEN[name]) return FORBIDDEN[name];
  if (MITIGATIONS[name])
    return on ? null : 'turning a speculative-execution mitigation off weakens isolation';
  if (EXTENSIONS[name]) return null;
  return `it is not on the allow-list (${ALLOWED_CPU_FEATURES.join(', ')})`;
}

/** `{aes: true, avx: false}` as the extra spec's value: `+aes,-avx`, sorted. */
export function cpuFeaturesSpec(features: Record<string, boolean>): string {
  return Object.keys(features)
    .sort()
    .map((f) => `${features[f] ? '+' : '-'}${f}`)
    .join(',');
}

/** Parses and checks `hw:cpu_features` (`+aes,-avx`); BadRequest naming the feature and why. */
export function parseCpuFeatures(spec: string): Record<string, boolean> {
  const out: Record<string, boolean> = {};
  for (const item of spec.split(',')) {
    const m = /^([+-])([a-z0-9_]{1,32})$/.exec(item);
    if (!m)
      throw badRequest(`hw:cpu_features must list +feature or -feature, comma-separated; got '${item}'.`);
    const [, sign, name] = m as unknown as [string, string, string];
    const why = cpuFeatureRefusal(name, sign === '+');
    if (why) throw badRequest(`CPU feature ${name} is refused: ${why}.`);
    out[name] = sign === '+';
  }
  return out;
}

/**
 * The features as QEMU `-cpu` options, refusing any to turn on that the host
 * CPU lacks (its /proc/cpuinfo flags). QEMU is also run with `enforce`, so a
 * feature the accelerator cannot give (TCG lacks some) stops the start.
 */
export function qemuCpuFeatures(features: Record<string, boolean>, hostFlags: readonly string[]): string[] {
  return Object.keys(features)
    .sort()
    .map((name) => {
      const on = features[name] === true;
      const why = cpuFeatureRefusal(name, on);
      if (why) throw badRequest(`CPU feature ${name} is refused: ${why}.`);
      if (on && !hostFlags.includes(name))
        throw badRequest(`CPU feature ${name} is refused: this host's CPU does not have it.`);
      return `${on ? '+' : '-'}${EXTENSIONS[name] ?? MITIGATIONS[name]}`;
    });
}

const BY_QEMU = new Map(Object.entries({ ...EXTENSIONS, ...MITIGATIONS }).map(([k, v]) => [v, k]));

/** QEMU `-cpu` options (`+sse4.2`) back to profile names (`{sse4_2: true}`); throws on one not allowed. */
export function featuresFromQemu(options: readonly string[]): Record<string, boolean> {
  const out: Record<string, boolean> = {};
  for (const o of options) {
    const name = BY_QEMU.get(o.slice(1));
    const on = o.startsWith('+');
    if (!name || !/^[+-]/.test(o) || cpuFeatureRefusal(name, on) !== null)
      throw badRequest(`CPU feature ${JSON.stringify(o)} is not allowed.`);
    out[name] = on;
  }
  return out;
}

/** Flags on the `flags` line of /proc/cpuinfo. */
export const cpuinfoFlags = (cpuinfo: string): string[] =>
  /^flags\s*:(.*)$/m.exec(cpuinfo)?.[1]?.trim().split(/\s+/) ?? [];
