import { BulwarkError } from '../errors.js';
import { failed, qemuImgWithSecret, secretObject } from './luks.js';
import { isObject, type QmpClient } from './qmp.js';

/**
 * Internal qcow2 snapshots (docs/snapshots.md): the snapshot lives inside the
 * same file as its source, so it is encrypted exactly like it (the same LUKS
 * header and key) and never leaves the host's root-only or guest-only dirs.
 *
 * - A file no QEMU has open: `qemu-img snapshot -c|-d TAG` as root, the key on
 *   a pipe, the image named by a `json:` filename with `backing: null` so a
 *   header rewritten by a guest's QEMU cannot make root open another file.
 * - A running guest: QMP `blockdev-snapshot-internal-sync` (crash-consistent)
 *   and `blockdev-snapshot-delete-internal-sync`. A memory snapshot's RAM and
 *   device state go to a separate encrypted file (state-cipher.ts): QEMU 7.2's
 *   `snapshot-save` asserts on an encrypted qcow2.
 */

/** Tags are ours (`bw-<uuid>`); anything else is refused before it reaches a command line. */
const TAG = /^bw-[0-9a-f-]{36}$/;
const checkTag = (tag: string) => {
  if (!TAG.test(tag)) throw new BulwarkError('BadRequest', `Bad snapshot tag ${JSON.stringify(tag)}.`);
};

function imageSpec(path: string, key: Buffer | null): string {
  return `json:${JSON.stringify({
    driver: 'qcow2',
    file: { driver: 'file', filename: path },
    backing: null,
    ...(key ? { encrypt: { format: 'luks', 'key-secret': 'sec0' } } : {}),
  })}`;
}

/** Creates (`-c`) or deletes (`-d`) internal snapshot `tag` in a qcow2 no QEMU has open. */
export async function fileSnapshot(
  op: 'create' | 'delete',
  path: string,
  tag: string,
  key: Buffer | null,
): Promise<void> {
  checkTag(tag);
  const args = [
    'snapshot',
    ...(key ? secretObject : []),
    op === 'create' ? '-c' : '-d',
    tag,
    imageSpec(path, key),
  ];
  const r = await qemuImgWithSecret(args, key);
  // Deleting a snapshot that is not there is done already.
  if (r.code !== 0 && !(op === 'delete' && /not found|Can't find the snapshot/i.test(r.stderr)))
    throw failed(op === 'create' ? 'Taking the snapshot' : 'Deleting the snapshot', r.stderr);
}

/** Disk-only snapshot of block node `node` in a running QEMU. */
export async function liveSnapshot(qmp: QmpClient, node: string, tag: string): Promise<void> {
  checkTag(tag);
  await qmp.execute('blockdev-snapshot-internal-sync', { device: node, name: tag });
}

export async function liveSnapshotDelete(qmp: QmpClient, node: string, tag: string): Promise<void> {
  checkTag(tag);
  try {
    await qmp.execute('blockdev-snapshot-delete-internal-sync', { device: node, name: tag });
  } catch (err) {
    if (!/not found|can't find/i.test((err as Error).message)) throw err;
  }
}

/** The snapshot tags qemu-img sees in a qcow2 (read-only, shared; no key needed for the header). */
export async function listFileSnapshots(path: string): Promise<{ tag: string; vmStateBytes: number }[]> {
  const r = await qemuImgWithSecret(['info', '-f', 'qcow2', '--output=json', '-U', path], null, 60_000);
  if (r.code !== 0) throw failed('Reading the snapshots', r.stderr);
  const info: unknown = JSON.parse(r.stdout);
  const list = isObject(info) && Array.isArray(info.snapshots) ? info.snapshots : [];
  return list.filter(isObject).map((s) => ({
    tag: String(s.name),
    vmStateBytes: typeof s['vm-state-size'] === 'number' ? s['vm-state-size'] : 0,
  }));
}
