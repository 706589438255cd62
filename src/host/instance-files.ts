import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { chmod, lchown, lstat, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { createConnection, type Socket } from 'node:net';
import { basename, join } from 'node:path';
import { badRequest, conflict } from '../errors.js';
import type { GuestSpec } from './hypervisor.js';
import type { InstanceLayout } from './layout.js';
import { isObject } from './qmp.js';
import { runTool } from './run.js';
import type { VmUser } from './users.js';

/**
 * The files of one guest, read and written by the root daemon. Anything in
 * the guest's own directory may have been swapped by its (possibly
 * compromised) QEMU, so nothing there is followed or trusted.
 */

export const errno = (err: unknown): string | undefined => (err as NodeJS.ErrnoException | undefined)?.code;

export type Desired = 'shutoff' | 'running' | 'suspended';

/** What the daemon keeps about a guest, root-only in `<base>/.host/<id>/guest.json`. */
export interface GuestRecord {
  version: 1;
  spec: GuestSpec;
  user: VmUser;
  /** What the guest should be doing: `running` with no process means it crashed. */
  desired: Desired;
  pid: number | null;
  /** /proc start time of `pid`, so a reused pid is never mistaken for the guest. */
  pidStart: number | null;
  /** Ids of the volumes attached to the guest, in attach order (plugged in at every start); no keys. */
  volumes?: string[];
}

export function parseRecord(text: string, id: string): GuestRecord {
  const r: unknown = JSON.parse(text);
  if (!isObject(r) || r.version !== 1 || !isObject(r.spec) || r.spec.id !== id || !isObject(r.user))
    throw new Error(`the record of guest ${id} is damaged`);
  const { name, uid, gid } = r.user;
  if (typeof name !== 'string' || typeof uid !== 'number' || typeof gid !== 'number')
    throw new Error(`the record of guest ${id} is damaged`);
  const desired = r.desired === 'running' || r.desired === 'suspended' ? r.desired : 'shutoff';
  const pid = typeof r.pid === 'number' ? r.pid : null;
  const pidStart = typeof r.pidStart === 'number' ? r.pidStart : null;
  const volumes = Array.isArray(r.volumes) ? r.volumes.filter((v): v is string => typeof v === 'string') : [];
  // The spec was validated before it was written, and the file is root-only.
  return {
    version: 1,
    spec: r.spec as unknown as GuestSpec,
    user: { name, uid, gid },
    desired,
    pid,
    pidStart,
    ...(volumes.length ? { volumes } : {}),
  };
}

export async function readRecord(L: InstanceLayout, id: string): Promise<GuestRecord | null> {
  try {
    return parseRecord(await readFile(L.record, 'utf8'), id);
  } catch (err) {
    if (errno(err) === 'ENOENT') return null;
    throw err;
  }
}

/** Written whole or not at all (rename over the old one). */
export async function writeRecord(L: InstanceLayout, rec: GuestRecord): Promise<void> {
  const tmp = `${L.record}.tmp`;
  await writeFile(tmp, JSON.stringify(rec), { mode: 0o600 });
  await rename(tmp, L.record);
}

/**
 * Checks a base image as root with qemu-img: the declared format, no backing
 * or external data file (either would make QEMU open a file of the image
 * author's choosing), a virtual size. Returns the size in bytes.
 */
export async function inspectImage(disk: GuestSpec['bootDisk']): Promise<number> {
  // The path comes from the image store, never from a user; still, only a regular file is an image.
  const st = await lstat(disk.imagePath).catch(() => null);
  if (!st?.isFile()) throw badRequest(`The boot image ${basename(disk.imagePath)} is missing on this host.`);
  const r = await runTool(
    'qemu-img',
    ['info', '-f', disk.imageFormat, '--output=json', disk.imagePath],
    60_000,
  );
  const what = `The boot image ${basename(disk.imagePath)} is not a usable ${disk.imageFormat} image`;
  if (r.code !== 0) {
    const why = r.stderr
      .replace(/^qemu-img: /, '')
      .split('\n')[0]
      ?.trim();
    throw badRequest(`${what}: ${why || 'qemu-img could not read it'}.`);
  }
  let info: unknown;
  try {
    info = JSON.parse(r.stdout);
  } catch {
    throw badRequest(`${what}: qemu-img gave no description of it.`);
  }
  if (!isObject(info) || typeof info['virtual-size'] !== 'number' || info['virtual-size'] <= 0)
    throw badRequest(`${what}: it has no virtual size.`);
  if (info['backing-filename'] !== undefined) throw badRequest(`${what}: it names a backing file.`);
  const specific = info['format-specific'];
  if (isObject(specific) && isObject(specific.data) && specific.data['data-file'] !== undefined)
    throw badRequest(`${what}: it names an external data file.`);
  return info['virtual-size'];
}

/** Creates the guest's qcow2 overlay at `path` (backing = the image, not opened: -u), `bytes` large. */
export async function createOverlay(path: string, disk: GuestSpec['bootDisk'], bytes: number): Promise<void> {
  const r = await runTool(
    'qemu-img',
    ['create', '-q', '-f', 'qcow2', '-F', disk.imageFormat, '-b', disk.imagePath, '-u', path, String(bytes)],
    60_000,
  );
  if (r.code !== 0) throw new Error(`qemu-img create failed: ${r.stderr.trim()}`);
}

/** Puts a file into the guest's directory: built in root's staging dir, owned by the guest, 0600, renamed in. */
export async function placeFile(
  L: InstanceLayout,
  user: VmUser,
  target: string,
  build: (tmp: string) => Promise<void>,
): Promise<void> {
  const tmp = join(L.staging, basename(target));
  await rm(tmp, { force: true });
  await build(tmp);
  await lchown(tmp, user.uid, user.gid);
  await chmod(tmp, 0o600);
  // rename() replaces whatever name the guest's user left there, and never follows a link.
  await rename(tmp, target);
}

/** QEMU's stderr without its timestamps, last `n` lines, for error messages. */
export function stderrTail(path: string, n = 5): string {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch {
    return '';
  }
  try {
    const st = fstatSync(fd);
    const len = Math.min(st.size, 16_384);
    const buf = Buffer.alloc(len);
    readSync(fd, buf, 0, len, st.size - len);
    return buf
      .toString('utf8')
      .split('\n')
      .map((l) =>
        l
          .replace(/^\S+Z /, '')
          .replace(/^qemu-system-\w+: /, '')
          .trim(),
      )
      .filter(Boolean)
      .slice(-n)
      .join('\n');
  } finally {
    closeSync(fd);
  }
}

export const MAX_CONSOLE_BYTES = 4 * 1024 * 1024;

/**
 * The end of a console log QEMU writes as the guest's user, who could swap it
 * for a link to a host file: opened without following links, read only if it
 * is a regular file of the guest's (or root's), at most MAX_CONSOLE_BYTES.
 */
export function readConsoleLog(path: string, owner: number, maxLines?: number): string {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    if (errno(err) === 'ENOENT') return '';
    throw conflict(`The console log cannot be read (${errno(err)}).`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile() || (st.uid !== owner && st.uid !== 0))
      throw conflict('The console log is not a regular file of the guest’s; refusing to read it.');
    const len = Math.min(st.size, MAX_CONSOLE_BYTES);
    const buf = Buffer.alloc(len);
    readSync(fd, buf, 0, len, st.size - len);
    let text = buf.toString('utf8').replaceAll('\r\n', '\n');
    if (len < st.size) text = text.slice(text.indexOf('\n') + 1);
    if (maxLines === undefined) return text;
    const lines = text.split('\n');
    if (lines.at(-1) === '') lines.pop();
    return lines.slice(-maxLines).join('\n');
  } finally {
    closeSync(fd);
  }
}

/** Linux O_PATH (Node does not export it): a handle on the inode itself, opened without reading. */
const O_PATH = 0o10000000;

/**
 * Connects to a unix socket QEMU made in the guest's directory, where its
 * user could have put a link to another process's socket: the inode is
 * pinned with O_PATH|O_NOFOLLOW, checked to be a socket of the guest's, and
 * connected through /proc/self/fd, so a swap after the check changes nothing.
 */
export async function connectGuestSocket(path: string, owner: number): Promise<Socket> {
  let fd: number;
  try {
    fd = openSync(path, O_PATH | constants.O_NOFOLLOW);
  } catch (err) {
    throw conflict(`The guest's console is not available (${errno(err) ?? 'error'}); is the server running?`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isSocket() || st.uid !== owner)
      throw conflict('The console socket is not a socket of the guest’s; refusing to connect.');
    return await new Promise<Socket>((resolve, reject) => {
      const sock = createConnection(`/proc/self/fd/${fd}`);
      sock.once('connect', () => {
        sock.removeListener('error', reject);
        resolve(sock);
      });
      sock.once('error', (err) =>
        reject(conflict(`The guest's console refused the connection (${errno(err)}).`)),
      );
    });
  } finally {
    closeSync(fd);
  }
}
