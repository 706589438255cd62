import { BulwarkError } from '../errors.js';
import { checkGuestId } from './layout.js';
import { KeyedMutex, runTool, sleep } from './run.js';

/**
 * One system user (and group) per guest: its QEMU runs as that user, owns
 * the guest's 0700 directory and nothing else, so two guests' processes
 * cannot read each other's disks or sockets even after a QEMU escape.
 */
export interface VmUser {
  name: string;
  uid: number;
  gid: number;
}

export const VM_USER_PREFIX = 'bwvm-';
const NOLOGIN = '/usr/sbin/nologin';
const HOME = '/nonexistent';

/** `bwvm-` and the first 12 hex digits of the server id (48 bits: unique per host in practice). */
export function vmUserName(id: string): string {
  return `${VM_USER_PREFIX}${checkGuestId(id).replaceAll('-', '').slice(0, 12)}`;
}

// useradd/userdel lock /etc/passwd: one at a time in this process, and retry
// when another process holds the lock.
const lock = new KeyedMutex();

async function passwdEntry(name: string): Promise<string[] | null> {
  const r = await runTool('getent', ['passwd', name]);
  if (r.code === 2) return null; // not found
  if (r.code !== 0) throw new Error(`getent passwd ${name} failed: ${r.stderr.trim()}`);
  const f = r.stdout.trim().split(':');
  return f.length >= 7 ? f : null;
}

/** The user's ids, or null when it does not exist. */
export async function lookupVmUser(name: string): Promise<VmUser | null> {
  const f = await passwdEntry(name);
  if (!f) return null;
  const uid = Number(f[2]);
  const gid = Number(f[3]);
  if (!Number.isSafeInteger(uid) || !Number.isSafeInteger(gid))
    throw new Error(`bad passwd entry for ${name}`);
  return { name, uid, gid };
}

/** The name of the user with this uid, or null. */
export async function userNameOf(uid: number): Promise<string | null> {
  const r = await runTool('getent', ['passwd', String(uid)]);
  return r.code === 0 ? (r.stdout.split(':')[0] ?? null) : null;
}

async function retrying(cmd: string, args: string[], okCodes: number[]): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    const r = await runTool(cmd, args);
    if (r.code === 0 || okCodes.includes(r.code)) return r.code;
    // Another process (a second daemon, a package install) holds the passwd lock.
    if (attempt < 20 && /lock|try again/i.test(r.stderr)) {
      await sleep(100 + attempt * 50);
      continue;
    }
    throw new Error(`${cmd} ${args.join(' ')} failed (${r.code}): ${r.stderr.trim()}`);
  }
}

/** Creates the guest's user and group if missing (idempotent); refuses a same-named user that is not ours. */
export function ensureVmUser(id: string): Promise<VmUser> {
  const name = vmUserName(id);
  return lock.run('passwd', async () => {
    const existing = await passwdEntry(name);
    if (existing) {
      if (existing[5] !== HOME || existing[6] !== NOLOGIN || Number(existing[2]) === 0)
        throw new BulwarkError('Conflict', `Host user ${name} exists and is not a Bulwark guest user.`);
    } else {
      await retrying(
        'useradd',
        [
          '--system',
          '--no-create-home',
          '--home-dir',
          HOME,
          '--shell',
          NOLOGIN,
          '--user-group',
          '--comment',
          `Bulwark guest ${id}`,
          name,
        ],
        [],
      );
    }
    const user = await lookupVmUser(name);
    if (!user) throw new Error(`useradd did not create ${name}`);
    return user;
  });
}

/** Removes the guest's user and its group; a no-op when both are gone. Its processes must have exited. */
export function removeVmUser(id: string): Promise<void> {
  const name = vmUserName(id);
  return lock.run('passwd', async () => {
    // userdel: 6 = no such user. groupdel: 6 = no such group (userdel usually removed it already).
    if (await passwdEntry(name)) await retrying('userdel', [name], [6]);
    const g = await runTool('getent', ['group', name]);
    if (g.code === 0) await retrying('groupdel', [name], [6]);
  });
}
