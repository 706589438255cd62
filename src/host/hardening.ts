import { readdir, readFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Type } from 'typebox';
import { Value } from 'typebox/value';

/**
 * Reads what a hypervisor host's hardening checks need (docs/compliance.md,
 * "Host hardening"): sysctls, the kernel command line, sshd's configuration,
 * auditd and its rules, KVM's nested flag, AppArmor and seccomp, and the
 * sockets listening. Only reads files, under roots tests point at a fake
 * tree; compliance/host-checks.ts decides what the readings mean. It runs
 * where the host is: the daemon for its own machine, each agent for its own
 * (sent in its reports as `health.hardening`, checked by FactsSchema).
 */
export interface HostRoots {
  proc: string;
  sys: string;
  etc: string;
}

export const REAL_ROOTS: HostRoots = { proc: '/proc', sys: '/sys', etc: '/etc' };

export interface Listener {
  proto: 'tcp' | 'udp';
  address: string;
  port: number;
}

export interface HardeningFacts {
  collected_at: string;
  /** Each asked-for sysctl's value; null when the kernel has no such file. */
  sysctls: Record<string, string | null>;
  cmdline: string | null;
  /** sshd's effective settings (lowercase keys, first value wins as in sshd); null: no sshd_config. */
  sshd: { files: string[]; settings: Record<string, string> } | null;
  auditd: { running: boolean; ruleFiles: string[]; rules: string[] };
  /** /sys/module/<m>/parameters/nested per KVM module; null when the module is not loaded. */
  nested: { kvm_intel: string | null; kvm_amd: string | null };
  apparmor: string | null;
  seccompActions: string | null;
  listening: Listener[];
}

const Str = Type.String({ maxLength: 4096 });
const Maybe = Type.Union([Str, Type.Null()]);
/** What an agent may send as its readings; anything else is ignored as no readings. */
export const FactsSchema = Type.Object({
  collected_at: Str,
  sysctls: Type.Record(Type.String({ maxLength: 128 }), Maybe),
  cmdline: Maybe,
  sshd: Type.Union([
    Type.Null(),
    Type.Object({ files: Type.Array(Str), settings: Type.Record(Type.String({ maxLength: 64 }), Str) }),
  ]),
  auditd: Type.Object({ running: Type.Boolean(), ruleFiles: Type.Array(Str), rules: Type.Array(Str) }),
  nested: Type.Object({ kvm_intel: Maybe, kvm_amd: Maybe }),
  apparmor: Maybe,
  seccompActions: Maybe,
  listening: Type.Array(
    Type.Object({
      proto: Type.Union([Type.Literal('tcp'), Type.Literal('udp')]),
      address: Str,
      port: Type.Integer(),
    }),
  ),
});

/** An agent's reported readings (its host row's health JSON), or null when it sent none or junk. */
export function reportedFacts(healthJson: string): HardeningFacts | null {
  try {
    const h = (JSON.parse(healthJson) as { hardening?: unknown }).hardening;
    return Value.Check(FactsSchema, h) ? (h as HardeningFacts) : null;
  } catch {
    return null;
  }
}

/** The readings as an agent sends them: only watch rules, one entry per listening port (reports are small). */
export const compactFacts = (f: HardeningFacts): HardeningFacts => ({
  ...f,
  auditd: { ...f.auditd, rules: f.auditd.rules.filter((r) => /(?:^|\s)-w\s/.test(r)).slice(0, 200) },
  listening: f.listening.filter(
    (l, i, all) => all.findIndex((o) => o.proto === l.proto && o.port === l.port) === i,
  ),
});

const read = (p: string) =>
  readFile(p, 'utf8').then(
    (t) => t.trim(),
    () => null,
  );
const list = (d: string) => readdir(d).catch((): string[] => []);

export async function probeHardening(roots: HostRoots, sysctls: readonly string[]): Promise<HardeningFacts> {
  const values = await Promise.all(sysctls.map((n) => read(join(roots.proc, 'sys', ...n.split('.')))));
  const [cmdline, sshd, auditd, intel, amd, apparmor, seccompActions, listening] = await Promise.all([
    read(join(roots.proc, 'cmdline')),
    readSshd(roots.etc),
    readAuditd(roots),
    read(join(roots.sys, 'module', 'kvm_intel', 'parameters', 'nested')),
    read(join(roots.sys, 'module', 'kvm_amd', 'parameters', 'nested')),
    read(join(roots.sys, 'module', 'apparmor', 'parameters', 'enabled')),
    read(join(roots.proc, 'sys', 'kernel', 'seccomp', 'actions_avail')),
    readListeners(join(roots.proc, 'net')),
  ]);
  return {
    collected_at: new Date().toISOString(),
    sysctls: Object.fromEntries(sysctls.map((n, i) => [n, values[i] ?? null])),
    cmdline,
    sshd,
    auditd,
    nested: { kvm_intel: intel, kvm_amd: amd },
    apparmor,
    seccompActions,
    listening,
  };
}

/**
 * sshd_config with its `Include`s (relative ones from /etc/ssh, absolute ones under /etc re-rooted; `*`
 * globs in the last part), the first value of each keyword winning as in sshd.
 */
async function readSshd(etc: string): Promise<HardeningFacts['sshd']> {
  const main = join(etc, 'ssh', 'sshd_config');
  const text = await read(main);
  if (text === null) return null;
  const settings: Record<string, string> = {};
  const files: string[] = [];
  const walk = async (file: string, body: string, depth: number): Promise<void> => {
    files.push(file);
    for (const raw of body.split('\n')) {
      const line = raw.trim();
      if (!line || line.startsWith('#')) continue;
      const [key = '', ...rest] = line.split(/\s+/);
      const k = key.toLowerCase();
      // A Match block applies to some connections only; the defaults are what precedes it.
      if (k === 'match') return;
      if (k === 'include' && depth < 4) {
        for (const pattern of rest) {
          const p = pattern.startsWith('/etc/')
            ? join(etc, pattern.slice('/etc/'.length))
            : pattern.startsWith('/')
              ? pattern
              : join(etc, 'ssh', pattern);
          for (const f of await glob(p)) {
            const inc = await read(f);
            if (inc !== null) await walk(f, inc, depth + 1);
          }
        }
        continue;
      }
      if (!(k in settings)) settings[k] = rest.join(' ').toLowerCase();
    }
  };
  await walk(main, text, 0);
  return { files, settings };
}

async function glob(pattern: string): Promise<string[]> {
  const name = basename(pattern);
  if (!name.includes('*')) return [pattern];
  const re = new RegExp(`^${name.split('*').map(escapeRe).join('.*')}$`);
  const dir = dirname(pattern);
  return (await list(dir))
    .filter((f) => re.test(f))
    .sort()
    .map((f) => join(dir, f));
}

const escapeRe = (s: string) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&');

async function readAuditd(roots: HostRoots): Promise<HardeningFacts['auditd']> {
  const pids = (await list(roots.proc)).filter((p) => /^\d+$/.test(p));
  const comms = await Promise.all(pids.map((p) => read(join(roots.proc, p, 'comm'))));
  const dir = join(roots.etc, 'audit', 'rules.d');
  const ruleFiles = [...(await glob(join(dir, '*.rules'))), join(roots.etc, 'audit', 'audit.rules')];
  const rules: string[] = [];
  const found: string[] = [];
  for (const f of ruleFiles) {
    const t = await read(f);
    if (t === null) continue;
    found.push(f);
    rules.push(
      ...t
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l && !l.startsWith('#')),
    );
  }
  return { running: comms.includes('auditd'), ruleFiles: found, rules };
}

/** LISTEN TCP sockets and bound UDP sockets from /proc/net/{tcp,tcp6,udp,udp6}. */
async function readListeners(net: string): Promise<Listener[]> {
  const out: Listener[] = [];
  for (const [file, proto, state] of [
    ['tcp', 'tcp', '0A'],
    ['tcp6', 'tcp', '0A'],
    ['udp', 'udp', '07'],
    ['udp6', 'udp', '07'],
  ] as const) {
    const t = await read(join(net, file));
    for (const line of (t ?? '').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      const [addr, portHex] = (f[1] ?? '').split(':');
      if (f[3] !== state || !addr || !portHex) continue;
      out.push({ proto, address: addr, port: Number.parseInt(portHex, 16) });
    }
  }
  return out;
}

/** What /proc says of a guest process's confinement (escape hardening): its uid, seccomp mode, cgroup. */
export async function processConfinement(
  procRoot: string,
  pid: number,
): Promise<{ uid: number | null; seccomp: number | null; cgroup: string | null } | null> {
  const status = await read(join(procRoot, String(pid), 'status'));
  if (status === null) return null;
  const num = (re: RegExp) => {
    const m = re.exec(status)?.[1];
    return m === undefined ? null : Number(m);
  };
  const cgroup = await read(join(procRoot, String(pid), 'cgroup'));
  // v1 (or hybrid, whose v2 line is then the bare root): the memory hierarchy, where the guest's limit is;
  // pure v2: the one `0::/path` line.
  const lines = (cgroup ?? '').split('\n');
  const path =
    lines.find((l) => /^\d+:memory:/.test(l))?.replace(/^\d+:memory:/, '') ??
    lines.find((l) => l.startsWith('0::'))?.slice(3) ??
    null;
  return { uid: num(/^Uid:\s+(\d+)/m), seccomp: num(/^Seccomp:\s+(\d+)/m), cgroup: path };
}
