import { createHash, randomBytes } from 'node:crypto';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CHUNK_AVG, CHUNK_MAX, CHUNK_MIN, Chunker, candidates } from './chunker.js';
import { generateRecoveryKey, parseRecoveryKey, wrapForRecipient } from './crypto.js';
import { type DiskSource, Repository } from './repository.js';
import { LocalTarget } from './target.js';

const MiB = 1024 * 1024;
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function setup() {
  const dir = mkdtempSync(join(tmpdir(), 'bw-repo-'));
  dirs.push(dir);
  const rk = generateRecoveryKey();
  const repo = new Repository(new LocalTarget(dir), rk.publicKey);
  return { dir, repo, recovery: parseRecoveryKey(rk.privateKeyPem), idKey: randomBytes(32) };
}

const source = (name: string, data: Buffer): DiskSource => ({
  name,
  size: data.length,
  read: async (off, len) => Buffer.from(data.subarray(off, off + len)),
});

/** A disk image with a recognisable marker, random data and a zero run. */
function image(marker: string): Buffer {
  const b = Buffer.alloc(24 * MiB);
  randomBytes(8 * MiB).copy(b, 0);
  b.fill(Buffer.from(marker), 8 * MiB, 10 * MiB);
  randomBytes(4 * MiB).copy(b, 16 * MiB);
  return b;
}

const files = (d: string): string[] =>
  readdirSync(d, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? files(join(d, e.name)) : [join(d, e.name)],
  );

function memorySink(size: number) {
  const out = Buffer.alloc(size);
  return {
    out,
    sink: { write: async (off: number, d: Buffer) => void d.copy(out, off), close: async () => undefined },
  };
}

describe('content-defined chunker', () => {
  it('cuts within bounds and keeps cuts after an insertion', () => {
    const data = randomBytes(20 * MiB);
    const cuts = (b: Buffer) => {
      const c = new Chunker();
      const sizes: number[] = [];
      for (let o = 0; o < b.length; o += 3 * MiB)
        for (const x of c.push(b.subarray(o, o + 3 * MiB))) sizes.push(x.length);
      for (const x of c.finish()) sizes.push(x.length);
      return sizes;
    };
    const a = cuts(data);
    expect(a.reduce((n, s) => n + s, 0)).toBe(data.length);
    for (const s of a.slice(0, -1)) expect(s >= CHUNK_MIN && s <= CHUNK_MAX).toBe(true);
    // 100 bytes inserted near the start: the chunks after the first cut or two are the same.
    const shifted = cuts(Buffer.concat([data.subarray(0, 1000), randomBytes(100), data.subarray(1000)]));
    const tail = (s: number[]) => s.slice(3).join(',');
    expect(tail(shifted)).toBe(tail(a));
  });
});

/** The one-pass FastCDC loop the repository format was written with: the oracle for the parallel cutter. */
function referenceCuts(data: Buffer): number[] {
  const gear = Array.from({ length: 256 }, (_, i) =>
    createHash('sha256').update(`bulwark-gear-${i}`).digest().readUInt32BE(0),
  );
  const sizes: number[] = [];
  for (let at = 0; at < data.length; ) {
    const n = data.length - at;
    let len = n;
    if (n > CHUNK_MIN) {
      const end = Math.min(n, CHUNK_MAX);
      const mid = Math.min(end, CHUNK_AVG);
      let h = 0;
      len = end === CHUNK_MAX ? CHUNK_MAX : n;
      for (let i = CHUNK_MIN; i < end; i++) {
        h = ((h << 1) + gear[data[at + i]!]!) >>> 0;
        if ((h & (i < mid ? 0xfffffc00 : 0xffffc000)) === 0) {
          len = i + 1;
          break;
        }
      }
    }
    sizes.push(len);
    at += len;
  }
  return sizes;
}

describe('parallel cut finding', () => {
  it('cuts exactly where the one-pass loop does, whatever the block sizes and with zero runs', () => {
    const text = Buffer.from(
      Array.from({ length: 900_000 }, (_, i) => `w${(i * 2654435761) % 5003}`).join(' '),
    );
    const data = Buffer.concat([
      randomBytes(9 * MiB),
      Buffer.alloc(5 * MiB),
      text,
      randomBytes(3 * MiB + 17),
    ]);
    const want = referenceCuts(data);
    for (const block of [4 * MiB, 1000 * 1024 + 3, 100_003]) {
      const c = new Chunker();
      const got: number[] = [];
      let history = Buffer.alloc(0);
      for (let o = 0; o < data.length; o += block) {
        const b = data.subarray(o, o + block);
        // As the chunk workers do: each block's candidates from it and the stream's last 31 bytes.
        const cands = candidates(Buffer.concat([history, b]), history.length);
        for (const x of c.push(b, cands)) got.push(x.length);
        history = Buffer.concat([history, b]).subarray(-31);
      }
      for (const x of c.finish()) got.push(x.length);
      expect(got, `blocks of ${block}`).toEqual(want);
    }
  });
});

describe('encrypted dedup repository', () => {
  it('round-trips; an unchanged disk stores almost nothing; no plaintext and no marker in the files', async () => {
    const { dir, repo, recovery, idKey } = setup();
    const marker = `bw-marker-${randomBytes(6).toString('hex')}-`;
    const disk = image(marker);
    await repo.init(idKey);
    const first = await repo.backup('b1', idKey, [source('vol', disk)], []);
    expect(first.stats.bytes).toBe(disk.length);
    expect(first.stats.storedBytes).toBeLessThan(disk.length); // zeros and the marker compress
    const second = await repo.backup(
      'b2',
      idKey,
      [source('vol', disk)],
      [{ id: 'b1', sealSha256: first.sealSha256 }],
    );
    expect(second.stats.newChunks).toBe(0);
    expect(second.stats.storedBytes).toBeLessThan(64 * 1024);
    const needle = Buffer.from(marker);
    const sample = disk.subarray(0, 64); // random bytes from the disk
    for (const f of files(dir)) {
      const b = readFileSync(f);
      expect(b.includes(needle), f).toBe(false);
      expect(b.includes(sample), f).toBe(false);
      expect(statSync(f).mode & 0o077).toBe(0);
    }
    const { out, sink } = memorySink(disk.length);
    await repo.restore('b2', second.sealSha256, recovery, idKey, async () => sink, { sparse: true });
    expect(out.equals(disk)).toBe(true);
  });

  it('a tampered chunk fails verify and restore before anything is written', async () => {
    const { dir, repo, recovery, idKey } = setup();
    const disk = image('tamper-');
    const b = await repo.backup('b1', idKey, [source('vol', disk)], []);
    const chunk = files(join(dir, 'chunks'))[1]!;
    const blob = readFileSync(chunk);
    blob[blob.length - 40]! ^= 1;
    writeFileSync(chunk, blob);
    await expect(repo.verify('b1', b.sealSha256)).rejects.toThrow(/integrity check failed.*altered/);
    await expect(repo.verify('b1', b.sealSha256, { recoveryKey: recovery, idKey })).rejects.toThrow(
      /integrity/,
    );
    let opened = 0;
    await expect(
      repo.restore(
        'b1',
        b.sealSha256,
        recovery,
        idKey,
        async () => {
          opened++;
          return memorySink(disk.length).sink;
        },
        { sparse: true },
      ),
    ).rejects.toThrow(/integrity check failed/);
    expect(opened).toBe(0);
  });

  it('a swapped seal, a wrong recovery key or a missing chunk are refused', async () => {
    const { dir, repo, idKey } = setup();
    const b = await repo.backup('b1', idKey, [source('vol', image('x-'))], []);
    await expect(repo.verify('b1', 'f'.repeat(64))).rejects.toThrow(/chunk list .* was altered/);
    const other = parseRecoveryKey(generateRecoveryKey().privateKeyPem);
    await expect(repo.verify('b1', b.sealSha256, { recoveryKey: other, idKey })).rejects.toThrow(
      /does not open with this recovery key/,
    );
    rmSync(files(join(dir, 'chunks'))[0]!);
    await expect(repo.verify('b1', b.sealSha256)).rejects.toThrow(/missing from the repository/);
  });

  it('removing a backup keeps the chunks another still uses and drops the rest', async () => {
    const { dir, repo, recovery, idKey } = setup();
    const disk = image('gc-');
    const b1 = await repo.backup('b1', idKey, [source('vol', disk)], []);
    const changed = Buffer.from(disk);
    randomBytes(MiB).copy(changed, 20 * MiB);
    const live1 = [{ id: 'b1', sealSha256: b1.sealSha256 }];
    const b2 = await repo.backup('b2', idKey, [source('vol', changed)], live1);
    expect(b2.stats.newChunks).toBeGreaterThan(0);
    expect(b2.stats.newChunks).toBeLessThan(b2.stats.chunks);
    await repo.remove('b1', b1.sealSha256, async () => [{ id: 'b2', sealSha256: b2.sealSha256 }]);
    await repo.verify('b2', b2.sealSha256, { recoveryKey: recovery, idKey });
    const { out, sink } = memorySink(changed.length);
    await repo.restore('b2', b2.sealSha256, recovery, idKey, async () => sink, { sparse: false });
    expect(out.equals(changed)).toBe(true);
    await repo.remove('b2', b2.sealSha256, async () => []);
    expect(files(dir).filter((f) => !f.endsWith('/config'))).toEqual([]);
  });

  it('a data key swapped for another one wrapped for the same recipient is refused before anything is written', async () => {
    const { dir, repo, recovery, idKey } = setup();
    const disk = image('swap-');
    await repo.init(idKey);
    const b1 = await repo.backup('b1', idKey, [source('vol', disk)], []);
    const changed = Buffer.from(disk);
    randomBytes(MiB).copy(changed, 20 * MiB);
    const b2 = await repo.backup(
      'b2',
      idKey,
      [source('vol', changed)],
      [{ id: 'b1', sealSha256: b1.sealSha256 }],
    );
    // Anyone with the store can wrap a key of their own for the (public) recipient, under b1's key id.
    const seal1 = JSON.parse(readFileSync(join(dir, 'backups/b1.seal'), 'utf8')) as { key_id: string };
    const config = JSON.parse(readFileSync(join(dir, 'config'), 'utf8')) as { recipient: string };
    writeFileSync(
      join(dir, 'keys', seal1.key_id),
      JSON.stringify(wrapForRecipient(randomBytes(32), seal1.key_id, config.recipient)),
    );
    let opened = 0;
    await expect(
      repo.restore(
        'b2',
        b2.sealSha256,
        recovery,
        idKey,
        async () => {
          opened++;
          return memorySink(changed.length).sink;
        },
        { sparse: false },
      ),
    ).rejects.toThrow(/integrity check failed.*does not authenticate/);
    expect(opened).toBe(0);
  });

  it('restores and dedups against a repository written before brotli (deflate chunks)', async () => {
    // Written by the code of commit a809eae (test/fixtures/backup-repo-v1/fixture.json says how).
    const fixture = new URL('../../test/fixtures/backup-repo-v1/', import.meta.url);
    const f = JSON.parse(readFileSync(new URL('fixture.json', fixture), 'utf8')) as {
      recoveryKeyPem: string;
      idKey: string;
      sealSha256: string;
      disks: { name: string; size: number; sha256: string }[];
    };
    const dir = mkdtempSync(join(tmpdir(), 'bw-repo-v1-'));
    dirs.push(dir);
    cpSync(new URL('repo', fixture), dir, { recursive: true });
    const config = JSON.parse(readFileSync(join(dir, 'config'), 'utf8')) as { recipient: string };
    const repo = new Repository(new LocalTarget(dir), config.recipient);
    const recovery = parseRecoveryKey(f.recoveryKeyPem);
    const idKey = Buffer.from(f.idKey, 'hex');
    const report = await repo.verify('b1', f.sealSha256, { recoveryKey: recovery, idKey });
    expect(report.disks.map((d) => d.name)).toEqual(['text', 'random', 'zeros']);
    const out = new Map<string, Buffer>();
    await repo.restore(
      'b1',
      f.sealSha256,
      recovery,
      idKey,
      async (d) => {
        const m = memorySink(d.size);
        out.set(d.name, m.out);
        return m.sink;
      },
      { sparse: false },
    );
    for (const d of f.disks)
      expect(createHash('sha256').update(out.get(d.name)!).digest('hex'), d.name).toBe(d.sha256);
    // The same plaintext has the same chunk names: a new backup of it stores no chunk again.
    const again = await repo.backup(
      'b2',
      idKey,
      f.disks.map((d) => source(d.name, out.get(d.name)!)),
      [{ id: 'b1', sealSha256: f.sealSha256 }],
    );
    expect(again.stats.newChunks).toBe(0);
    await repo.restore(
      'b2',
      again.sealSha256,
      recovery,
      idKey,
      async (d) => {
        const m = memorySink(d.size);
        out.set(`2-${d.name}`, m.out);
        return m.sink;
      },
      { sparse: true },
    );
    for (const d of f.disks) expect(out.get(`2-${d.name}`)!.equals(out.get(d.name)!)).toBe(true);
  });

  it('packs text smaller with brotli than deflate did, and stores random data as it is', async () => {
    const { dir, repo, idKey } = setup();
    const words = Array.from({ length: 4096 }, () =>
      randomBytes(1 + (randomBytes(1)[0]! % 9)).toString('hex'),
    );
    const text = Buffer.from(
      Array.from({ length: 600_000 }, (_, i) => words[(i * 2654435761) % 4096]).join(' '),
    );
    const disk = text.subarray(0, 4 * MiB);
    const { deflateRawSync } = await import('node:zlib');
    const r = await repo.backup('b1', idKey, [source('vol', Buffer.from(disk))], []);
    const chunkBytes = files(join(dir, 'chunks')).reduce((n, p) => n + statSync(p).size, 0);
    expect(chunkBytes).toBeLessThan(deflateRawSync(disk, { level: 1 }).length * 0.85);
    const noise = randomBytes(2 * MiB);
    const r2 = await repo.backup(
      'b2',
      idKey,
      [source('vol', noise)],
      [{ id: 'b1', sealSha256: r.sealSha256 }],
    );
    // Stored: the plaintext plus a flag byte and the seal's framing per chunk, no more.
    expect(r2.stats.storedBytes - noise.length).toBeLessThan(r2.stats.chunks * 64 + 4096);
  });
});
