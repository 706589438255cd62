import { parentPort, workerData } from 'node:worker_threads';
import { packChunk, sha256, unpackChunk } from './chunk-codec.js';
import type { Job, Reply, WorkerSecrets } from './chunk-pool.js';
import { candidates } from './chunker.js';
import { chunkId } from './crypto.js';

/**
 * A chunk worker thread (chunk-pool.ts): finds cut candidates in blocks,
 * hashes, compresses and seals chunks
 * for a backup, or checks and opens them for a restore. It holds copies of
 * one operation's keys and wipes them when told to close.
 */
const port = parentPort;
if (!port) throw new Error('chunk-worker.ts runs only as a worker thread');
const secrets = workerData as WorkerSecrets;
const buf = (u: Uint8Array) => Buffer.from(u.buffer, u.byteOffset, u.byteLength);
const idKey = buf(secrets.idKey);
const key = secrets.key ? buf(secrets.key) : null;
const keys = new Map(secrets.keys.map(([id, k]) => [id, buf(k)] as const));
const known = new Set(secrets.known);

/** A buffer whose memory can move to the main thread: whole ArrayBuffers only (small Buffers share a pool). */
const movable = (b: Buffer): [Uint8Array, ArrayBuffer[]] =>
  b.byteOffset === 0 && b.byteLength === b.buffer.byteLength && b.buffer instanceof ArrayBuffer
    ? [b, [b.buffer]]
    : [new Uint8Array(b), []];

function run(job: Job): [Reply, ArrayBuffer[]] {
  switch (job.op) {
    case 'pack': {
      const plain = buf(job.plain);
      const id = chunkId(idKey, plain);
      if (known.has(id) || !key || !secrets.keyId) return [{ n: job.n, id, blob: null, sha: null }, []];
      const blob = packChunk(plain, id, key, secrets.keyId);
      const [b, moved] = movable(blob);
      return [{ n: job.n, id, blob: b, sha: sha256(blob) }, moved];
    }
    case 'open': {
      const [plain, moved] = movable(unpackChunk(buf(job.blob), job.id, job.sha, keys, idKey));
      return [{ n: job.n, plain }, moved];
    }
    case 'hash':
      return [{ n: job.n, sha: sha256(job.blob) }, []];
    case 'cands':
      return [{ n: job.n, cands: candidates(job.buf, job.from) }, []];
  }
}

port.on('message', (job: Job | { op: 'close' }) => {
  if (job.op === 'close') {
    idKey.fill(0);
    key?.fill(0);
    for (const k of keys.values()) k.fill(0);
    port.close();
    return;
  }
  try {
    const [reply, moved] = run(job);
    port.postMessage(reply, moved);
  } catch (err) {
    const e = err as Error & { kind?: string };
    port.postMessage({ n: job.n, error: { message: e.message, kind: e.kind ?? null } } satisfies Reply);
  }
});
