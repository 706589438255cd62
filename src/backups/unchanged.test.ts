import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  copyFileSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { fileStamp } from '../host/disk-export.js';
import { generateRecoveryKey, parseRecoveryKey } from './crypto.js';
import { type DiskSource, Repository } from './repository.js';
import { LocalTarget } from './target.js';
import { recordName, SETTLE_NS, vouches } from './unchanged.js';

/**
 * The unchanged-file skip (unchanged.ts) against real files and the kernel's
 * stamps: it happens only when nothing wrote the file, and every backup,
 * skipped or not, restores to exactly the file's bytes at that backup.
 */
const MiB = 1024 * 1024;
const SETTLE_MS = Number(SETTLE_NS / 1_000_000n) + 200;
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A repository and a volume file; `settled`: the file's last change is older than the margin. */
async function setup(settled = true) {
  const dir = mkdtempSync(join(tmpdir(), 'bw-unchanged-'));
  dirs.push(dir);
  const rk = generateRecoveryKey();
  const idKey = randomBytes(32);
  const repo = new Repository(new LocalTarget(join(dir, 'repo')), rk.publicKey);
  const file = join(dir, 'volume.qcow2');
  // Random, text and an unwritten run, as a disk holds.
  const text = Buffer.from('the quick brown fox jumps over the lazy dog '.repeat(80_000)).subarray(
    0,
    3 * MiB,
  );
  writeFileSync(file, Buffer.concat([randomBytes(5 * MiB), text, Buffer.alloc(4 * MiB)]));
  const live: { id: string; sealSha256: string }[] = [];
  let reads = 0;
  const disk = (onRead?: (off: number) => void, source = 'vol-1'): DiskSource => ({
    name: 'volume',
    size: statSync(file).size,
    read: async (off, len) => {
      onRead?.(off);
      const fd = openSync(file, 'r');
      try {
        const b = Buffer.alloc(len);
        reads += readSync(fd, b, 0, len, off);
        return b;
      } finally {
        closeSync(fd);
      }
    },
    unchanged: { source, stamp: () => fileStamp(file) },
  });
  const backup = async (id: string, since: string | null, d = disk(), r = repo, key = idKey) => {
    reads = 0;
    const out = await r.backup(id, key, [d], live, undefined, since);
    live.push({ id, sealSha256: out.sealSha256 });
    return { ...out.stats.disks[0]!, bytesRead: reads, stats: out.stats, seal: out.sealSha256 };
  };
  /** The backup restored, compared with the file as it is now. */
  const restoresToFile = async (id: string, r = repo) => {
    const want = readFileSync(file);
    const out = Buffer.alloc(want.length);
    const seal = live.find((l) => l.id === id)!.sealSha256;
    await r.restore(
      id,
      seal,
      parseRecoveryKey(rk.privateKeyPem),
      idKey,
      async () => ({ write: async (o, d) => void d.copy(out, o), close: async () => undefined }),
      { sparse: false },
    );
    return out.equals(want);
  };
  await repo.init(idKey);
  if (settled) await sleep(SETTLE_MS);
  return { dir, file, repo, rk, idKey, live, disk, backup, restoresToFile };
}

/** `setup()` and a first full backup `a` whose read was recorded. */
async function afterFirstBackup() {
  const t = await setup();
  const a = await t.backup('a', null);
  expect(a).toMatchObject({ read: true, bytesRead: 12 * MiB });
  return t;
}

const mtimeNs = (file: string) => statSync(file, { bigint: true }).mtimeNs;

/** Sets the file's mtime to the nanosecond with `touch -d`, as a writer hiding a change would. */
function setMtime(file: string, ns: bigint) {
  const frac = (ns % 1_000_000_000n).toString().padStart(9, '0');
  execFileSync('touch', ['-m', '-d', `@${ns / 1_000_000_000n}.${frac}`, file]);
  expect(mtimeNs(file)).toBe(ns);
}

/** Runs `fn` on the file, then sets its mtime back. */
function keepingMtime(file: string, fn: () => void) {
  const before = mtimeNs(file);
  fn();
  setMtime(file, before);
}

function writeByte(file: string, at: number) {
  const fd = openSync(file, 'r+');
  try {
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, at);
    writeSync(fd, Buffer.of(b[0]! ^ 0x5a), 0, 1, at);
  } finally {
    closeSync(fd);
  }
}

describe('unchanged-file skip', () => {
  it('skips an unchanged file, reusing the chunk list; the skipped backup restores byte for byte', async () => {
    const t = await setup();
    const a = await t.backup('a', null);
    expect(a).toMatchObject({ read: true, bytesRead: 12 * MiB });
    const b = await t.backup('b', 'a');
    expect(b).toMatchObject({ read: false, why: 'unchanged since backup a', bytesRead: 0 });
    expect(b.stats.newChunks).toBe(0);
    expect(b.stats.chunks).toBe(a.stats.chunks);
    // The skipped backup records its own stamp: the next one skips too.
    const c = await t.backup('c', 'b');
    expect(c).toMatchObject({ read: false, bytesRead: 0 });
    expect(await t.restoresToFile('b')).toBe(true);
    expect(await t.restoresToFile('c')).toBe(true);
    // The record holds no plaintext chunk list in the clear (sealed under the chunk-id key).
    const rec = readFileSync(join(t.dir, 'repo', recordName('a')));
    expect(rec.includes(Buffer.from('"chunks"'))).toBe(false);
  });

  it('reads again after a one-byte write that keeps the size and (set back) the mtime', async () => {
    const t = await afterFirstBackup();
    keepingMtime(t.file, () => writeByte(t.file, 6 * MiB + 12345));
    const b = await t.backup('b', 'a');
    expect(b).toMatchObject({ read: true, why: 'the file changed since the previous backup' });
    expect(b.bytesRead).toBe(12 * MiB);
    expect(await t.restoresToFile('b')).toBe(true);
  });

  it('reads again after a truncate and regrow to the same size', async () => {
    const t = await afterFirstBackup();
    keepingMtime(t.file, () => {
      truncateSync(t.file, 7 * MiB);
      truncateSync(t.file, 12 * MiB);
    });
    const b = await t.backup('b', 'a');
    expect(b).toMatchObject({ read: true, why: 'the file changed since the previous backup' });
    expect(await t.restoresToFile('b')).toBe(true);
  });

  it('reads again when the file was replaced by a rename (a new inode), mtime and size kept', async () => {
    const t = await afterFirstBackup();
    const copy = `${t.file}.new`;
    copyFileSync(t.file, copy);
    writeByte(copy, 100);
    setMtime(copy, mtimeNs(t.file));
    renameSync(copy, t.file);
    const b = await t.backup('b', 'a');
    expect(b).toMatchObject({ read: true, why: 'the file changed since the previous backup' });
    expect(await t.restoresToFile('b')).toBe(true);
  });

  it('records nothing when the file is written during the read; the next backup reads it all', async () => {
    const t = await setup();
    let wrote = false;
    const during = t.disk((off) => {
      // After the first block was read: a change the backup has already passed.
      if (off >= 4 * MiB && !wrote) {
        wrote = true;
        keepingMtime(t.file, () => writeByte(t.file, 10));
      }
    });
    const a = await t.backup('a', null, during);
    expect(wrote).toBe(true);
    expect(a.read).toBe(true);
    const b = await t.backup('b', 'a');
    expect(b).toMatchObject({ read: true, why: 'backup a recorded no file stamp' });
    expect(await t.restoresToFile('b')).toBe(true);
  });

  it('records nothing for a file changed less than the settle time before the read', async () => {
    const t = await setup(false);
    writeByte(t.file, 0); // just now
    await t.backup('a', null);
    const b = await t.backup('b', 'a');
    expect(b).toMatchObject({ read: true, why: 'backup a recorded no file stamp' });
    expect(vouches(await fileStamp(t.file), await fileStamp(t.file), BigInt(Date.now()) * 1_000_000n)).toBe(
      'the file changed less than 2 s before it was read',
    );
    // Once the change is older than the margin, a read is recorded and the next backup skips.
    await sleep(SETTLE_MS);
    expect(await t.backup('c', 'b')).toMatchObject({ read: true });
    expect(await t.backup('d', 'c')).toMatchObject({ read: false, bytesRead: 0 });
    expect(await t.restoresToFile('d')).toBe(true);
  });

  it('never reuses another volume, another repository, or a deleted backup', async () => {
    const t = await afterFirstBackup();
    // The same file named as another volume.
    const other = await t.backup('b', 'a', t.disk(undefined, 'vol-2'));
    expect(other).toMatchObject({ read: true, why: 'the previous record is of another disk' });
    // Another repository (its own chunk-id key) given this one's record of `a`.
    const rk2 = generateRecoveryKey();
    const repo2 = new Repository(new LocalTarget(join(t.dir, 'repo2')), rk2.publicKey);
    const idKey2 = randomBytes(32);
    await repo2.init(idKey2);
    await repo2.backup('a', idKey2, [t.disk()], [], undefined, null); // its own `a`
    copyFileSync(join(t.dir, 'repo', recordName('a')), join(t.dir, 'repo2', recordName('a')));
    const sha = (p: string) => execFileSync('sha256sum', [p]).toString().split(' ')[0]!;
    const x = await repo2.backup(
      'x',
      idKey2,
      [t.disk()],
      [{ id: 'a', sealSha256: sha(join(t.dir, 'repo2', 'backups', 'a.seal')) }],
      undefined,
      'a',
    );
    expect(x.stats.disks[0]).toMatchObject({
      read: true,
      why: 'the file record of backup a does not authenticate in this repository',
    });
    // A backup that is no longer live is never the base of a skip.
    const gone = t.live.findIndex((l) => l.id === 'a');
    const [aLive] = t.live.splice(gone, 1);
    await t.repo.remove('a', aLive!.sealSha256, async () => t.live);
    const c = await t.backup('c', 'a');
    expect(c).toMatchObject({ read: true, why: 'backup a is not a live backup' });
    expect(await t.restoresToFile('c')).toBe(true);
  });
});
