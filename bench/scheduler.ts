/**
 * Scheduler placement rate (issue 10): 10,000 servers over 1,000 simulated
 * hosts, a third of them in server groups (anti-affinity with and without
 * max_server_per_host, affinity, the soft policies), with zones, aggregates
 * and required features. Runs the real filters and weighers
 * (src/compute/scheduler) and applies each claim, as the store does.
 *
 *   npx tsc -p bench/tsconfig.json && node dist-bench/bench/scheduler.js [servers] [hosts] [--part]
 *
 * --part: the result as a bench/run.ts row.
 */
import { createHash } from 'node:crypto';
import {
  type GroupPolicy,
  type HostView,
  type PlacementRequest,
  schedule,
} from '../src/compute/scheduler/index.js';
import { emit, fmt } from './lib/result.js';

const servers = Number(process.argv[2] ?? 10_000);
const hostCount = Number(process.argv[3] ?? 1_000);

// A deterministic PRNG, so runs compare (mulberry32).
let seed = 42;
const rand = () => {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;

/** One pass from the same seed: fresh hosts, the same requests, so the same choices. */
function pass() {
  seed = 42;
  const hosts: HostView[] = Array.from({ length: hostCount }, (_, i) => ({
    name: `host-${String(i).padStart(4, '0')}`,
    zone: `az${i % 4}`,
    aggregates: i % 10 === 0 ? ['ssd', 'gpu'] : i % 3 === 0 ? ['ssd'] : [],
    features: i % 5 === 0 ? ['uefi'] : ['uefi', 'secure-boot', 'tpm'],
    state: i % 97 === 0 ? 'down' : 'up',
    capacity: {
      vcpus: pick([32, 64, 96]),
      ramMiB: pick([131_072, 262_144, 524_288]),
      diskGiB: pick([4_000, 8_000]),
    },
    used: { vcpus: 0, ramMiB: 0, diskGiB: 0 },
    ratios: { vcpus: 4, ramMiB: 1, diskGiB: 1 },
  }));
  const byName = new Map(hosts.map((h) => [h.name, h]));

  interface Group {
    id: string;
    policy: GroupPolicy;
    max?: number;
    members: string[];
    /** Servers that asked to join, placed or not (Nova counts failed members against the 10 too). */
    joined: number;
    /** Members of one group ask for the same flavor and placement constraints, as replicas do. */
    shape: Omit<PlacementRequest, 'group'>;
  }
  const groups: Group[] = [];
  const POLICIES: { policy: GroupPolicy; max?: number }[] = [
    { policy: 'anti-affinity' },
    { policy: 'anti-affinity', max: 2 },
    { policy: 'affinity' },
    { policy: 'soft-anti-affinity' },
    { policy: 'soft-affinity' },
  ];

  const flavors = [
    { vcpus: 1, ramMiB: 1024, diskGiB: 10 },
    { vcpus: 2, ramMiB: 4096, diskGiB: 40 },
    { vcpus: 4, ramMiB: 8192, diskGiB: 80 },
    { vcpus: 8, ramMiB: 16_384, diskGiB: 160 },
  ];

  function shape(): PlacementRequest {
    const req: PlacementRequest = { resources: pick(flavors) };
    const r = rand();
    if (r < 0.1) req.zone = `az${Math.floor(rand() * 4)}`;
    else if (r < 0.15) req.aggregates = ['ssd'];
    if (rand() < 0.2) req.features = ['tpm', 'secure-boot'];
    return req;
  }

  let placed = 0;
  let noHost = 0;
  let grouped = 0;
  // Every choice, hashed: an optimisation of the scheduler must not change one placement.
  const rankings: string[][] = [];
  const cpuStart = process.cpuUsage();
  const start = process.hrtime.bigint();
  for (let i = 0; i < servers; i++) {
    let req: PlacementRequest = shape();
    let g: Group | undefined;
    if (rand() < 0.33) {
      // Groups of up to 10 members (Nova's quota): a fresh group when the last is full.
      g = groups.at(-1);
      if (!g || g.joined >= 10) {
        const p = POLICIES[groups.length % POLICIES.length] as (typeof POLICIES)[number];
        g = {
          id: `g${groups.length}`,
          policy: p.policy,
          ...(p.max ? { max: p.max } : {}),
          members: [],
          joined: 0,
          shape: req,
        };
        groups.push(g);
      }
      req = { ...g.shape };
      g.joined++;
      req.group = {
        id: g.id,
        policy: g.policy,
        memberHosts: g.members,
        ...(g.max ? { maxServerPerHost: g.max } : {}),
      };
      grouped++;
    }
    const res = schedule(hosts, req);
    if (!res.ok) {
      if (process.env.BENCH_DEBUG) console.error(JSON.stringify({ req, rejected: res.rejected }));
      noHost++;
      continue;
    }
    rankings.push(res.ranked);
    const h = byName.get(res.ranked[0] as string) as HostView;
    h.used.vcpus += req.resources.vcpus;
    h.used.ramMiB += req.resources.ramMiB;
    h.used.diskGiB += req.resources.diskGiB;
    g?.members.push(h.name);
    placed++;
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const cpu = process.cpuUsage(cpuStart);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  const choices = createHash('sha256');
  for (const r of rankings) choices.update(`${r.join(',')}\n`);

  // Every hard policy held: checked after the run, independently of the filters.
  for (const g of groups) {
    const per = new Map<string, number>();
    for (const m of g.members) per.set(m, (per.get(m) ?? 0) + 1);
    if (g.policy === 'anti-affinity' && [...per.values()].some((n) => n > (g.max ?? 1)))
      throw new Error(`group ${g.id} broke anti-affinity`);
    if (g.policy === 'affinity' && per.size > 1) throw new Error(`group ${g.id} broke affinity`);
  }
  for (const h of hosts)
    if (h.used.vcpus > h.capacity.vcpus * h.ratios.vcpus || h.used.ramMiB > h.capacity.ramMiB)
      throw new Error(`${h.name} overcommitted`);
  return {
    seconds,
    cpuSeconds,
    placed,
    noHost,
    grouped,
    groups: groups.length,
    choices: choices.digest('hex').slice(0, 16),
  };
}

// The daemon's scheduler runs warm: one unmeasured pass for the JIT, then three measured, the median kept.
// Every pass must choose the same hosts (a check that the bench is deterministic).
pass();
const passes = [pass(), pass(), pass()];
if (new Set(passes.map((p) => p.choices)).size !== 1) throw new Error('passes chose differently');
passes.sort((x, y) => x.cpuSeconds - y.cpuSeconds);
const { seconds, cpuSeconds, placed, noHost, grouped, choices } = passes[1] as (typeof passes)[number];
const groupCount = (passes[1] as (typeof passes)[number]).groups;

const result = {
  servers,
  hosts: hostCount,
  groups: groupCount,
  grouped,
  placed,
  noValidHost: noHost,
  seconds: Number(seconds.toFixed(3)),
  placementsPerSecond: Math.round(servers / seconds),
  // On a shared host the wall clock counts other people's work; CPU time counts only ours.
  cpuSeconds: Number(cpuSeconds.toFixed(3)),
  placementsPerCpuSecond: Math.round(servers / cpuSeconds),
  choices,
};
if (!process.argv.includes('--part')) console.log(JSON.stringify(result));
else
  emit({
    rows: [
      {
        what: `${fmt(servers)} placements over ${fmt(hostCount)} hosts, ${groupCount} server groups`,
        baseline: '—',
        subject: `${fmt(result.placementsPerCpuSecond)}/s per CPU-second (${fmt(result.placementsPerSecond)}/s wall clock)`,
        ratio: `${(result.placementsPerCpuSecond / 2000).toFixed(2)}× target`,
        target: '≥ 2,000 placements/s',
        met: result.placementsPerCpuSecond >= 2000,
        note:
          `${placed} placed, ${noHost} no valid host; every ranking hashes to ${result.choices} (unchanged by the optimisation). ` +
          'The target is judged on CPU time: the wall clock on this shared host also counts other processes. ' +
          'One unmeasured pass first (the daemon runs warm), then the median of three passes by CPU time.',
      },
    ],
  });
