#!/usr/bin/env node
/**
 * Backup benchmark: Bulwark's repository (src/backups, from dist/) against
 * restic (Debian's package) on the same raw disk image, in one run:
 * full backup, incremental after 1% of the image changed, a backup of the
 * unchanged image, and a restore; throughput and repository size.
 *
 *   npx tsc -p tsconfig.json && node bench/backup.mjs [--size-mib 2048] [--dir /var/tmp]
 *
 * Both read the same file; Bulwark's daemon reads volumes through qemu-nbd
 * instead (not measured here). Both restores write every byte (restic 0.14 has no --sparse).
 * Prints a Markdown table (for BENCHMARKS.md).
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { POOL_SIZE } from '../dist-bench/src/backups/chunk-pool.js';
import { generateRecoveryKey, parseRecoveryKey } from '../dist-bench/src/backups/crypto.js';
import { Repository } from '../dist-bench/src/backups/repository.js';
import { LocalTarget } from '../dist-bench/src/backups/target.js';
import { SETTLE_NS } from '../dist-bench/src/backups/unchanged.js';
import { fileStamp } from '../dist-bench/src/host/disk-export.js';

const { values } = parseArgs({
  options: {
    'size-mib': { type: 'string', default: '2048' },
    dir: { type: 'string', default: '/var/tmp' },
    // One JSON line instead of the Markdown table: the raw figures (--json) or bench/run.ts rows (--part).
    json: { type: 'boolean', default: false },
    part: { type: 'boolean', default: false },
  },
});
const MiB = 1024 * 1024;
const size = Number(values['size-mib']) * MiB;
const work = mkdtempSync(join(values.dir, 'bulwark-bench-'));
const image = join(work, 'disk.raw');
const du = (p) => Number(execFileSync('du', ['-sb', p]).toString().split('\t')[0]);
const secs = async (fn) => {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e9;
};
/** CPU seconds of this process (every thread) and of its waited-for children (restic), from the kernel. */
const cpu = () => {
  const f = readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ');
  const { user, system } = process.cpuUsage();
  return { self: (user + system) / 1e6, children: (Number(f[13]) + Number(f[14])) / 100 };
};
/** Phase name -> { wall, cpu } (CPU of the side that ran it), and Bulwark's time spent waiting on reads. */
const phases = {};
const timed = async (name, side, fn) => {
  const c = cpu();
  const wall = await secs(fn);
  phases[name] = { ...phases[name], wall, cpu: cpu()[side] - c[side] };
  return wall;
};
const sha = async (p) => {
  const h = createHash('sha256');
  const f = await open(p);
  for await (const b of f.createReadStream({ highWaterMark: 4 * MiB })) h.update(b);
  return h.digest('hex');
};

/** A disk-like image: 40% random (binaries, compressed data), 30% text-like, 30% never written (zeros). */
async function makeImage() {
  const f = await open(image, 'w');
  const words = Array.from({ length: 4096 }, () => randomBytes(1 + (randomBytes(1)[0] % 9)).toString('hex'));
  for (let off = 0; off < size; off += 4 * MiB) {
    const kind = (off / (4 * MiB)) % 10;
    let b;
    if (kind < 4) b = randomBytes(4 * MiB);
    else if (kind < 7) {
      const parts = [];
      let n = 0;
      // One random draw per block, not per word: randomBytes(2) per word was most of a 2 GiB run.
      const picks = randomBytes(4 * MiB);
      for (let i = 0; n < 4 * MiB; i += 2) {
        const w = `${words[picks.readUInt16BE(i) % words.length]} `;
        parts.push(w);
        n += w.length;
      }
      b = Buffer.from(parts.join('')).subarray(0, 4 * MiB);
    } else continue; // a hole
    await f.write(b, 0, b.length, off);
  }
  await f.truncate(size);
  await f.close();
}

/** Overwrites 1% of the image in 64 KiB pieces at random places. */
async function change1pct() {
  const f = await open(image, 'r+');
  const piece = 64 * 1024;
  for (let i = 0; i < Math.ceil((size * 0.01) / piece); i++) {
    const at = Math.floor(Math.random() * (size / piece)) * piece;
    await f.write(randomBytes(piece), 0, piece, at);
  }
  await f.close();
}

async function bulwarkRun() {
  const dir = join(work, 'bulwark-repo');
  const rk = generateRecoveryKey();
  const repo = new Repository(new LocalTarget(dir), rk.publicKey);
  const idKey = randomBytes(32);
  await repo.init(idKey);
  const live = [];
  const backup = async (id) => {
    const f = await open(image);
    const t0 = { reads: 0 };
    const src = {
      name: 'disk',
      size,
      read: async (o, l) => {
        const t = process.hrtime.bigint();
        const b = Buffer.allocUnsafe(l);
        const { bytesRead } = await f.read(b, 0, l, o);
        t0.reads += Number(process.hrtime.bigint() - t) / 1e9;
        return b.subarray(0, bytesRead);
      },
      // The same signal the daemon takes of a volume's file (host/disk-export.ts#fileStamp).
      unchanged: { source: 'bench-image', stamp: () => fileStamp(image) },
    };
    const since = live.at(-1)?.id ?? null;
    const r = await repo.backup(id, idKey, [src], live, undefined, since);
    await f.close();
    live.push({ id, sealSha256: r.sealSha256 });
    phases[`bulwark ${id}`] = { ...phases[`bulwark ${id}`], reads: t0.reads, disk: r.stats.disks[0] };
    return r;
  };
  const out = {};
  out.full = await timed('bulwark full', 'self', () => backup('full'));
  out.fullSize = du(dir);
  return {
    out,
    next: async () => {
      out.incr = await timed('bulwark incr', 'self', () => backup('incr'));
      out.incrSize = du(dir);
      out.same = await timed('bulwark same', 'self', () => backup('same'));
      const target = join(work, 'bulwark-restore.raw');
      const f = await open(target, 'w');
      await f.truncate(size);
      out.restore = await timed('bulwark restore', 'self', () =>
        repo.restore(
          'same',
          live[2].sealSha256,
          parseRecoveryKey(rk.privateKeyPem),
          idKey,
          async () => ({
            write: async (o, d) => void (await f.write(d, 0, d.length, o)),
            close: async () => undefined,
          }),
          { sparse: false },
        ),
      );
      await f.close();
      out.restoreOk = (await sha(target)) === (await sha(image));
      rmSync(target);
    },
  };
}

function resticRun() {
  const repo = join(work, 'restic-repo');
  const env = {
    ...process.env,
    RESTIC_PASSWORD: 'bench-password',
    XDG_CACHE_HOME: join(work, 'restic-cache'),
  };
  const restic = (...a) =>
    execFileSync('restic', ['-r', repo, '-q', ...a], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  restic('init');
  const out = {};
  const backup = () => restic('backup', '--host', 'bench', image);
  return {
    out,
    full: async () => {
      out.full = await timed('restic full', 'children', backup);
      out.fullSize = du(repo);
    },
    next: async () => {
      out.incr = await timed('restic incr', 'children', backup);
      out.incrSize = du(repo);
      out.same = await timed('restic same', 'children', backup);
      const target = join(work, 'restic-restore');
      out.restore = await timed('restic restore', 'children', () =>
        restic('restore', 'latest', '--target', target),
      );
      out.restoreOk = (await sha(join(target, image))) === (await sha(image));
      rmSync(target, { recursive: true, force: true });
    },
  };
}

try {
  await makeImage();
  const b = await bulwarkRun();
  const r = resticRun();
  await r.full();
  await change1pct();
  // Bulwark trusts a file's stamp only once its last change is SETTLE_NS old when a read begins
  // (src/backups/unchanged.ts); untimed, and restic's backups run after it too.
  await sleep(Number(SETTLE_NS / 1_000_000n) + 500);
  await b.next();
  await r.next();
  if (values.json) {
    console.log(
      JSON.stringify({
        sizeMiB: size / MiB,
        restic: execFileSync('restic', ['version']).toString().trim(),
        bulwark: b.out,
        resticOut: r.out,
        phases,
      }),
    );
    if (!b.out.restoreOk || !r.out.restoreOk) process.exitCode = 1;
  } else if (values.part) printPart(b, r);
  else printTable(b, r);
} finally {
  rmSync(work, { recursive: true, force: true });
}

/** Rows for bench/run.ts: throughput as restic's time / Bulwark's (≥ 1.0 is as fast), sizes as Bulwark / restic. */
function printPart(b, r) {
  const mib = size / MiB;
  const tp = (k, what) => ({
    what: `${what} (${mib} MiB image)`,
    baseline: `restic: ${r.out[k].toFixed(1)} s (${(mib / r.out[k]).toFixed(0)} MiB/s)`,
    subject: `${b.out[k].toFixed(1)} s (${(mib / b.out[k]).toFixed(0)} MiB/s)`,
    ratio: `${(r.out[k] / b.out[k]).toFixed(2)}× restic's throughput`,
    target: 'throughput ≥ 1.0×',
    met: r.out[k] / b.out[k] >= 1,
  });
  const sz = (x, y, what) => ({
    what,
    baseline: `restic: ${(y / MiB).toFixed(1)} MiB`,
    subject: `${(x / MiB).toFixed(1)} MiB`,
    ratio: `${(x / y).toFixed(2)}×`,
    target: 'repository ≤ 1.1×',
    met: x / y <= 1.1,
  });
  const rows = [
    tp('full', 'encrypted dedup backup, full'),
    tp('incr', 'incremental after a 1% change'),
    tp('same', 'backup of the unchanged image'),
    tp('restore', 'restore (every byte written, SHA-256 checked)'),
    sz(b.out.fullSize, r.out.fullSize, 'repository after the full backup'),
    sz(
      b.out.incrSize - b.out.fullSize,
      r.out.incrSize - r.out.fullSize,
      'repository growth for the 1% change',
    ),
  ];
  if (!b.out.restoreOk || !r.out.restoreOk)
    rows.push({
      what: 'restored image identical',
      baseline: String(r.out.restoreOk),
      subject: String(b.out.restoreOk),
      ratio: '',
      target: 'identical',
      met: false,
    });
  const same = rows[2];
  const skipped = phases['bulwark same']?.disk;
  same.note = skipped?.read
    ? `Bulwark read the unchanged image again (${skipped.why}); restic skips a file whose size, mtime and inode are unchanged since its last snapshot.`
    : 'both skip the unchanged file: restic on size, mtime and inode; Bulwark on device, inode, size, mtime and ctime as its previous backup recorded them, that record taken only when the file held still over the read and its last change was 2 s older than the read (src/backups/unchanged.ts); the previous chunk list is reused and a new index and seal written.';
  const f = (n) => n.toFixed(1);
  const phase = (k) => {
    const p = phases[k];
    if (!p) return `${k}: -`;
    const reads = p.reads === undefined ? '' : `, waiting on reads ${f(p.reads)} s`;
    return `${k} ${f(p.wall)} s wall, ${f(p.cpu)} s CPU (${(p.cpu / p.wall).toFixed(2)} CPUs busy)${reads}`;
  };
  const phaseLine =
    "Phases (CPU time of all of Bulwark's threads, or of restic's process; reads overlap with the work): " +
    ['full', 'incr', 'same', 'restore']
      .map((k) => `${phase(`bulwark ${k}`)}; ${phase(`restic ${k}`)}`)
      .join('; ') +
    '.';
  console.log(
    JSON.stringify({
      rows,
      details: [
        `${mib} MiB raw image (40% random, 30% text-like, 30% holes); phases in turn (Bulwark full, restic full, the 1% change, then Bulwark's incremental, unchanged and restore, then restic's). ` +
          `restic 0.14 uses zstd and several threads; Bulwark brotli quality 1 (where a sample shrinks) and a pool of ${POOL_SIZE} worker threads (one per CPU) beside the reading thread. ` +
          `A pause of ${Number(SETTLE_NS / 1_000_000_000n)} s (untimed) follows the 1% change: Bulwark vouches for a file's stamp only once its last change is that old when a read begins.`,
        phaseLine,
      ],
    }),
  );
}

function printTable(b, r) {
  const mibs = (s) => (size / MiB / s).toFixed(0);
  const mb = (n) => (n / MiB).toFixed(1);
  const ratio = (x, y) => (x / y).toFixed(2);
  const rows = [
    ['full backup, s (MiB/s)', b.out.full, r.out.full],
    ['incremental after 1% change, s (MiB/s)', b.out.incr, r.out.incr],
    ['backup of the unchanged image, s (MiB/s)', b.out.same, r.out.same],
    ['restore, s (MiB/s)', b.out.restore, r.out.restore],
  ].map(
    ([k, x, y]) => `| ${k} | ${x.toFixed(2)} (${mibs(x)}) | ${y.toFixed(2)} (${mibs(y)}) | ${ratio(x, y)} |`,
  );
  const cpus = execFileSync('nproc').toString().trim();
  console.log(
    `Image: ${size / MiB} MiB raw (40% random, 30% text-like, 30% holes); 1% change = 64 KiB pieces at random offsets.`,
  );
  console.log(
    `Host: ${cpus} CPUs, ${execFileSync('restic', ['version']).toString().trim()}, Node ${process.version}; ${new Date().toISOString()}.\n`,
  );
  console.log('| measure | Bulwark | restic | Bulwark / restic |');
  console.log('| --- | --- | --- | --- |');
  for (const row of rows) console.log(row);
  console.log(
    `| repository after full, MiB | ${mb(b.out.fullSize)} | ${mb(r.out.fullSize)} | ${ratio(b.out.fullSize, r.out.fullSize)} |`,
  );
  console.log(
    `| repository growth for the 1% change, MiB | ${mb(b.out.incrSize - b.out.fullSize)} | ${mb(r.out.incrSize - r.out.fullSize)} | ${ratio(b.out.incrSize - b.out.fullSize, r.out.incrSize - r.out.fullSize)} |`,
  );
  console.log(
    `| unchanged backup / full backup time | ${ratio(b.out.same, b.out.full)} | ${ratio(r.out.same, r.out.full)} | |`,
  );
  console.log(`| restored image identical (sha256) | ${b.out.restoreOk} | ${r.out.restoreOk} | |`);
  if (!b.out.restoreOk || !r.out.restoreOk) process.exitCode = 1;
}
