import { type KeyObject, randomBytes } from 'node:crypto';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import type { FileStamp } from '../host/disk-export.js';
import { sha256 } from './chunk-codec.js';
import { ChunkPool, InOrder, POOL_SIZE } from './chunk-pool.js';
import { CHUNK_MAX, Chunker, candidates, tailOf, WINDOW } from './chunker.js';
import {
  chunkId,
  INDEX_MAGIC,
  integrityError,
  open,
  seal,
  sealedKeyId,
  unwrapWithRecoveryKey,
  type WrappedKey,
  wrapForRecipient,
} from './crypto.js';
import type { BackupTarget } from './target.js';
import {
  nowNs,
  openRecord,
  recordName,
  sealRecord,
  type UnchangedDisk,
  vouches,
  whyNotReuse,
} from './unchanged.js';

/**
 * An encrypted, deduplicating backup repository (docs/backups.md):
 *
 *   config                 recipient public key; the chunk-id key wrapped for it
 *   keys/<key id>          one backup's data key, wrapped for the recipient
 *   chunks/<xx>/<chunk id> sealed(flag | brotli?(plaintext)), id = HMAC(id key, plaintext)
 *                          (flag 0 stored, 2 brotli; 1 deflate in repositories written before brotli)
 *   backups/<id>.index     sealed list of each disk's chunks (the restore recipe)
 *   backups/<id>.seal      chunk id -> sha256 of its stored object and key id (no secrets;
 *                          its own sha256 is kept in the database)
 *
 * Writing needs only the recipient's public key and the chunk-id key;
 * reading anything back needs the recovery private key.
 */

export interface DiskSource {
  name: string;
  size: number;
  read(offset: number, length: number): Promise<Buffer>;
  /** The disk's file, when the host vouches for it: an unchanged one is not read again (unchanged.ts). */
  unchanged?: { source: string; stamp(): Promise<FileStamp> };
}

export interface DiskSink {
  write(offset: number, data: Buffer): Promise<void>;
}

export interface Seal {
  v: 1;
  backup: string;
  key_id: string;
  index_sha256: string;
  /** chunk id -> [sha256 of the stored object, key id] */
  chunks: Record<string, [string, string]>;
}

export interface BackupStats {
  /** Plaintext bytes read from the disks. */
  bytes: number;
  chunks: number;
  newChunks: number;
  /** Bytes this backup added to the repository. */
  storedBytes: number;
  /** Per disk: read, or its chunk list reused from backup `since`; and why. */
  disks: { name: string; read: boolean; why: string }[];
}

export interface VerifyReport {
  chunks: number;
  /** True when every chunk was also decrypted and its HMAC checked (recovery key given). */
  decrypted: boolean;
  disks: { name: string; size: number }[];
}

interface Packed {
  id: string;
  len: number;
  blob: Buffer | null;
  sha: string | null;
}

interface Index {
  v: 1;
  backup: string;
  /** `unchanged_since`: the disk was not read, its file being as backup X read it (unchanged.ts). */
  disks: { name: string; size: number; chunks: [string, number][]; unchanged_since?: string }[];
}

const READ_BLOCK = 4 * 1024 * 1024;
/** Chunks in flight between this thread and the pool (each up to 4 MiB, twice: plaintext and sealed). */
const DEPTH = 2 * POOL_SIZE + 2;
const chunkName = (id: string) => `chunks/${id.slice(0, 2)}/${id}`;
const ZEROS = Buffer.alloc(READ_BLOCK * 2);
// Zeros never make a cut (chunker.ts checks a zero window passes no mask), so a zero block that
// starts a chunk is a whole CHUNK_MAX chunk: the chunker would cut it there too. Unwritten disk
// space then costs one compare per 4 MiB.
if (READ_BLOCK !== CHUNK_MAX) throw new Error('zero fast path broken');
const isZero = (b: Buffer) => b.length <= ZEROS.length && b.equals(ZEROS.subarray(0, b.length));

export class Repository {
  /** Writes that touch shared chunks (backup, delete) run one at a time. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    readonly target: BackupTarget,
    /** The recovery public key (X25519, base64). */
    private readonly recipient: string,
  ) {}

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Writes the config object; the chunk-id key goes in wrapped for the recipient (offline tools can verify). */
  async init(idKey: Buffer): Promise<void> {
    const config = {
      v: 1,
      recipient: this.recipient,
      id_key: wrapForRecipient(idKey, 'id-key', this.recipient),
    };
    await this.target.put('config', Buffer.from(JSON.stringify(config)));
  }

  /** The seals of the backups the database vouches for, each checked against its recorded sha256. */
  private async seals(known: { id: string; sealSha256: string }[]): Promise<Seal[]> {
    const out: Seal[] = [];
    for (const k of known) out.push(await this.readSeal(k.id, k.sealSha256));
    return out;
  }

  async readSeal(backupId: string, sealSha256: string): Promise<Seal> {
    const blob = await this.target.get(`backups/${backupId}.seal`);
    if (sha256(blob) !== sealSha256) throw integrityError(`the chunk list of backup ${backupId} was altered`);
    return JSON.parse(blob.toString()) as Seal;
  }

  /**
   * Backs up `disks`: chunks already in the repository (named by any live
   * backup's seal) are skipped; new ones are compressed, sealed under a new
   * data key and stored. This thread reads and cuts; a worker pool names,
   * compresses and seals, and results are stored in disk order. Returns the
   * seal's sha256 for the database. A disk whose file is as backup `since`
   * (the previous backup of the same source, live) recorded it is not read:
   * that backup's chunk list is reused (unchanged.ts).
   */
  backup(
    backupId: string,
    idKey: Buffer,
    disks: DiskSource[],
    live: { id: string; sealSha256: string }[],
    progress: (done: number, total: number) => void = () => undefined,
    since: string | null = null,
  ): Promise<{ sealSha256: string; stats: BackupStats }> {
    return this.exclusive(async () => {
      const known = new Map<string, [string, string]>();
      for (const s of await this.seals(live))
        for (const [id, v] of Object.entries(s.chunks)) known.set(id, v);
      const previous = await this.unchangedRecord(idKey, since, live);
      const records: UnchangedDisk[] = [];
      const keyId = randomBytes(16).toString('hex');
      const key = randomBytes(32);
      const pool = new ChunkPool({ idKey, key, keyId, keys: [], known: [...known.keys()] });
      try {
        await this.target.put(
          `keys/${keyId}`,
          Buffer.from(JSON.stringify(wrapForRecipient(key, keyId, this.recipient))),
        );
        const sealed: Seal = { v: 1, backup: backupId, key_id: keyId, index_sha256: '', chunks: {} };
        const index: Index = { v: 1, backup: backupId, disks: [] };
        const stats: BackupStats = { bytes: 0, chunks: 0, newChunks: 0, storedBytes: 0, disks: [] };
        let done = 0;
        const total = disks.reduce((n, d) => n + d.size, 0);
        const zeroId = chunkId(idKey, ZEROS.subarray(0, CHUNK_MAX));
        let zeroSent = false;
        let list: [string, number][] = [];
        const stored = new InOrder<Packed>(DEPTH, async ({ id, len, blob, sha }) => {
          list.push([id, len]);
          stats.chunks++;
          const have = known.get(id);
          if (have) {
            sealed.chunks[id] = have; // stored before, or earlier in this backup
            return;
          }
          // A worker leaves unsealed only what `known` held when it started.
          if (!blob || !sha) throw new Error(`chunk ${id} came back from the pool unsealed`);
          await this.target.put(chunkName(id), blob);
          const entry: [string, string] = [sha, keyId];
          known.set(id, entry);
          sealed.chunks[id] = entry;
          stats.newChunks++;
          stats.storedBytes += blob.length;
        });
        const store = (plain: Buffer) => {
          const len = plain.length;
          return stored.push(pool.pack(plain).then((r) => ({ ...r, len })));
        };
        /** Reads, cuts and stores the whole of `disk`, its chunks listed in `list`. */
        const readWhole = async (disk: DiskSource) => {
          const chunker = new Chunker();
          // Blocks in disk order, their cut candidates found in the pool meanwhile (null: a zero block,
          // whose candidates, if any, are near its start and found here).
          const cut = new InOrder<{ block: Buffer; cands: number[] | null; history: Buffer }>(
            POOL_SIZE + 1,
            async ({ block, cands, history }) => {
              const n = block.length; // before the block may move to a worker
              if (!cands && chunker.idle && n === CHUNK_MAX) {
                chunker.skipZero(block);
                // After the first, a zero chunk needs no worker: it has the first one's name.
                if (zeroSent || known.has(zeroId))
                  await stored.push(Promise.resolve({ id: zeroId, len: CHUNK_MAX, blob: null, sha: null }));
                else await store(block);
                zeroSent = true;
              } else {
                const found =
                  cands ?? candidates(Buffer.concat([history, block.subarray(0, WINDOW)]), history.length);
                for (const c of chunker.push(block, found)) await store(c);
              }
              stats.bytes += n;
              done += n;
              progress(done, total);
            },
          );
          let history: Buffer = Buffer.alloc(0);
          let next = disk.size > 0 ? disk.read(0, Math.min(READ_BLOCK, disk.size)) : null;
          for (let off = 0; next; ) {
            const block = await next;
            off += block.length;
            next = off < disk.size ? disk.read(off, Math.min(READ_BLOCK, disk.size - off)) : null;
            const h = history;
            history = tailOf(history, block); // before the block moves to a worker
            await cut.push(
              isZero(block)
                ? Promise.resolve({ block, cands: null, history: h })
                : pool.candidates(h, block).then((r) => ({ ...r, history: h })),
            );
          }
          await cut.flush();
          for (const c of chunker.finish()) await store(c);
          await stored.flush();
        };
        for (const disk of disks) {
          list = [];
          // The clock before the first stamp: a write after this moment gets a ctime no older.
          const readStart = nowNs();
          const before = await disk.unchanged?.stamp();
          const prev = typeof previous === 'string' ? undefined : previous.get(disk.name);
          const why = !disk.unchanged
            ? 'the host cannot vouch for its file'
            : typeof previous === 'string'
              ? previous
              : whyNotReuse(prev, { ...disk, source: disk.unchanged.source }, before!, (id) => known.has(id));
          if (why === null && prev) {
            list = prev.chunks;
            for (const [id] of list) sealed.chunks[id] = known.get(id)!;
            stats.chunks += list.length;
            done += disk.size;
            progress(done, total);
            stats.disks.push({ name: disk.name, read: false, why: `unchanged since backup ${since}` });
          } else {
            await readWhole(disk);
            stats.disks.push({ name: disk.name, read: true, why: why ?? '' });
          }
          index.disks.push({
            name: disk.name,
            size: disk.size,
            chunks: list,
            ...(why === null && since ? { unchanged_since: since } : {}),
          });
          // Recorded for the next backup only when the file held still over the whole read.
          const after = await disk.unchanged?.stamp();
          if (disk.unchanged && before && after && vouches(before, after, readStart) === null)
            records.push({
              name: disk.name,
              source: disk.unchanged.source,
              size: disk.size,
              stamp: before,
              read_start_ns: readStart.toString(),
              chunks: list,
            });
        }
        const indexBlob = seal(
          INDEX_MAGIC,
          key,
          keyId,
          backupId,
          deflateRawSync(Buffer.from(JSON.stringify(index))),
        );
        await this.target.put(`backups/${backupId}.index`, indexBlob);
        sealed.index_sha256 = sha256(indexBlob);
        const sealBlob = Buffer.from(JSON.stringify(sealed));
        await this.target.put(`backups/${backupId}.seal`, sealBlob);
        stats.storedBytes += indexBlob.length + sealBlob.length;
        if (records.length) {
          const rec = sealRecord(idKey, backupId, records);
          await this.target.put(recordName(backupId), rec);
          stats.storedBytes += rec.length;
        }
        return { sealSha256: sha256(sealBlob), stats };
      } finally {
        key.fill(0);
        await pool.close();
      }
    });
  }

  /**
   * Backup `since`'s unchanged-file records by disk name, or why there are
   * none (then every disk is read). Only a live backup's record counts.
   */
  private async unchangedRecord(
    idKey: Buffer,
    since: string | null,
    live: { id: string }[],
  ): Promise<Map<string, UnchangedDisk> | string> {
    if (!since) return 'there is no earlier backup of this source';
    if (!live.some((l) => l.id === since)) return `backup ${since} is not a live backup`;
    const blob = await this.target.get(recordName(since)).catch(() => null);
    if (!blob) return `backup ${since} recorded no file stamp`;
    try {
      return new Map(openRecord(idKey, since, blob).map((d) => [d.name, d]));
    } catch {
      return `the file record of backup ${since} does not authenticate in this repository`;
    }
  }

  /** Unwraps the data keys a seal names (all of them: any one missing or wrong fails). */
  private async dataKeys(s: Seal, recoveryKey: KeyObject): Promise<Map<string, Buffer>> {
    const keys = new Map<string, Buffer>();
    const ids = new Set([s.key_id, ...Object.values(s.chunks).map(([, k]) => k)]);
    for (const id of ids) {
      const w = JSON.parse((await this.target.get(`keys/${id}`)).toString()) as WrappedKey;
      if (w.id !== id) throw integrityError(`data key ${id} was swapped`);
      keys.set(id, unwrapWithRecoveryKey(w, recoveryKey));
    }
    return keys;
  }

  /** The backup's index, checked against its seal: the same chunks, and disks that add up. */
  private async readIndex(s: Seal, keys: Map<string, Buffer>): Promise<Index> {
    const blob = await this.target.get(`backups/${s.backup}.index`);
    if (sha256(blob) !== s.index_sha256) throw integrityError(`the index of backup ${s.backup} was altered`);
    const key = keys.get(sealedKeyId(INDEX_MAGIC, blob, s.backup));
    if (!key) throw integrityError(`the index of backup ${s.backup} names an unknown key`);
    const index = JSON.parse(inflateRawSync(open(INDEX_MAGIC, key, s.backup, blob)).toString()) as Index;
    const ids = Object.keys(s.chunks);
    const listed = new Set(index.disks.flatMap((d) => d.chunks.map(([id]) => id)));
    if (listed.size !== ids.length || ids.some((id) => !listed.has(id)))
      throw integrityError(`the chunk list of backup ${s.backup} does not match its index`);
    for (const d of index.disks) {
      let off = 0;
      for (const [, len] of d.chunks) off += len;
      if (off !== d.size) throw integrityError(`disk ${d.name} of backup ${s.backup} does not add up`);
    }
    return index;
  }

  /**
   * Reads the chunks `ids` and has the pool `run` on each, `take`ing the
   * results in the same order.
   */
  private async eachChunk<R>(
    ids: Iterable<string>,
    run: (id: string, blob: Buffer) => Promise<R>,
    take: (r: R, id: string) => Promise<void> | void,
  ): Promise<void> {
    const q = new InOrder<[R, string]>(DEPTH, ([r, id]) => take(r, id));
    // Up to `DEPTH` reads and pool jobs overlap; results are still taken in order.
    for (const id of ids)
      await q.push(
        this.target
          .get(chunkName(id))
          .then((blob) => run(id, blob))
          .then((r) => [r, id]),
      );
    await q.flush();
  }

  /** Each stored object of the seal hashes to what the seal says. */
  private storedIntact(s: Seal, pool: ChunkPool): Promise<void> {
    return this.eachChunk(
      Object.keys(s.chunks),
      (_, blob) => pool.sha256(blob),
      (sha, id) => {
        if (sha !== s.chunks[id]![0]) throw integrityError(`chunk ${id} was altered`);
      },
    );
  }

  /**
   * Checks every chunk of a backup. Without the recovery key: each stored
   * object is present and hashes to what the seal (vouched for by the
   * database) says. With it: also decrypted (AES-GCM) and its plaintext's
   * HMAC compared with its name, and the index read. Throws on the first fault.
   */
  async verify(
    backupId: string,
    sealSha256: string,
    opts: { recoveryKey?: KeyObject; idKey?: Buffer } = {},
  ): Promise<VerifyReport> {
    const s = await this.readSeal(backupId, sealSha256);
    const ids = Object.keys(s.chunks);
    if (!opts.recoveryKey || !opts.idKey) {
      const blob = await this.target.get(`backups/${backupId}.index`);
      if (sha256(blob) !== s.index_sha256)
        throw integrityError(`the index of backup ${backupId} was altered`);
      const pool = new ChunkPool({ idKey: Buffer.alloc(0), key: null, keyId: null, keys: [], known: [] });
      try {
        await this.storedIntact(s, pool);
      } finally {
        await pool.close();
      }
      return { chunks: ids.length, decrypted: false, disks: [] };
    }
    const keys = await this.dataKeys(s, opts.recoveryKey);
    const pool = new ChunkPool({ idKey: opts.idKey, key: null, keyId: null, keys: [...keys], known: [] });
    try {
      const index = await this.readIndex(s, keys);
      await this.eachChunk(
        ids,
        (id, blob) => pool.open(id, s.chunks[id]![0], blob).then(() => undefined),
        () => undefined,
      );
      return {
        chunks: ids.length,
        decrypted: true,
        disks: index.disks.map((d) => ({ name: d.name, size: d.size })),
      };
    } finally {
      for (const k of keys.values()) k.fill(0);
      await pool.close();
    }
  }

  /**
   * Restores a backup. Nothing is opened for writing until the seal, the
   * index and every stored object have checked out: each object hashes to
   * the seal's entry (the database vouches for the seal), and every data key
   * opens one of its chunks (a wrapped key swapped for another fails there).
   * Then each disk is written through the sink `open` returns (null: that
   * disk is not restored now), every chunk decrypted and its HMAC checked in
   * the pool and written in order. `sparse`: the sinks are new, zero-filled
   * disks, so zero chunks are skipped.
   */
  async restore(
    backupId: string,
    sealSha256: string,
    recoveryKey: KeyObject,
    idKey: Buffer,
    openSink: (disk: {
      name: string;
      size: number;
    }) => Promise<(DiskSink & { close(): Promise<void> }) | null>,
    opts: { sparse: boolean; progress?: (done: number, total: number) => void },
  ): Promise<VerifyReport> {
    const s = await this.readSeal(backupId, sealSha256);
    const keys = await this.dataKeys(s, recoveryKey);
    const pool = new ChunkPool({ idKey, key: null, keyId: null, keys: [...keys], known: [] });
    try {
      const index = await this.readIndex(s, keys);
      await this.storedIntact(s, pool);
      const oneEach = new Map<string, string>();
      for (const [id, [, k]] of Object.entries(s.chunks)) if (!oneEach.has(k)) oneEach.set(k, id);
      await this.eachChunk(
        oneEach.values(),
        (id, blob) => pool.open(id, s.chunks[id]![0], blob),
        () => undefined,
      );
      const zeroId = chunkId(idKey, ZEROS.subarray(0, CHUNK_MAX));
      const total = index.disks.reduce((n, d) => n + d.size, 0);
      let done = 0;
      let zeroOpened = false;
      for (const d of index.disks) {
        const sink = await openSink({ name: d.name, size: d.size });
        if (!sink) {
          done += d.size;
          continue;
        }
        try {
          let off = 0;
          await this.eachChunk(
            d.chunks.map(([id]) => id),
            // The zero chunk is opened (checked) once; after that its plaintext is known.
            (id, blob) =>
              id === zeroId && zeroOpened
                ? Promise.resolve(ZEROS.subarray(0, CHUNK_MAX))
                : pool.open(id, s.chunks[id]![0], blob),
            async (plain, id) => {
              if (id === zeroId) zeroOpened = true;
              if (!(opts.sparse && isZero(plain))) await sink.write(off, plain);
              off += plain.length;
              done += plain.length;
              opts.progress?.(done, total);
            },
          );
        } finally {
          await sink.close();
        }
      }
      return {
        chunks: Object.keys(s.chunks).length,
        decrypted: true,
        disks: index.disks.map((d) => ({ name: d.name, size: d.size })),
      };
    } finally {
      for (const k of keys.values()) k.fill(0);
      await pool.close();
    }
  }

  /** Removes a backup and every chunk and data key no remaining backup uses. */
  remove(
    backupId: string,
    sealSha256: string | null,
    /** The other live backups, asked for once no other backup or delete runs. */
    remaining: () => Promise<{ id: string; sealSha256: string }[]>,
  ) {
    return this.exclusive(async () => {
      const mine = sealSha256 ? await this.readSeal(backupId, sealSha256).catch(() => null) : null;
      const keep = new Set<string>();
      const keepKeys = new Set<string>();
      for (const s of await this.seals(await remaining())) {
        keepKeys.add(s.key_id);
        for (const [id, [, k]] of Object.entries(s.chunks)) {
          keep.add(id);
          keepKeys.add(k);
        }
      }
      await this.target.delete(recordName(backupId));
      await this.target.delete(`backups/${backupId}.seal`);
      await this.target.delete(`backups/${backupId}.index`);
      if (!mine) return;
      for (const [id, [, k]] of Object.entries(mine.chunks)) {
        if (!keep.has(id)) await this.target.delete(chunkName(id));
        if (!keepKeys.has(k)) await this.target.delete(`keys/${k}`);
      }
      if (!keepKeys.has(mine.key_id)) await this.target.delete(`keys/${mine.key_id}`);
    });
  }
}
