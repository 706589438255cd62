/**
 * Authenticated API under load: `GET /compute/v2.1/servers/detail` (what
 * `openstack server list` asks) over 1,000 servers with 50 concurrent
 * clients, against an unauthenticated static route on the same server
 * (`GET /compute/v2.1`, the version document), and against a second static
 * route answering the same bytes as the list (the cost of moving 1.4 MiB
 * through HTTP, whatever builds it). Rounds alternate, medians taken. The
 * list is rendered once per change of the store (src/api/rendered-cache.ts),
 * so the rounds measure a warm list; the first list after a change is timed
 * apart (one write, then one list, 5 times).
 *
 *   npx tsc -p bench/tsconfig.json && node dist-bench/bench/api.js [rounds] [seconds]
 */
import { uuid } from '../src/util/ids.js';
import { type CannonResult, cannon } from './lib/cannon.js';
import { profiled } from './lib/cpu-profile.js';
import { call, startBenchApi } from './lib/platform.js';
import { emit, fmt, median } from './lib/result.js';

const rounds = Number(process.argv[2] ?? 3);
const seconds = Number(process.argv[3] ?? 5);
const SERVERS = 1000;
const CLIENTS = 50;

// The same-size baselines: each list's own answer, captured once, sent as fixed bytes without a token
// (a Buffer, as the kept list is sent: no encoding per request on either side).
let sameBytes = Buffer.alloc(0);
let sameBriefBytes = Buffer.alloc(0);
const api = await startBenchApi({
  routes: (app) => {
    app.get('/bench/same-bytes', { config: { action: 'compute:version' } }, async (_req, reply) =>
      reply.type('application/json; charset=utf-8').send(sameBytes),
    );
    app.get('/bench/same-brief-bytes', { config: { action: 'compute:version' } }, async (_req, reply) =>
      reply.type('application/json; charset=utf-8').send(sameBriefBytes),
    );
  },
});
try {
  // One server made the real way; 999 copies of its row (the project's quota stops real creates at 10).
  const { flavorId, imageId } = await api.bootable();
  const created = await call<{ server: { id: string } }>(
    api,
    'POST',
    '/compute/v2.1/servers',
    { server: { name: 'bench-0', imageRef: imageId, flavorRef: flavorId, networks: 'none' } },
    202,
  );
  await api.platform.compute.servers.settled();
  const row = await api.store.db
    .selectFrom('servers')
    .selectAll()
    .where('id', '=', created.server.id)
    .executeTakeFirstOrThrow();
  for (let i = 1; i < SERVERS; i += 100)
    await api.store.db
      .insertInto('servers')
      .values(
        Array.from({ length: Math.min(100, SERVERS - i) }, (_, k) => ({
          ...row,
          id: uuid(),
          name: `bench-${i + k}`,
        })),
      )
      .execute();
  const listed = await call<{ servers: unknown[]; servers_links?: unknown }>(
    api,
    'GET',
    '/compute/v2.1/servers/detail',
    undefined,
    200,
  );
  sameBytes = Buffer.from(JSON.stringify(listed));
  const smallBytes = (await (await fetch(`${api.url}/compute/v2.1`)).text()).length;
  sameBriefBytes = Buffer.from(
    JSON.stringify(await call(api, 'GET', '/compute/v2.1/servers', undefined, 200)),
  );
  const briefBytes = sameBriefBytes.length;
  if (listed.servers.length !== SERVERS || listed.servers_links)
    throw new Error(`listed ${listed.servers.length} servers, not ${SERVERS}`);

  const authed = (path: string) => () =>
    cannon(`${api.url}${path}`, { connections: CLIENTS, seconds, headers: { 'x-auth-token': api.token } });
  const list = authed('/compute/v2.1/servers/detail');
  const brief = authed('/compute/v2.1/servers');
  const stat = () => cannon(`${api.url}/compute/v2.1`, { connections: CLIENTS, seconds });
  const big = () => cannon(`${api.url}/bench/same-bytes`, { connections: CLIENTS, seconds });
  const bigBrief = () => cannon(`${api.url}/bench/same-brief-bytes`, { connections: CLIENTS, seconds });
  const s: CannonResult[] = [];
  const g: CannonResult[] = [];
  const l: CannonResult[] = [];
  const b: CannonResult[] = [];
  const gb: CannonResult[] = [];
  // A round's clients stop, but the server still answers what they had sent: wait for it to be idle,
  // or the next round measures the backlog of the one before.
  const idle = async () => {
    for (let i = 0; i < 600; i++) {
      const t = Date.now();
      await fetch(`${api.url}/compute/v2.1`).then((r) => r.text());
      if (Date.now() - t < 50) return;
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  for (let r = 0; r < rounds; r++) {
    await idle();
    s.push(await stat());
    await idle();
    g.push(await big());
    await idle();
    l.push(await list());
    await idle();
    b.push(await brief());
    await idle();
    gb.push(await bigBrief());
  }
  for (const x of [...s, ...g, ...l, ...b, ...gb])
    if (x.errors || x.non2xx || x.requestsPerSecond === 0)
      throw new Error(`errors in a round: ${JSON.stringify(x)}`);
  const briefRps = median(b.map((x) => x.requestsPerSecond));
  const staticRps = median(s.map((x) => x.requestsPerSecond));
  const bigRps = median(g.map((x) => x.requestsPerSecond));
  const bigBriefRps = median(gb.map((x) => x.requestsPerSecond));
  const listRps = median(l.map((x) => x.requestsPerSecond));
  const listP99 = median(l.map((x) => x.p99Ms));
  const ratio = listRps / staticRps;
  const met = ratio >= 0.5;
  const kib = (sameBytes.length / 1024).toFixed(0);
  const briefKib = (briefBytes / 1024).toFixed(0);
  // Where a list request's time goes (one more round, profiled in this process: the server's side).
  const { frames } = met ? { frames: '' } : await profiled(list);
  // The list right after a change (a write moves the store's mark): rendered from the store again.
  const cold: number[] = [];
  for (let i = 0; i < 5; i++) {
    await api.store.db
      .updateTable('servers')
      .set({ name: `bench-cold-${i}` })
      .where('id', '=', created.server.id)
      .execute();
    const t = performance.now();
    await call(api, 'GET', '/compute/v2.1/servers/detail', undefined, 200);
    cold.push(performance.now() - t);
  }
  const coldMs = median(cold).toFixed(0);
  emit({
    rows: [
      {
        what: `list ${fmt(SERVERS)} servers (servers/detail), ${CLIENTS} clients`,
        baseline: `static route: ${fmt(staticRps)} req/s, p99 ${median(s.map((x) => x.p99Ms))} ms`,
        subject: `${fmt(listRps, 1)} req/s, p99 ${listP99} ms`,
        ratio: `${ratio.toFixed(3)}×`,
        target: '≥ 0.5× the static route; p99 reported',
        met,
        ...(met
          ? {}
          : {
              note:
                `each answer is ${kib} KiB of JSON (1,000 full server views) against the static route's ${smallBytes} bytes; ` +
                `the same ${kib} KiB from a static route reach ${fmt(bigRps)} req/s (${(bigRps / staticRps).toFixed(3)}× the small route), ` +
                'so half the small route is out of reach for these bytes, whatever builds them (next row). ' +
                `The list is rendered once per change of the store and then sent as kept bytes; the first list after a change takes ${coldMs} ms (median of 5, one client). ` +
                `Server-side profile of a list round, top self time: ${frames}.`,
            }),
      },
      {
        what: `same list, against a static route answering the same ${kib} KiB`,
        baseline: `same-size static route: ${fmt(bigRps)} req/s, p99 ${median(g.map((x) => x.p99Ms))} ms`,
        subject: `${fmt(listRps, 1)} req/s, p99 ${listP99} ms`,
        ratio: `${(listRps / bigRps).toFixed(3)}×`,
        target: '≥ 0.5× (a second baseline: the bytes alone)',
        met: listRps / bigRps >= 0.5,
      },
      {
        what: `list ${fmt(SERVERS)} servers (ids and names only: servers), ${CLIENTS} clients`,
        baseline: `static route: ${fmt(staticRps)} req/s`,
        subject: `${fmt(briefRps, 1)} req/s, p99 ${median(b.map((x) => x.p99Ms))} ms`,
        ratio: `${(briefRps / staticRps).toFixed(3)}×`,
        target: '≥ 0.5× the static route',
        met: briefRps / staticRps >= 0.5,
        ...(briefRps / staticRps >= 0.5
          ? {}
          : {
              note: `${briefKib} KiB per answer (id, name and two links per server), kept between changes like the full list; the same ${briefKib} KiB from a static route reach ${fmt(bigBriefRps)} req/s (${(bigBriefRps / staticRps).toFixed(3)}× the small route: next row).`,
            }),
      },
      {
        what: `ids-and-names list, against a static route answering the same ${briefKib} KiB`,
        baseline: `same-size static route: ${fmt(bigBriefRps)} req/s, p99 ${median(gb.map((x) => x.p99Ms))} ms`,
        subject: `${fmt(briefRps, 1)} req/s, p99 ${median(b.map((x) => x.p99Ms))} ms`,
        ratio: `${(briefRps / bigBriefRps).toFixed(3)}×`,
        target: '≥ 0.5× (a second baseline: the bytes alone)',
        met: briefRps / bigBriefRps >= 0.5,
      },
    ],
    details: [
      `${rounds} alternating rounds of ${seconds} s each (static, same-size static, list, ids-and-names list, its same-size static, ...), medians; autocannon in its own process, HTTP on loopback (the daemon adds TLS to both alike).`,
    ],
  });
} finally {
  await api.close();
}
