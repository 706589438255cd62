import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { BulwarkError, type ErrorKind, ErrorKinds } from '../errors.js';

/**
 * A small pool of worker threads for the per-chunk work of a backup or
 * restore (FastCDC's rolling hash, HMAC naming, compression, AES-GCM,
 * SHA-256), so it runs on every
 * CPU while the calling thread reads, chunks, writes and keeps the order.
 * The threads are shared; each operation is a session whose keys they hold
 * until it closes.
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

/** A job of session `s`, answered by a Reply with the same `n`. */
export type Job =
  | { n: number; s: number; op: 'pack'; plain: Uint8Array }
  | { n: number; s: number; op: 'open'; id: string; sha: string; blob: Uint8Array }
  | { n: number; s: number; op: 'hash'; blob: Uint8Array }
  | { n: number; s: number; op: 'cands'; history: Uint8Array; block: Uint8Array };

export type Control = { op: 'begin'; s: number; secrets: WorkerSecrets } | { op: 'end'; s: number };

export type Reply =
  | { n: number; id: string; blob: Uint8Array | null; sha: string | null }
  | { n: number; plain: Uint8Array }
  | { n: number; sha: string }
  | { n: number; cands: number[]; block: Uint8Array }
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
  slot: { w: Worker; busy: number };
  session: number;
}

/**
 * The worker threads, started once per process (a thread costs tens of ms to
 * start, and far more under the test runner's TypeScript hooks); idle, they
 * do not keep the process alive. A thread that fails breaks the set;
 * the next operation starts a new one.
 */
class Workers {
  readonly list: { w: Worker; busy: number }[] = [];
  readonly pending = new Map<number, Pending>();
  broken: Error | null = null;
  next = 0;
  private open = 0;

  constructor(size: number) {
    for (let i = 0; i < size; i++) {
      const w = new Worker(WORKER);
      w.unref();
      w.on('message', (r: Reply) => this.settle(r));
      w.on('error', (e) => this.fail(w, e));
      w.on('exit', (code) => this.fail(w, new Error(`a backup chunk worker exited with code ${code}`)));
      this.list.push({ w, busy: 0 });
    }
  }

  private settle(r: Reply): void {
    const p = this.pending.get(r.n);
    if (!p) return; // its session was closed
    this.drop(r.n, p);
    if ('error' in r) {
      const { kind, message } = r.error;
      p.reject(
        kind && kind in ErrorKinds ? new BulwarkError(kind as ErrorKind, message) : new Error(message),
      );
    } else p.resolve(r);
  }

  /** Forgets job `n` (answered, failed or abandoned). */
  drop(n: number, p: Pending): void {
    this.pending.delete(n);
    p.slot.busy--;
  }

  private fail(w: Worker, e: Error): void {
    this.broken ??= e;
    for (const [n, p] of this.pending)
      if (p.slot.w === w) {
        this.drop(n, p);
        p.reject(e);
      }
  }

  /** Sends a job to the least busy worker; `moved` buffers go with it (the caller must not use them again). */
  run(session: number, job: Job, moved: ArrayBuffer[]): Promise<Reply> {
    if (this.broken) return Promise.reject(this.broken);
    let slot = this.list[0]!;
    for (const x of this.list) if (x.busy < slot.busy) slot = x;
    slot.busy++;
    return new Promise<Reply>((resolve, reject) => {
      this.pending.set(job.n, { resolve, reject, slot, session });
      slot.w.postMessage(job, moved);
    });
  }

  /** Tells every worker, in order with its jobs; while a session is open the threads keep the process alive. */
  broadcast(msg: Control): void {
    this.open += msg.op === 'begin' ? 1 : -1;
    for (const { w } of this.list) {
      w.postMessage(msg);
      if (this.open > 0) w.ref();
      else w.unref();
    }
  }
}

let shared: Workers | null = null;
let sessions = 0;

/**
 * One backup, verify or restore's use of the worker threads: they hold
 * copies of its keys from construction until `close`, which wipes them.
 */
export class ChunkPool {
  private readonly workers: Workers;
  private readonly id = ++sessions;
  private closed = false;

  constructor(secrets: WorkerSecrets) {
    if (!shared || shared.broken) shared = new Workers(POOL_SIZE);
    this.workers = shared;
    this.workers.broadcast({ op: 'begin', s: this.id, secrets });
  }

  private run<R extends Reply>(op: DistributiveOmit<Job, 'n' | 's'>, moved: ArrayBuffer[]): Promise<R> {
    if (this.closed) return Promise.reject(new Error('the backup chunk pool was closed'));
    const job = { ...op, n: this.workers.next++, s: this.id } as Job;
    return this.workers.run(this.id, job, moved) as Promise<R>;
  }

  /**
   * The chunk's id, and its sealed object and that object's sha256 unless it
   * is already stored. `plain` moves to the worker when it owns its memory
   * (the chunker's chunks do): the caller must not use it again.
   */
  async pack(plain: Buffer): Promise<{ id: string; blob: Buffer | null; sha: string | null }> {
    const [u, moved] = own(plain);
    const r = await this.run<Extract<Reply, { id: string }>>({ op: 'pack', plain: u }, moved);
    return { id: r.id, blob: r.blob && buf(r.blob), sha: r.sha };
  }

  /**
   * The cut candidates of `block` (chunker.ts#candidatesOf), `history` being
   * the stream's bytes before it. The block goes to the worker and comes
   * back (moved both ways, not copied, when it owns its memory): use the
   * returned one, not `block`.
   */
  async candidates(history: Buffer, block: Buffer): Promise<{ cands: number[]; block: Buffer }> {
    const [u, moved] = own(block);
    const r = await this.run<Extract<Reply, { cands: number[] }>>(
      { op: 'cands', history: new Uint8Array(history), block: u },
      moved,
    );
    return { cands: r.cands, block: buf(r.block) };
  }

  /** A stored chunk's checked plaintext (chunk-codec.ts#unpackChunk). */
  async open(id: string, sha: string, blob: Buffer): Promise<Buffer> {
    const [u, moved] = own(blob);
    const r = await this.run<Extract<Reply, { plain: Uint8Array }>>({ op: 'open', id, sha, blob: u }, moved);
    return buf(r.plain);
  }

  async sha256(blob: Buffer): Promise<string> {
    const [u, moved] = own(blob);
    const r = await this.run<Extract<Reply, { sha: string }>>({ op: 'hash', blob: u }, moved);
    return r.sha;
  }

  /** Has every worker wipe this operation's keys; its jobs still pending fail. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const closed = new Error('the backup chunk pool was closed');
    for (const [n, p] of this.workers.pending)
      if (p.session === this.id) {
        this.workers.drop(n, p);
        p.reject(closed);
      }
    this.workers.broadcast({ op: 'end', s: this.id });
  }
}

type DistributiveOmit<T, K extends keyof T> = T extends unknown ? Omit<T, K> : never;

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
