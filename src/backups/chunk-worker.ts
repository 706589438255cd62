import { parentPort } from 'node:worker_threads';
import { packChunk, sha256, unpackChunk } from './chunk-codec.js';
import type { Control, Job, Reply } from './chunk-pool.js';
import { candidatesOf } from './chunker.js';
import { chunkId } from './crypto.js';

/**
 * A chunk worker thread (chunk-pool.ts): finds cut candidates in blocks,
 * hashes, compresses and seals chunks for a backup, or checks and opens them
 * for a restore. It holds copies of each running operation's keys (a
 * session) and wipes them when the session ends.
 */
const port = parentPort;
if (!port) throw new Error('chunk-worker.ts runs only as a worker thread');
const buf = (u: Uint8Array) => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

interface Session {
  idKey: Buffer;
  key: Buffer | null;
  keyId: string | null;
  keys: Map<string, Buffer>;
  known: Set<string>;
}
const sessions = new Map<number, Session>();

/** A buffer whose memory can move to the main thread: whole ArrayBuffers only (small Buffers share a pool). */
const movable = (b: Buffer): [Uint8Array, ArrayBuffer[]] =>
  b.byteOffset === 0 && b.byteLength === b.buffer.byteLength && b.buffer instanceof ArrayBuffer
    ? [b, [b.buffer]]
    : [new Uint8Array(b), []];

function run(job: Job, s: Session): [Reply, ArrayBuffer[]] {
  switch (job.op) {
    case 'pack': {
      const plain = buf(job.plain);
      const id = chunkId(s.idKey, plain);
      if (s.known.has(id) || !s.key || !s.keyId) return [{ n: job.n, id, blob: null, sha: null }, []];
      const blob = packChunk(plain, id, s.key, s.keyId);
      const [b, moved] = movable(blob);
      return [{ n: job.n, id, blob: b, sha: sha256(blob) }, moved];
    }
    case 'open': {
      const [plain, moved] = movable(unpackChunk(buf(job.blob), job.id, job.sha, s.keys, s.idKey));
      return [{ n: job.n, plain }, moved];
    }
    case 'hash':
      return [{ n: job.n, sha: sha256(job.blob) }, []];
    case 'cands': {
      const [block, moved] = movable(buf(job.block));
      return [{ n: job.n, cands: candidatesOf(job.history, job.block), block }, moved];
    }
  }
}

port.on('message', (msg: Job | Control) => {
  if (msg.op === 'begin') {
    const x = msg.secrets;
    sessions.set(msg.s, {
      idKey: buf(x.idKey),
      key: x.key ? buf(x.key) : null,
      keyId: x.keyId,
      keys: new Map(x.keys.map(([id, k]) => [id, buf(k)] as const)),
      known: new Set(x.known),
    });
    return;
  }
  if (msg.op === 'end') {
    const s = sessions.get(msg.s);
    sessions.delete(msg.s);
    s?.idKey.fill(0);
    s?.key?.fill(0);
    for (const k of s?.keys.values() ?? []) k.fill(0);
    return;
  }
  try {
    const s = sessions.get(msg.s);
    if (!s) throw new Error('the backup chunk pool session has ended');
    const [reply, moved] = run(msg, s);
    port.postMessage(reply, moved);
  } catch (err) {
    const e = err as Error & { kind?: string };
    port.postMessage({ n: msg.n, error: { message: e.message, kind: e.kind ?? null } } satisfies Reply);
  }
});
