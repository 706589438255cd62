import { createHash } from 'node:crypto';
import { brotliCompressSync, brotliDecompressSync, constants, inflateRawSync } from 'node:zlib';
import { CHUNK_MAGIC, chunkId, integrityError, open, seal, sealedKeyId } from './crypto.js';

/**
 * One chunk's stored form (docs/backups.md): `seal(flag | body)`, where the
 * flag says how the body is packed. Pure functions, run in the chunk workers
 * (chunk-worker.ts). New chunks are written as brotli or stored; deflate
 * (flag 1) is what repositories written before brotli hold, and is still read.
 */
const STORED = 0;
const DEFLATE = 1;
const BROTLI = 2;

const PROBE = 64 * 1024;
/**
 * Brotli at quality 1 with a 4 MiB window (a whole chunk): on disk-like text it
 * was both smaller (0.28 of the input against 0.42) and faster (about 2.5×)
 * than deflate level 1 here; higher qualities cost much more time for a few %.
 */
const brotli = (b: Uint8Array) =>
  brotliCompressSync(b, {
    params: {
      [constants.BROTLI_PARAM_QUALITY]: 1,
      [constants.BROTLI_PARAM_LGWIN]: 22,
      [constants.BROTLI_PARAM_SIZE_HINT]: b.length,
    },
  });

export const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** The sealed object for a new chunk named `id`, compressed only where it shrinks. */
export function packChunk(plain: Buffer, id: string, key: Buffer, keyId: string): Buffer {
  // A 64 KiB sample first: random data (media, compressed or encrypted files)
  // would cost the compressor's time for nothing.
  const sample = plain.subarray(0, PROBE);
  const packed = brotli(sample).length < sample.length * 0.9 ? brotli(plain) : null;
  const body =
    packed && packed.length < plain.length * 0.97
      ? Buffer.concat([Buffer.of(BROTLI), packed])
      : Buffer.concat([Buffer.of(STORED), plain]);
  return seal(CHUNK_MAGIC, key, keyId, id, body);
}

/**
 * A stored chunk's plaintext, checked three ways: the object's sha256 against
 * the seal's entry, AES-GCM under its data key, and the HMAC of the plaintext
 * against its name.
 */
export function unpackChunk(
  blob: Buffer,
  id: string,
  sha: string,
  keys: ReadonlyMap<string, Buffer>,
  idKey: Buffer,
): Buffer {
  if (sha256(blob) !== sha) throw integrityError(`chunk ${id} was altered`);
  const key = keys.get(sealedKeyId(CHUNK_MAGIC, blob, id));
  if (!key) throw integrityError(`chunk ${id} names an unknown key`);
  const body = open(CHUNK_MAGIC, key, id, blob);
  const flag = body[0];
  const plain =
    flag === STORED
      ? body.subarray(1)
      : flag === BROTLI
        ? brotliDecompressSync(body.subarray(1))
        : flag === DEFLATE
          ? inflateRawSync(body.subarray(1))
          : null;
  if (!plain) throw integrityError(`chunk ${id} has an unknown packing ${flag}`);
  if (chunkId(idKey, plain) !== id) throw integrityError(`chunk ${id} does not hash to its name`);
  return plain;
}
