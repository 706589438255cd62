import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, lchown, lstat, mkdir, open, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { BulwarkError, badRequest, conflict } from '../errors.js';
import type { GuestRecord } from './instance-files.js';
import type { InstanceLayout } from './layout.js';
import { swtpmPaths } from './swtpm.js';

/**
 * A stopped guest's files as a cold migration moves them (docs/multi-host.md):
 * the LUKS root overlay, the UEFI variable store and swtpm's state files. All
 * of it is what lies at rest on the source, so it travels as ciphertext (the
 * overlay and the TPM state are encrypted under the server's keys, which never
 * travel with them); the destination stages each file, checks its size and
 * SHA-256 against the source's listing, and only then puts it in place.
 */
export interface GuestFile {
  /** `disk.qcow2`, `vars.fd` or `tpm/<name>`, relative to the guest's dir. */
  name: string;
  size: number;
  sha256: string;
}

const NAME = /^(disk\.qcow2|vars\.fd|tpm\/[A-Za-z0-9][A-Za-z0-9._-]{0,63})$/;

function checkName(name: unknown): string {
  if (typeof name !== 'string' || !NAME.test(name))
    throw badRequest(`Bad guest file name ${JSON.stringify(name)}.`);
  return name;
}

/** Opens a file in the guest's (untrusted) dir: no link followed, a regular file of the guest's user. */
async function openOwned(path: string, uid: number) {
  const fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW).catch(() => {
    throw conflict(`Unexpected file at ${path}; refusing to move it.`);
  });
  const st = await fh.stat();
  if (!st.isFile() || st.uid !== uid) {
    await fh.close();
    throw conflict(`Unexpected file at ${path}; refusing to move it.`);
  }
  return { fh, size: st.size };
}

async function sha256Of(fh: Awaited<ReturnType<typeof open>>, size: number): Promise<string> {
  const h = createHash('sha256');
  const buf = Buffer.alloc(4 * 1024 * 1024);
  for (let off = 0; off < size; ) {
    const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, size - off), off);
    if (bytesRead === 0) break;
    h.update(buf.subarray(0, bytesRead));
    off += bytesRead;
  }
  return h.digest('hex');
}

/** What a stopped guest's move carries, each file hashed. */
export async function listGuestFiles(L: InstanceLayout, rec: GuestRecord): Promise<GuestFile[]> {
  const names = ['disk.qcow2', ...(rec.spec.firmware.type === 'uefi' ? ['vars.fd'] : [])];
  if (rec.spec.tpm) {
    const dir = swtpmPaths(L).stateDir;
    for (const f of await readdir(dir).catch(() => [] as string[]))
      if (NAME.test(`tpm/${f}`) && (await lstat(join(dir, f))).isFile()) names.push(`tpm/${f}`);
  }
  const out: GuestFile[] = [];
  for (const name of names) {
    const { fh, size } = await openOwned(join(L.dir, name), rec.user.uid);
    try {
      out.push({ name, size, sha256: await sha256Of(fh, size) });
    } finally {
      await fh.close();
    }
  }
  return out;
}

/** A part of one of the guest's files (the source side of the copy). */
export async function readGuestFile(
  L: InstanceLayout,
  rec: GuestRecord,
  name: string,
  offset: number,
  length: number,
): Promise<Buffer> {
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0)
    throw badRequest('Bad offset or length.');
  const { fh, size } = await openOwned(join(L.dir, checkName(name)), rec.user.uid);
  try {
    const buf = Buffer.alloc(Math.max(0, Math.min(length, size - offset)));
    const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** Where the destination stages an incoming file: root's own 0700 dir, never the guest's. */
const stagedDir = (L: InstanceLayout) => join(L.staging, 'incoming');
const staged = (L: InstanceLayout, name: string) => join(stagedDir(L), checkName(name).replace('/', '_'));

/** Writes a part of an incoming file into staging (the destination side of the copy). */
export async function writeGuestFile(
  L: InstanceLayout,
  name: string,
  offset: number,
  data: Buffer,
): Promise<void> {
  if (!Number.isSafeInteger(offset) || offset < 0 || !Buffer.isBuffer(data))
    throw badRequest('Bad offset or data.');
  await mkdir(stagedDir(L), { recursive: true, mode: 0o700 });
  const fh = await open(
    staged(L, name),
    constants.O_WRONLY | constants.O_CREAT | constants.O_NOFOLLOW,
    0o600,
  );
  try {
    await fh.write(data, 0, data.length, offset);
  } finally {
    await fh.close();
  }
}

/**
 * Every staged file must match the source's size and SHA-256, or nothing is
 * placed (a half copy never replaces the destination's fresh files); then each
 * goes in as the guest's 0600 file by rename, which never follows a link.
 */
export async function commitGuestFiles(
  L: InstanceLayout,
  rec: GuestRecord,
  files: readonly GuestFile[],
): Promise<void> {
  if (!Array.isArray(files) || files.length === 0) throw badRequest('No files to commit.');
  for (const f of files) {
    const path = staged(L, f.name);
    const fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW).catch(() => {
      throw new BulwarkError('Unavailable', `${f.name} did not arrive on this host.`);
    });
    try {
      const { size } = await fh.stat();
      if (size !== f.size || (await sha256Of(fh, size)) !== f.sha256)
        throw new BulwarkError('Unavailable', `${f.name} arrived damaged (size or SHA-256 differs).`);
    } finally {
      await fh.close();
    }
  }
  const tpmDir = swtpmPaths(L).stateDir;
  if (files.some((f) => f.name.startsWith('tpm/'))) {
    // The fresh TPM state define() made (none yet) gives way to the moved one, whole.
    for (const f of await readdir(tpmDir).catch(() => [] as string[]))
      await rm(join(tpmDir, f), { force: true });
  }
  for (const f of files) {
    const tmp = staged(L, f.name);
    await lchown(tmp, rec.user.uid, rec.user.gid);
    await chmod(tmp, 0o600);
    await rename(tmp, join(L.dir, f.name));
  }
  await discardGuestFiles(L);
}

/** Drops whatever was staged (a failed or finished copy). */
export function discardGuestFiles(L: InstanceLayout): Promise<void> {
  return rm(stagedDir(L), { recursive: true, force: true });
}
