/**
 * Runs the benchmark parts (each in its own process) and writes their table
 * into BENCHMARKS.md between the results markers, with the machine's details
 * and load average before and after each part.
 *
 *   npm run bench                        # every part; writes BENCHMARKS.md
 *   npm run bench -- api audit           # some parts; prints their rows only
 *   npm run bench -- api audit --write   # some parts; replaces their rows in BENCHMARKS.md
 *   npm run bench -- --no-write          # every part, BENCHMARKS.md left alone
 *
 * Each part's result (rows, load, when) is kept in bench/results.json, from
 * which the table is rendered: a part re-run alone replaces only its rows,
 * and the table says when each part ran.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchPart } from './lib/result.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');

/** Part name → script (compiled, or plain .mjs in bench/) and its arguments. */
const PARTS: Record<string, { script: string; args?: string[]; title: string }> = {
  boot: { script: join(here, 'boot.js'), title: 'server create → guest marker' },
  iperf: { script: join(here, 'iperf.js'), title: 'TCP throughput through the security-group tables' },
  'sg-update': { script: join(here, 'sg-update.js'), title: 'one rule added to a group of 500 ports' },
  scheduler: { script: join(here, 'scheduler.js'), args: ['10000', '1000', '--part'], title: 'scheduler' },
  backup: {
    script: join(root, 'bench', 'backup.mjs'),
    args: ['--size-mib', process.env.BENCH_BACKUP_MIB ?? '2048', '--part'],
    title: 'backup vs restic',
  },
  api: { script: join(here, 'api.js'), title: 'authenticated list vs static route' },
  audit: { script: join(here, 'audit.js'), title: 'audit append and verify' },
};

const argv = process.argv.slice(2);
const chosen = argv.filter((a) => !a.startsWith('--'));
for (const c of chosen)
  if (!PARTS[c]) throw new Error(`no bench part '${c}'; parts: ${Object.keys(PARTS).join(', ')}`);
const names = chosen.length ? chosen : Object.keys(PARTS);
// A whole run writes unless told not to; some parts alone only with --write.
const write = chosen.length === 0 ? !argv.includes('--no-write') : argv.includes('--write');

const load = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
const version = (cmd: string, args: string[]) => {
  try {
    return execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'ignore'] })
      .toString()
      .split('\n')[0]
      ?.trim();
  } catch {
    return 'not installed';
  }
};

interface PartResult {
  at: string;
  seconds: number;
  loadBefore: string;
  loadAfter: string;
  part?: BenchPart;
  error?: string;
}

function runPart(name: string): Promise<{ part?: BenchPart; error?: string; seconds: number }> {
  const p = PARTS[name] as (typeof PARTS)[string];
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [p.script, ...(p.args ?? [])], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      process.stderr.write(b);
    });
    child.on('close', (code) => {
      const seconds = (Date.now() - started) / 1000;
      const last = out.trim().split('\n').at(-1) ?? '';
      try {
        const part = JSON.parse(last) as BenchPart;
        if (!Array.isArray(part.rows)) throw new Error('no rows');
        resolve({ part, seconds, ...(code === 0 ? {} : { error: `exit ${code}` }) });
      } catch {
        resolve({ error: `exit ${code}, no result line`, seconds });
      }
    });
  });
}

function render(results: Record<string, PartResult>, machine: string[]): string {
  const table = [
    '| part | what | baseline (same run) | Bulwark | ratio | target | met |',
    '|---|---|---|---|---|---|---|',
  ];
  const notes: string[] = [];
  const runs: string[] = [];
  for (const name of Object.keys(PARTS)) {
    const r = results[name];
    if (!r) continue;
    runs.push(`| ${name} | ${r.at} | ${r.seconds.toFixed(0)} s | ${r.loadBefore} | ${r.loadAfter} |`);
    if (!r.part) {
      table.push(`| ${name} | ${PARTS[name]?.title} | | | | | **did not run**: ${r.error} |`);
      continue;
    }
    for (const row of r.part.rows) {
      table.push(
        `| ${name} | ${row.what} | ${row.baseline} | ${row.subject} | ${row.ratio} | ${row.target} | ${row.met ? 'yes' : '**no**'} |`,
      );
      if (row.note) notes.push(`- **${name}, ${row.what}**: ${row.note}`);
    }
    for (const d of r.part.details ?? []) notes.push(`- ${name}: ${d}`);
    if (r.error) notes.push(`- ${name}: the part ended with ${r.error}.`);
  }
  return [
    ...machine,
    '',
    ...table,
    '',
    'When each part ran, and the load average (1, 5, 15 minutes) before and after it:',
    '',
    '| part | started (UTC) | took | load before | load after |',
    '|---|---|---|---|---|',
    ...runs,
    '',
    ...(notes.length ? ['Notes:', '', ...notes, ''] : []),
  ].join('\n');
}

const resultsFile = join(root, 'bench', 'results.json');
const saved: { machine?: string[]; parts: Record<string, PartResult> } = existsSync(resultsFile)
  ? JSON.parse(readFileSync(resultsFile, 'utf8'))
  : { parts: {} };
const fresh: Record<string, PartResult> = {};
let total = 0;
for (const name of names) {
  const loadBefore = load();
  const at = new Date().toISOString().slice(0, 19).replace('T', ' ');
  process.stderr.write(`\n== bench ${name} (load ${loadBefore})\n`);
  const r = await runPart(name);
  total += r.seconds;
  fresh[name] = { at, loadBefore, loadAfter: load(), ...r };
}

const machine = [
  `Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM, shared with other work.`,
  `Versions: Node ${process.version}; ${version('qemu-system-x86_64', ['--version'])}; ${version('nft', ['--version'])}; ` +
    `${version('iperf3', ['--version'])}; ${version('restic', ['version'])}; kernel ${version('uname', ['-r'])}.`,
];
process.stderr.write(`\n${names.length} part(s) in ${total.toFixed(0)} s\n`);
console.log(render(fresh, machine));
if (write) {
  const merged = { machine, parts: { ...(chosen.length ? saved.parts : {}), ...fresh } };
  writeFileSync(resultsFile, `${JSON.stringify(merged, null, 2)}\n`);
  const file = join(root, 'BENCHMARKS.md');
  const doc = readFileSync(file, 'utf8');
  const begin = '<!-- bench:results -->';
  const end = '<!-- /bench:results -->';
  const a = doc.indexOf(begin);
  const b = doc.indexOf(end);
  if (a < 0 || b < a) throw new Error(`BENCHMARKS.md has no ${begin} … ${end} block`);
  writeFileSync(file, `${doc.slice(0, a + begin.length)}\n${render(merged.parts, machine)}\n${doc.slice(b)}`);
  process.stderr.write(`wrote the table into ${file} (and ${resultsFile})\n`);
}
