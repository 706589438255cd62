import { createHash } from 'node:crypto';

/**
 * Content-defined chunking (FastCDC's gear hash with normalised chunking,
 * Xia et al., USENIX ATC 2016): a cut falls where the rolling hash's top bits
 * are zero, so an insertion or change moves only the cuts near it and every
 * other chunk keeps its bytes, and its name, across backups.
 *
 * The gear hash shifts left one bit a byte, so after 32 bytes it depends only
 * on the last 32: whether a position can be a cut is a property of its window
 * alone. That part, the per-byte work, runs on blocks in parallel in the chunk
 * workers (`candidates`); choosing the cuts from them is sequential and cheap
 * (`Chunker`), and gives exactly the cuts of the one-pass loop (the hash starts
 * from zero at the minimum size; the first 31 positions after it are hashed
 * here, as the loop would).
 */
export const CHUNK_MIN = 256 * 1024;
export const CHUNK_AVG = 1024 * 1024;
export const CHUNK_MAX = 4 * 1024 * 1024;

/** Harder mask before the average size, easier after (normalisation level 2): sizes cluster at the average. */
const MASK_S = 0xfffffc00; // top 22 bits
const MASK_L = 0xffffc000; // top 18 bits
/** Bytes a hash value depends on. */
export const WINDOW = 32;

/** 256 fixed pseudo-random words; fixed forever, or every chunk of an existing repository would move. */
const GEAR = (() => {
  const g = new Uint32Array(256);
  for (let i = 0; i < 256; i++)
    g[i] = createHash('sha256').update(`bulwark-gear-${i}`).digest().readUInt32BE(0);
  return g;
})();

/**
 * Cut candidates of `buf[from..]`, where `buf` holds the `from` bytes before
 * them (up to WINDOW - 1, fewer at the start of a disk): each is `2p + s` for
 * a position `p` (relative to `from`; a cut there ends a chunk after byte p)
 * whose window hash passes the easy mask, `s` = 1 when it passes the hard one too.
 */
export function candidates(buf: Uint8Array, from: number): number[] {
  const out: number[] = [];
  let h = 0;
  for (let i = 0; i < buf.length; i++) {
    h = ((h << 1) + (GEAR[buf[i]!] as number)) >>> 0;
    if ((h & MASK_L) === 0 && i >= from) out.push(2 * (i - from) + ((h & MASK_S) === 0 ? 1 : 0));
  }
  return out;
}

/** The last WINDOW - 1 bytes of a stream that ended with `before` and then `block`. */
export const tailOf = (before: Buffer, block: Buffer): Buffer =>
  block.length >= WINDOW - 1
    ? Buffer.from(block.subarray(block.length - (WINDOW - 1)))
    : Buffer.concat([before, block]).subarray(-(WINDOW - 1));

/** A window of zeros passes neither mask, so a zero block has candidates only where its window reaches back before it. */
if (candidates(new Uint8Array(WINDOW * 2), 0).length !== 0) throw new Error('zero window makes a cut');

/**
 * Splits a stream of blocks into content-defined chunks, given each block's
 * candidates (see `candidates`; computed here when not given). Chunks are
 * subarrays of the carried buffer: use (or copy) each before the next push.
 */
export class Chunker {
  private carry: Buffer = Buffer.alloc(0);
  /** Absolute stream offset of carry[0]. */
  private at = 0;
  /** Candidates (absolute `2p + s`) at or after `at`, in order. */
  private cands: number[] = [];
  /** The last WINDOW - 1 bytes of the stream so far. */
  private tail: Buffer = Buffer.alloc(0);

  /** Nothing carried over: the next block starts a chunk. */
  get idle(): boolean {
    return this.carry.length === 0;
  }

  /** Chunks completed by `block`; the tail waits for more bytes. */
  *push(block: Buffer, blockCands?: number[]): Generator<Buffer> {
    const start = this.at + this.carry.length;
    const found = blockCands ?? candidates(Buffer.concat([this.tail, block]), this.tail.length);
    for (const c of found) this.cands.push(c + 2 * start);
    this.tail = tailOf(this.tail, block);
    let buf = this.carry.length ? Buffer.concat([this.carry, block]) : block;
    for (;;) {
      const cut = this.cut(buf, false);
      if (cut < 0) break;
      yield buf.subarray(0, cut);
      buf = buf.subarray(cut);
      this.advance(cut);
    }
    this.carry = Buffer.from(buf); // own the tail: the caller may reuse `block`
  }

  /** Takes a whole CHUNK_MAX zero block as one chunk (only when idle; the caller names it). */
  skipZero(block: Buffer): void {
    if (!this.idle) throw new Error('skipZero while a chunk is open');
    this.at += block.length;
    this.tail = tailOf(this.tail, block);
    this.cands = [];
  }

  /** The last chunks, at the end of the stream. */
  *finish(): Generator<Buffer> {
    let buf = this.carry;
    while (buf.length) {
      const cut = this.cut(buf, true);
      yield buf.subarray(0, cut);
      buf = buf.subarray(cut);
      this.advance(cut);
    }
    this.carry = Buffer.alloc(0);
  }

  private advance(n: number): void {
    this.at += n;
    let k = 0;
    while (k < this.cands.length && this.cands[k]! < 2 * this.at) k++;
    if (k) this.cands.splice(0, k);
  }

  /** Length of the first chunk of `buf` (which starts at `at`), or -1 when more bytes must come first. */
  private cut(buf: Buffer, final: boolean): number {
    const n = buf.length;
    if (n <= CHUNK_MIN) return final ? n : -1;
    const end = Math.min(n, CHUNK_MAX);
    const mid = Math.min(end, CHUNK_AVG);
    // The hash restarts at CHUNK_MIN: until its window is full it differs from the window hash.
    let h = 0;
    const warm = Math.min(end, CHUNK_MIN + WINDOW - 1);
    for (let i = CHUNK_MIN; i < warm; i++) {
      h = ((h << 1) + (GEAR[buf[i]!] as number)) >>> 0;
      if ((h & (i < mid ? MASK_S : MASK_L)) === 0) return i + 1;
    }
    for (const c of this.cands) {
      const p = Math.floor(c / 2) - this.at;
      if (p < warm) continue;
      if (p >= end) break;
      if (p >= mid || c % 2 === 1) return p + 1;
    }
    if (end === CHUNK_MAX) return CHUNK_MAX;
    return final ? n : -1; // not enough bytes yet to decide
  }
}
