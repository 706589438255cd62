import { createHash } from 'node:crypto';
import { constants, createReadStream, createWriteStream } from 'node:fs';
import { open, unlink } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { pipeline } from 'node:stream/promises';

/** One file of a forensic snapshot, with what proves it unchanged later. */
export interface ForensicFile {
  name: string;
  bytes: number;
  sha256: string;
}

/**
 * Copies a file out of a guest's directory into the root-only forensic dir,
 * hashing it on the way. The guest's user can write in its directory, so the
 * source is opened without following links and must be a regular file of that
 * user; the copy is root's, 0600.
 */
export async function collectFile(
  source: string,
  owner: number,
  destDir: string,
  opts: { name?: string; remove?: boolean } = {},
): Promise<ForensicFile> {
  const fh = await open(source, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const st = await fh.stat();
    if (!st.isFile() || st.uid !== owner)
      throw new Error(`${source} is not a regular file of the guest's user; refusing to collect it.`);
    const name = opts.name ?? basename(source);
    const hash = createHash('sha256');
    let bytes = 0;
    const input = createReadStream('', { fd: fh, autoClose: false });
    input.on('data', (chunk) => {
      hash.update(chunk);
      bytes += chunk.length;
    });
    await pipeline(input, createWriteStream(join(destDir, name), { flags: 'wx', mode: 0o600, flush: true }));
    if (opts.remove) await unlink(source);
    return { name, bytes, sha256: hash.digest('hex') };
  } finally {
    await fh.close();
  }
}
