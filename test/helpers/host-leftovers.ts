import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { DaemonProcess } from './daemon-process.js';

const GUEST_ID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/;

/** A QEMU or swtpm process started for a guest of the daemon using `dataDir`, found by its command line. */
export interface GuestProcess {
  pid: number;
  kind: 'qemu' | 'swtpm';
  id: string;
}

export function guestProcesses(dataDir: string): GuestProcess[] {
  const out: GuestProcess[] = [];
  const base = `${join(dataDir, 'instances')}/`;
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    const exe = argv[0] ?? '';
    const kind = exe.includes('qemu-system') ? 'qemu' : exe.endsWith('swtpm') ? 'swtpm' : null;
    if (!kind) continue;
    const at = argv.find((a) => a.includes(base));
    const id = at ? GUEST_ID.exec(at.slice(at.indexOf(base)))?.[0] : undefined;
    if (id) out.push({ pid: Number(e), kind, id });
  }
  return out;
}

/** Whether a process with this pid runs (a guest's QEMU or swtpm a test watches end); a zombie has ended. */
export function processAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\S+ \(.*\) [ZX] /s.test(stat);
  } catch {
    return false;
  }
}

/** The per-VM user a guest runs as (src/host/users.ts): `bwvm-` and 12 hex digits of its id. */
export const vmUser = (serverId: string) => `bwvm-${serverId.replace(/-/g, '').slice(0, 12)}`;

export function vmUserExists(serverId: string): boolean {
  return readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .some((l) => l.startsWith(`${vmUser(serverId)}:`));
}

/** Guest ids with a directory under the daemon's instances dir or its root-only `.host` dir. */
export function instanceDirs(dataDir: string): string[] {
  const ids = (dir: string) =>
    existsSync(dir) ? readdirSync(dir).filter((e) => GUEST_ID.test(e) && e.length === 36) : [];
  return [...new Set([...ids(join(dataDir, 'instances')), ...ids(join(dataDir, 'instances', '.host'))])];
}

/** Volume ids with a file in the daemon's volume store. */
export function volumeFiles(dataDir: string): string[] {
  const dir = join(dataDir, 'instances', '.volumes');
  return existsSync(dir)
    ? readdirSync(dir)
        .filter((f) => f.endsWith('.qcow2'))
        .map((f) => f.slice(0, -'.qcow2'.length))
    : [];
}

const inNetns = (d: Pick<DaemonProcess, 'netns'>, cmd: string, args: string[]) =>
  execFileSync('nsenter', [`--net=/run/netns/${d.netns}`, '--', cmd, ...args], { encoding: 'utf8' });

/** Tap devices in the daemon's namespace. */
export function taps(d: Pick<DaemonProcess, 'netns'>): string[] {
  return inNetns(d, 'ip', ['-o', 'link', 'show'])
    .split('\n')
    .map((l) => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1])
    .filter((n): n is string => !!n && n.startsWith('tap'));
}

/** nftables tables in the daemon's namespace, as `family name`. */
export function nftTables(d: DaemonProcess): string[] {
  return inNetns(d, 'nft', ['list', 'tables'])
    .split('\n')
    .filter(Boolean)
    .map((l) => l.replace(/^table /, '').trim());
}

/**
 * Files that look like loose key material in the data dir: anything named
 * like a key or secret except the platform CA's and server's TLS keys and the
 * key manager's own KEK (all expected, 0600). Keys reach QEMU and swtpm over
 * QMP or pipes only, so there should be none.
 */
export function looseKeyFiles(dataDir: string, files: string[]): string[] {
  const expected = new Set(
    ['pki/ca.key', 'pki/server.key', 'kek', 'admin-password'].map((f) => join(dataDir, f)),
  );
  return files.filter((f) => /(key|secret|passphrase)/i.test(f.slice(dataDir.length)) && !expected.has(f));
}

/** Kernel keyring entries naming a guest (the platform keeps none; a leak would show here). */
export function keyringEntries(ids: string[]): string[] {
  const keys = existsSync('/proc/keys') ? readFileSync('/proc/keys', 'utf8').split('\n') : [];
  return keys.filter((l) => ids.some((id) => l.includes(id) || l.includes(vmUser(id))));
}

/** Last-resort cleanup after a failed suite: kills the guests' processes and removes their users. */
export function killGuests(dataDir: string, ids: Iterable<string>): void {
  for (const p of guestProcesses(dataDir)) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  for (const id of ids)
    if (vmUserExists(id)) {
      try {
        execFileSync('userdel', [vmUser(id)], { stdio: 'ignore' });
      } catch {
        // a process of the user still exiting; the next run's reconcile removes it
      }
    }
}
