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
 * Cut candidates of `block`, `history` being the stream's bytes just before
 * it (up to WINDOW - 1, fewer at the start of a disk): each is `2p + s` for a
 * position `p` in `block` (a cut there ends a chunk after byte p) whose window
 * hash passes the easy mask, `s` = 1 when it passes the hard one too.
 */
export function candidatesOf(history: Uint8Array, block: Uint8Array): number[] {
  const out: number[] = [];
  let h = 0;
  for (let i = 0; i < history.length; i++) h = ((h << 1) + (GEAR[history[i]!] as number)) >>> 0;
  for (let i = 0; i < block.length; i++) {
    h = ((h << 1) + (GEAR[block[i]!] as number)) >>> 0;
    if ((h & MASK_L) === 0) out.push(2 * i + ((h & MASK_S) === 0 ? 1 : 0));
  }
  return out;
}

/** `candidatesOf` for `buf[from..]`, `buf[..from]` being the history. */
export const candidates = (buf: Uint8Array, from: number): number[] =>
  candidatesOf(buf.subarray(0, from), buf.subarray(from));

/** The last WINDOW - 1 bytes of a stream that ended with `before` and then `block`. */
export const tailOf = (before: Buffer, block: Buffer): Buffer =>
  block.length >= WINDOW - 1
    ? Buffer.from(block.subarray(block.length - (WINDOW - 1)))
    : Buffer.concat([before, block]).subarray(-(WINDOW - 1));

/** A window of zeros passes neither mask, so a zero block has candidates only where its window reaches back before it. */
if (candidates(new Uint8Array(WINDOW * 2), 0).length !== 0) throw new Error('zero window makes a cut');

/**
 * Splits a stream of blocks into content-defined chunks, given each block's
 * candidates (see `candidates`; computed here when not given). Blocks are
 * kept by reference until their last byte is in a chunk (the caller must not
 * change them); each chunk is copied once, into a buffer of its own that the
 * caller may move to a worker thread.
 */
export class Chunker {
  /** The bytes not yet in a chunk: views of the pushed blocks, in order. */
  private parts: Buffer[] = [];
  private carried = 0;
  /** Absolute stream offset of the first carried byte. */
  private at = 0;
  /** Candidates (absolute `2p + s`) at or after `at`, in order. */
  private cands: number[] = [];
  /** The last WINDOW - 1 bytes of the stream so far. */
  private tail: Buffer = Buffer.alloc(0);

  /** Nothing carried over: the next block starts a chunk. */
  get idle(): boolean {
    return this.carried === 0;
  }

  /** Chunks completed by `block`; the tail waits for more bytes. */
  *push(block: Buffer, blockCands?: number[]): Generator<Buffer> {
    const start = this.at + this.carried;
    const found = blockCands ?? candidatesOf(this.tail, block);
    for (const c of found) this.cands.push(c + 2 * start);
    this.tail = tailOf(this.tail, block);
    if (block.length) this.parts.push(block);
    this.carried += block.length;
    for (;;) {
      const cut = this.cut(false);
      if (cut < 0) break;
      yield this.take(cut);
    }
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
    while (this.carried) yield this.take(this.cut(true));
  }

  /** The first `n` carried bytes as a chunk of its own. */
  private take(n: number): Buffer {
    const out = Buffer.allocUnsafeSlow(n);
    for (let got = 0; got < n; ) {
      const p = this.parts[0]!;
      const k = Math.min(p.length, n - got);
      p.copy(out, got, 0, k);
      got += k;
      if (k === p.length) this.parts.shift();
      else this.parts[0] = p.subarray(k);
    }
    this.carried -= n;
    this.at += n;
    let k = 0;
    while (k < this.cands.length && this.cands[k]! < 2 * this.at) k++;
    if (k) this.cands.splice(0, k);
    return out;
  }

  /** Carried bytes `from` to `to` (a few), wherever the parts split them. */
  private bytes(from: number, to: number): Buffer {
    const out = Buffer.alloc(to - from);
    let base = 0;
    for (const p of this.parts) {
      const lo = Math.max(from, base);
      const hi = Math.min(to, base + p.length);
      if (lo < hi) p.copy(out, lo - from, lo - base, hi - base);
      base += p.length;
      if (base >= to) break;
    }
    return out;
  }

  /** Length of the first chunk of the carried bytes (which start at `at`), or -1 when more bytes must come first. */
  private cut(final: boolean): number {
    const n = this.carried;
    if (n <= CHUNK_MIN) return final ? n : -1;
    const end = Math.min(n, CHUNK_MAX);
    const mid = Math.min(end, CHUNK_AVG);
    // The hash restarts at CHUNK_MIN: until its window is full it differs from the window hash.
    let h = 0;
    const warm = Math.min(end, CHUNK_MIN + WINDOW - 1);
    const w = this.bytes(CHUNK_MIN, warm);
    for (let i = CHUNK_MIN; i < warm; i++) {
      h = ((h << 1) + (GEAR[w[i - CHUNK_MIN]!] as number)) >>> 0;
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
