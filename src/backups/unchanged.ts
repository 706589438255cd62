import { hkdfSync } from 'node:crypto';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import type { FileStamp } from '../host/disk-export.js';
import { open, seal } from './crypto.js';

/**
 * The unchanged-file skip (docs/backups.md): a backup may reuse the chunk
 * list of the previous backup of the same source in the same repository,
 * without reading the disk, only when the disk's file has the same (device,
 * inode, size, mtime, ctime) as when that backup read it, and that stamp
 * was already `SETTLE_NS` old when its read began and did not move during
 * it. No writer can set ctime (the kernel sets it to "now" on every write,
 * truncate, fallocate and utimes), and a write after the read began gets a
 * ctime at least that new, so it cannot leave the recorded stamp in place.
 * The margin covers filesystems whose timestamps are coarse (FAT's 2 s).
 *
 * The record holds each disk's chunk list, sealed under a key derived from
 * the repository's chunk-id key (the daemon cannot read the index, which is
 * sealed for the recovery key), with the backup id authenticated: another
 * repository's record, or another backup's, does not open.
 */
export const SETTLE_NS = 2_000_000_000n;
const MAGIC = Buffer.from('BWU1');
const KEY_ID = '00'.repeat(16);

export interface UnchangedDisk {
  name: string;
  /** The volume (or other source) the file belongs to. */
  source: string;
  size: number;
  stamp: FileStamp;
  /** Wall clock (ns) when the read began, taken before the stamp. */
  read_start_ns: string;
  chunks: [string, number][];
}

export const recordName = (backupId: string) => `backups/${backupId}.unchanged`;

function recordKey(idKey: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', idKey, Buffer.alloc(0), 'bulwark unchanged-disk records v1', 32));
}

export function sealRecord(idKey: Buffer, backupId: string, disks: UnchangedDisk[]): Buffer {
  const key = recordKey(idKey);
  try {
    return seal(MAGIC, key, KEY_ID, backupId, deflateRawSync(JSON.stringify({ v: 1, disks })));
  } finally {
    key.fill(0);
  }
}

/** The record's disks; throws an integrity error when it does not authenticate for this repository and backup. */
export function openRecord(idKey: Buffer, backupId: string, blob: Buffer): UnchangedDisk[] {
  const key = recordKey(idKey);
  try {
    return (
      JSON.parse(inflateRawSync(open(MAGIC, key, backupId, blob)).toString()) as { disks: UnchangedDisk[] }
    ).disks;
  } finally {
    key.fill(0);
  }
}

export const nowNs = () => BigInt(Date.now()) * 1_000_000n;

const sameStamp = (a: FileStamp, b: FileStamp) =>
  a.dev === b.dev &&
  a.ino === b.ino &&
  a.size === b.size &&
  a.mtimeNs === b.mtimeNs &&
  a.ctimeNs === b.ctimeNs;

/**
 * Whether stamps taken before and after a read vouch that the read saw the
 * file as the stamp describes it: null if so, else why not.
 */
export function vouches(before: FileStamp, after: FileStamp, readStartNs: bigint): string | null {
  if (!sameStamp(before, after)) return 'the file changed while it was read';
  if (BigInt(before.ctimeNs) >= readStartNs - SETTLE_NS)
    return 'the file changed less than 2 s before it was read';
  return null;
}

/**
 * Why `prev` (the previous backup's record of this disk) cannot stand for
 * the disk now, or null when its chunk list may be reused: the same source,
 * size and stamp, a stamp settled before that read began, and every chunk
 * still held by a live backup.
 */
export function whyNotReuse(
  prev: UnchangedDisk | undefined,
  disk: { name: string; source: string; size: number },
  now: FileStamp,
  stored: (id: string) => boolean,
): string | null {
  if (!prev) return 'the previous backup has no record of this disk';
  if (prev.source !== disk.source || prev.size !== disk.size) return 'the previous record is of another disk';
  if (!sameStamp(prev.stamp, now)) return 'the file changed since the previous backup';
  if (BigInt(prev.stamp.ctimeNs) >= BigInt(prev.read_start_ns) - SETTLE_NS)
    return 'the previous record was not settled';
  let total = 0;
  for (const [id, len] of prev.chunks) {
    if (!stored(id)) return `chunk ${id} is no longer in the repository`;
    total += len;
  }
  if (total !== disk.size) return 'the previous chunk list does not add up';
  return null;
}
