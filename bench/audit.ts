/**
 * Audit costs. (1) A mutating request (`PUT /network/v2.0/networks/ID`,
 * a rename) with the hash-chained append the API hooks make, against the same
 * request with the writer's append replaced by a no-op, in alternating
 * rounds. (2) `audit verify` (verifyAuditChain, what `bulwark audit verify
 * --data-dir` runs) over a chain of many records.
 *
 *   npx tsc -p bench/tsconfig.json && node dist-bench/bench/audit.js [rounds] [seconds] [records]
 */
import { type ChainedFields, chainHash, GENESIS_HASH } from '../src/audit/chain.js';
import { verifyAuditChain } from '../src/audit/verify.js';
import type { AuditWriter } from '../src/audit/writer.js';
import { nowIso, uuid } from '../src/util/ids.js';
import { type CannonResult, cannon } from './lib/cannon.js';
import { profiled } from './lib/cpu-profile.js';
import { call, startBenchApi } from './lib/platform.js';
import { emit, fmt, median, secs } from './lib/result.js';

const rounds = Number(process.argv[2] ?? 5);
const seconds = Number(process.argv[3] ?? 3);
const records = Number(process.argv[4] ?? 300_000);
const CLIENTS = 10;

const api = await startBenchApi();
try {
  const created = await call<{ network: { id: string } }>(
    api,
    'POST',
    '/network/v2.0/networks',
    { network: { name: 'bench-audit' } },
    201,
  );
  const target = `/network/v2.0/networks/${created.network.id}`;
  const audit = api.platform.audit;
  const realAppend = audit.append.bind(audit);
  // The baseline: the same request, its audit row not written (nothing else changes).
  const skip: AuditWriter['append'] = async (e) => ({
    seq: 0,
    id: '',
    time: '',
    request_id: e.requestId,
    user_id: null,
    user_name: null,
    project_id: null,
    roles: '',
    source_ip: null,
    action: e.action,
    method: e.method,
    path: e.path,
    target_type: null,
    target_id: null,
    outcome: e.outcome,
    status: e.status,
    reason: null,
    prev_hash: '',
    hash: '',
  });
  const rename = () =>
    cannon(`${api.url}${target}`, {
      connections: CLIENTS,
      seconds,
      method: 'PUT',
      headers: { 'x-auth-token': api.token, 'content-type': 'application/json' },
      body: JSON.stringify({ network: { name: 'renamed' } }),
    });
  const off: CannonResult[] = [];
  const on: CannonResult[] = [];
  // This process's CPU time per answered request: the server's cost, which other load on the host
  // does not change (the wall clock does).
  const cpuOff: number[] = [];
  const cpuOn: number[] = [];
  const round = async (into: CannonResult[], cpuInto: number[]) => {
    const c0 = process.cpuUsage();
    const r = await rename();
    const c = process.cpuUsage(c0);
    into.push(r);
    cpuInto.push((c.user + c.system) / Math.max(1, r.total));
  };
  // One unmeasured round of each first: the JIT warms up on both paths before either is counted.
  audit.append = skip;
  await rename();
  audit.append = realAppend;
  await rename();
  const seqBefore = await headSeq();
  for (let r = 0; r < rounds; r++) {
    audit.append = skip;
    await round(off, cpuOff);
    audit.append = realAppend;
    await round(on, cpuOn);
  }
  for (const x of [...off, ...on])
    if (x.errors || x.non2xx) throw new Error(`errors in a round: ${JSON.stringify(x)}`);
  const appended = (await headSeq()) - seqBefore;
  const offRps = median(off.map((x) => x.requestsPerSecond));
  const onRps = median(on.map((x) => x.requestsPerSecond));
  const overhead = 1 - onRps / offRps;
  const usOff = median(cpuOff);
  const usOn = median(cpuOn);
  // The latency each client waits per request: with 10 clients in a closed loop, added latency costs
  // throughput even where CPU does not.
  const p50Off = median(off.map((x) => x.p50Ms));
  const p50On = median(on.map((x) => x.p50Ms));
  const appendMet = overhead <= 0.1;
  const appendProfile = appendMet ? '' : (await profiled(rename)).frames;

  // A long chain in the real format: rows made with chainHash and inserted in bulk (appending them
  // one transaction each would take longer than the whole bench).
  const head = await api.store.db.selectFrom('audit_head').select(['seq', 'hash']).executeTakeFirstOrThrow();
  let prev = head.hash === '' ? GENESIS_HASH : head.hash;
  let seq = Number(head.seq);
  const BATCH = 500;
  await api.store.db.transaction().execute(async (tx) => {
    for (let done = 0; done < records; done += BATCH) {
      const rows = [];
      for (let k = 0; k < Math.min(BATCH, records - done); k++) {
        seq++;
        const f: ChainedFields = {
          seq,
          id: uuid(),
          time: nowIso(),
          request_id: `req-${uuid()}`,
          user_id: api.auth.userId,
          user_name: api.auth.userName,
          project_id: api.auth.projectId,
          roles: api.auth.roles.join(','),
          source_ip: '127.0.0.1',
          action: 'network:update_network',
          method: 'PUT',
          path: target,
          target_type: 'network',
          target_id: created.network.id,
          outcome: 'success',
          status: 200,
          reason: null,
          prev_hash: prev,
        };
        const hash = chainHash(f);
        rows.push({ ...f, hash });
        prev = hash;
      }
      await tx.insertInto('audit_events').values(rows).execute();
    }
    await tx.updateTable('audit_head').set({ seq, hash: prev }).where('id', '=', 1).execute();
  });
  let result: Awaited<ReturnType<typeof verifyAuditChain>> | undefined;
  const cpu0 = process.cpuUsage();
  const took = await secs(async () => {
    result = await verifyAuditChain(api.store);
  });
  const cpu = process.cpuUsage(cpu0);
  if (!result?.ok) throw new Error(`the chain does not verify: ${JSON.stringify(result)}`);
  const perMin = (result.checked / took) * 60;
  const perCpuMin = (result.checked / ((cpu.user + cpu.system) / 1e6)) * 60;
  // An absolute rate: judged on CPU time, as BENCHMARKS.md says (the wall clock counts the host's other work).
  const verifyMet = perCpuMin >= 1_000_000;
  const verifyProfile = verifyMet ? '' : (await profiled(() => verifyAuditChain(api.store))).frames;

  emit({
    rows: [
      {
        what: `hash-chained append per mutating request (network rename, ${CLIENTS} clients)`,
        baseline: `audit off: ${fmt(offRps)} req/s, p50 ${fmt(p50Off, 1)} ms, ${fmt(usOff)} µs CPU per request`,
        subject: `audit on: ${fmt(onRps)} req/s, p50 ${fmt(p50On, 1)} ms, ${fmt(usOn)} µs CPU per request (${appended} rows appended)`,
        ratio: `${(onRps / offRps).toFixed(3)}× (overhead ${(overhead * 100).toFixed(1)}%; CPU per request +${((usOn / usOff - 1) * 100).toFixed(1)}%)`,
        target: 'overhead ≤ 10%',
        met: appendMet,
        ...(appendMet ? {} : { note: `profile of an audited round, top self time: ${appendProfile}.` }),
      },
      {
        what: `\`audit verify\` over ${fmt(result.checked)} records`,
        baseline: '—',
        subject: `${fmt(perMin)} records/min (${fmt(perCpuMin)} per CPU-minute), ${took.toFixed(1)} s`,
        ratio: `${(perCpuMin / 1_000_000).toFixed(2)}× target (CPU time; ${(perMin / 1_000_000).toFixed(2)}× on the wall clock)`,
        target: '≥ 1,000,000 records/min',
        met: verifyMet,
        ...(verifyMet ? {} : { note: `profile of a verify, top self time: ${verifyProfile}.` }),
      },
    ],
    details: [
      `${rounds} alternating rounds of ${seconds} s each (audit off, on, ...) after one unmeasured round of each, medians; CPU per request is this process's (the server's) CPU time over the requests answered; SQLite store (the single-host default), WAL with synchronous=NORMAL.`,
    ],
  });
} finally {
  await api.close();
}

async function headSeq(): Promise<number> {
  const h = await api.store.db.selectFrom('audit_head').select('seq').executeTakeFirstOrThrow();
  return Number(h.seq);
}
