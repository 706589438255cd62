import { spawn } from 'node:child_process';
import { lstat, mkdtemp, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { BulwarkError } from '../errors.js';
import { luksPassphrase } from './luks.js';
import { NbdClient } from './nbd.js';
import { sleep } from './run.js';

/** A disk's plaintext, opened for a backup (read) or a restore (write). */
export interface DiskHandle {
  readonly size: number;
  read(offset: number, length: number): Promise<Buffer>;
  write(offset: number, data: Buffer): Promise<void>;
  close(): Promise<void>;
  /**
   * The file's stamp, where the host can vouch that reads come from that one
   * file and nothing writes it unseen (a local volume, read-only): a backup
   * then skips reading it while the stamp holds (docs/backups.md).
   */
  stamp?(): Promise<FileStamp>;
}

/** What the kernel says of a file; any write, truncate, utimes or replacement changes ctime or inode. */
export interface FileStamp {
  dev: string;
  ino: string;
  size: string;
  mtimeNs: string;
  ctimeNs: string;
}

export async function fileStamp(path: string): Promise<FileStamp> {
  const s = await lstat(path, { bigint: true });
  if (!s.isFile()) throw new BulwarkError('Conflict', `${path} is not a regular file.`);
  const str = (n: bigint) => n.toString();
  return {
    dev: str(s.dev),
    ino: str(s.ino),
    size: str(s.size),
    mtimeNs: str(s.mtimeNs),
    ctimeNs: str(s.ctimeNs),
  };
}

/**
 * Opens a (LUKS) qcow2 with qemu-nbd on a unix socket in a fresh root 0700
 * directory under `socketParent`, and connects to it. The key reaches
 * qemu-nbd as a secret object read from a real pipe (`cat | qemu-nbd`,
 * `file=/dev/stdin`), never a file or its command line; the plaintext
 * crosses only that socket into the daemon. `backing=` (empty) opens no
 * backing file whatever the header says, unless `backing` names the one the
 * caller vouches for (a root overlay's image: the disk as its guest sees it).
 * `shared`: the file stays in use by a (paused) guest, so no lock is taken
 * and nothing is written. `detectZeroes`: zero writes become zero clusters
 * (a full restore into a fresh overlay then stays small).
 */
export async function openQcow2(
  path: string,
  key: Buffer | null,
  opts: {
    writable: boolean;
    shared: boolean;
    socketParent: string;
    backing?: { path: string; format: 'raw' | 'qcow2' };
    detectZeroes?: boolean;
  },
): Promise<DiskHandle> {
  const dir = await mkdtemp(join(opts.socketParent, '.nbd-'));
  const sock = join(dir, 'sock');
  const image = [
    'driver=qcow2',
    'file.driver=file',
    `file.filename=${path.replaceAll(',', ',,')}`,
    ...(opts.backing
      ? [
          `backing.driver=${opts.backing.format}`,
          'backing.file.driver=file',
          `backing.file.filename=${opts.backing.path.replaceAll(',', ',,')}`,
          'backing.read-only=on',
          ...(opts.shared ? ['backing.file.locking=off'] : []),
          ...(opts.backing.format === 'qcow2' ? ['backing.backing='] : []),
        ]
      : ['backing=']),
    ...(opts.shared ? ['file.locking=off'] : []),
    ...(opts.detectZeroes ? ['detect-zeroes=unmap', 'discard=unmap'] : []),
    ...(key ? ['encrypt.key-secret=sec0'] : []),
  ].join(',');
  const args = [
    ...(key ? ['--object', 'secret,id=sec0,file=/dev/stdin,format=raw'] : []),
    '--image-opts',
    image,
    ...(opts.writable && !opts.shared ? [] : ['--read-only']),
    '--cache=none',
    '--aio=threads',
    '-k',
    sock,
    '-x',
    'disk',
  ];
  const env = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' };
  const child = key
    ? spawn('sh', ['-c', 'cat | "$@"', 'sh', 'qemu-nbd', ...args], {
        stdio: ['pipe', 'ignore', 'pipe'],
        env,
        detached: true,
      })
    : spawn('qemu-nbd', args, { stdio: ['ignore', 'ignore', 'pipe'], env, detached: true });
  let stderr = '';
  let exited = false;
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  const gone = new Promise<void>((r) => child.on('close', () => r()));
  child.on('close', () => {
    exited = true;
  });
  child.on('error', (err) => {
    stderr ||= err.message;
  });
  if (key) {
    const pipe = child.stdin as Writable;
    pipe.on('error', () => undefined);
    pipe.end(luksPassphrase(key));
  }
  const kill = async () => {
    if (!exited && child.pid) {
      try {
        process.kill(-child.pid, 'SIGTERM');
      } catch {
        /* already gone */
      }
      await Promise.race([gone, sleep(5000)]);
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const deadline = Date.now() + 30_000;
    while (!(await stat(sock).catch(() => null))) {
      if (exited || Date.now() > deadline)
        throw new BulwarkError(
          'Unavailable',
          `The disk could not be opened: ${stderr.replace(/^qemu-nbd: /, '').trim() || 'qemu-nbd did not start'}`,
        );
      await sleep(20);
    }
    const nbd = await NbdClient.connect(sock, 'disk');
    return {
      size: nbd.size,
      read: (o, l) => nbd.read(o, l),
      write: (o, d) => nbd.write(o, d),
      close: async () => {
        if (opts.writable) await nbd.flush().catch(() => undefined);
        await nbd.close().catch(() => undefined);
        await Promise.race([gone, sleep(5000)]);
        await kill();
      },
    };
  } catch (err) {
    await Promise.race([gone, sleep(500)]);
    await kill();
    const why = stderr.replace(/^qemu-nbd: /, '').trim();
    throw why ? new BulwarkError('Unavailable', `The disk could not be opened: ${why}`) : err;
  }
}
