import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { BulwarkError, type ErrorKind, ErrorKinds } from '../errors.js';

/**
 * A small pool of worker threads for the per-chunk work of a backup or
 * restore (FastCDC's rolling hash, HMAC naming, compression, AES-GCM,
 * SHA-256), so it runs on every
 * CPU while the calling thread reads, chunks, writes and keeps the order.
 * One pool per operation: its workers hold that operation's keys and wipe
 * them at close.
 */

export interface WorkerSecrets {
  idKey: Uint8Array;
  /** The data key new chunks are sealed under (backups only). */
  key: Uint8Array | null;
  keyId: string | null;
  /** Data keys by id, to open stored chunks (restores and verifies). */
  keys: [string, Uint8Array][];
  /** Chunk ids already stored: a pack of one of these only names it. */
  known: string[];
}

export type Job =
  | { n: number; op: 'pack'; plain: Uint8Array }
  | { n: number; op: 'open'; id: string; sha: string; blob: Uint8Array }
  | { n: number; op: 'hash'; blob: Uint8Array }
  | { n: number; op: 'cands'; buf: Uint8Array; from: number };

export type Reply =
  | { n: number; id: string; blob: Uint8Array | null; sha: string | null }
  | { n: number; plain: Uint8Array }
  | { n: number; sha: string }
  | { n: number; cands: number[] }
  | { n: number; error: { message: string; kind: string | null } };

/** Sized to the CPUs (at most 4: beyond that the reads and writes are the limit). */
export const POOL_SIZE = Math.max(1, Math.min(4, availableParallelism()));

// Built code runs the compiled worker; source run under the test runner, the .ts one (test/setup/ts-loader.mjs).
const WORKER = new URL(
  import.meta.url.endsWith('.ts') ? './chunk-worker.ts' : './chunk-worker.js',
  import.meta.url,
);

const buf = (u: Uint8Array) => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

/** `b` itself when it owns its whole ArrayBuffer (it then moves to the worker), else a copy that does. */
const own = (b: Buffer): [Uint8Array, ArrayBuffer[]] => {
  const u =
    b.byteOffset === 0 && b.byteLength === b.buffer.byteLength && b.buffer instanceof ArrayBuffer
      ? b
      : new Uint8Array(b);
  return [u, [u.buffer as ArrayBuffer]];
};

interface Pending {
  resolve: (r: Reply) => void;
  reject: (e: Error) => void;
  worker: number;
}

export class ChunkPool {
  private readonly workers: { w: Worker; busy: number }[] = [];
  private readonly pending = new Map<number, Pending>();
  private next = 0;
  private broken: Error | null = null;

  constructor(secrets: WorkerSecrets, size = POOL_SIZE) {
    for (let i = 0; i < size; i++) {
      const w = new Worker(WORKER, { workerData: secrets });
      w.on('message', (r: Reply) => this.settle(r));
      w.on('error', (e) => this.fail(i, e));
      w.on('exit', (code) => {
        if (code !== 0) this.fail(i, new Error(`a backup chunk worker exited with code ${code}`));
      });
      this.workers.push({ w, busy: 0 });
    }
  }

  private settle(r: Reply): void {
    const p = this.pending.get(r.n);
    if (!p) return;
    this.pending.delete(r.n);
    this.workers[p.worker]!.busy--;
    if ('error' in r) {
      const { kind, message } = r.error;
      p.reject(
        kind && kind in ErrorKinds ? new BulwarkError(kind as ErrorKind, message) : new Error(message),
      );
    } else p.resolve(r);
  }

  private fail(worker: number, e: Error): void {
    this.broken ??= e;
    for (const [n, p] of this.pending)
      if (p.worker === worker) {
        this.pending.delete(n);
        p.reject(e);
      }
  }

  /** Sends a job to the least busy worker; `data` moves there (the caller must not use it again). */
  private run<R extends Reply>(job: Job, moved: ArrayBuffer[]): Promise<R> {
    if (this.broken) return Promise.reject(this.broken);
    let wi = 0;
    for (let i = 1; i < this.workers.length; i++) if (this.workers[i]!.busy < this.workers[wi]!.busy) wi = i;
    const slot = this.workers[wi]!;
    slot.busy++;
    return new Promise<R>((resolve, reject) => {
      this.pending.set(job.n, { resolve: resolve as (r: Reply) => void, reject, worker: wi });
      slot.w.postMessage(job, moved);
    });
  }

  /** The chunk's id, and its sealed object and that object's sha256 unless it is already stored. */
  async pack(plain: Buffer): Promise<{ id: string; blob: Buffer | null; sha: string | null }> {
    const u = new Uint8Array(plain); // a copy: chunks are views of the caller's read buffers
    const r = await this.run<Extract<Reply, { id: string }>>({ n: this.next++, op: 'pack', plain: u }, [
      u.buffer,
    ]);
    return { id: r.id, blob: r.blob && buf(r.blob), sha: r.sha };
  }

  /** The cut candidates of `block` (chunker.ts#candidates), `history` being the stream's bytes before it. */
  async candidates(history: Buffer, block: Buffer): Promise<number[]> {
    const u = new Uint8Array(history.length + block.length);
    u.set(history);
    u.set(block, history.length);
    const r = await this.run<Extract<Reply, { cands: number[] }>>(
      { n: this.next++, op: 'cands', buf: u, from: history.length },
      [u.buffer],
    );
    return r.cands;
  }

  /** A stored chunk's checked plaintext (chunk-codec.ts#unpackChunk). */
  async open(id: string, sha: string, blob: Buffer): Promise<Buffer> {
    const [u, moved] = own(blob);
    const r = await this.run<Extract<Reply, { plain: Uint8Array }>>(
      { n: this.next++, op: 'open', id, sha, blob: u },
      moved,
    );
    return buf(r.plain);
  }

  async sha256(blob: Buffer): Promise<string> {
    const [u, moved] = own(blob);
    const r = await this.run<Extract<Reply, { sha: string }>>({ n: this.next++, op: 'hash', blob: u }, moved);
    return r.sha;
  }

  /** Tells each worker to wipe its keys and stop; anything still pending fails. */
  async close(): Promise<void> {
    const closed = new Error('the backup chunk pool was closed');
    this.broken ??= closed;
    for (const [n, p] of this.pending) {
      this.pending.delete(n);
      p.reject(closed);
    }
    await Promise.all(
      this.workers.map(
        ({ w }) =>
          new Promise<void>((done) => {
            w.once('exit', () => done());
            w.postMessage({ op: 'close' });
            // A worker busy with a chunk reads the close after it; one that hangs is stopped.
            setTimeout(() => void w.terminate(), 5000).unref();
          }),
      ),
    );
  }
}

/**
 * Results taken in the order they were started, with at most `depth` in
 * flight: the pool works ahead while the caller writes in order.
 */
export class InOrder<R> {
  private readonly queue: Promise<R>[] = [];

  constructor(
    private readonly depth: number,
    private readonly take: (r: R) => Promise<void> | void,
  ) {}

  async push(p: Promise<R>): Promise<void> {
    p.catch(() => undefined); // awaited in turn below; a failure must not count as unhandled first
    this.queue.push(p);
    while (this.queue.length > this.depth) await this.take(await this.queue.shift()!);
  }

  async flush(): Promise<void> {
    while (this.queue.length) await this.take(await this.queue.shift()!);
  }
}
