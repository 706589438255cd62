import { createHash } from 'node:crypto';

/**
 * Content-defined chunking (FastCDC's gear hash with normalised chunking,
 * Xia et al., USENIX ATC 2016): a cut falls where the rolling hash's top bits
 * are zero, so an insertion or change moves only the cuts near it and every
 * other chunk keeps its bytes, and its name, across backups.
 */
export const CHUNK_MIN = 256 * 1024;
export const CHUNK_AVG = 1024 * 1024;
export const CHUNK_MAX = 4 * 1024 * 1024;

/** Harder mask before the average size, easier after (normalisation level 2): sizes cluster at the average. */
const MASK_S = 0xfffffc00; // top 22 bits
const MASK_L = 0xffffc000; // top 18 bits

/** 256 fixed pseudo-random words; fixed forever, or every chunk of an existing repository would move. */
const GEAR = (() => {
  const g = new Uint32Array(256);
  for (let i = 0; i < 256; i++)
    g[i] = createHash('sha256').update(`bulwark-gear-${i}`).digest().readUInt32BE(0);
  return g;
})();

/** Length of the first chunk of `buf` (all of it when it is at most `CHUNK_MIN`, or when `final` and no cut is found). */
export function cutPoint(buf: Uint8Array, final: boolean): number {
  const n = buf.length;
  if (n <= CHUNK_MIN) return final ? n : -1;
  const end = Math.min(n, CHUNK_MAX);
  const mid = Math.min(end, CHUNK_AVG);
  let h = 0;
  let i = CHUNK_MIN;
  for (; i < mid; i++) {
    h = ((h << 1) + (GEAR[buf[i]!] as number)) >>> 0;
    if ((h & MASK_S) === 0) return i + 1;
  }
  for (; i < end; i++) {
    h = ((h << 1) + (GEAR[buf[i]!] as number)) >>> 0;
    if ((h & MASK_L) === 0) return i + 1;
  }
  if (end === CHUNK_MAX) return CHUNK_MAX;
  return final ? n : -1; // not enough bytes yet to decide
}

/**
 * Splits a stream of blocks into content-defined chunks. Chunks are
 * subarrays of the carried buffer: use (or copy) each before the next push.
 */
export class Chunker {
  private carry: Buffer = Buffer.alloc(0);

  /** Nothing carried over: the next block starts a chunk. */
  get idle(): boolean {
    return this.carry.length === 0;
  }

  /** Chunks completed by `block`; the tail waits for more bytes. */
  *push(block: Buffer): Generator<Buffer> {
    let buf = this.carry.length ? Buffer.concat([this.carry, block]) : block;
    for (;;) {
      const cut = cutPoint(buf, false);
      if (cut < 0) break;
      yield buf.subarray(0, cut);
      buf = buf.subarray(cut);
    }
    this.carry = Buffer.from(buf); // own the tail: the caller may reuse `block`
  }

  /** The last chunks, at the end of the stream. */
  *finish(): Generator<Buffer> {
    let buf = this.carry;
    while (buf.length) {
      const cut = cutPoint(buf, true);
      yield buf.subarray(0, cut);
      buf = buf.subarray(cut);
    }
    this.carry = Buffer.alloc(0);
  }
}
