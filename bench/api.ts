/**
 * Authenticated API under load: `GET /compute/v2.1/servers/detail` (what
 * `openstack server list` asks) over 1,000 servers with 50 concurrent
 * clients, against an unauthenticated static route on the same server
 * (`GET /compute/v2.1`, the version document), and against a second static
 * route answering the same bytes as the list (the cost of moving 1.4 MiB
 * through HTTP, whatever builds it). Rounds alternate, medians taken.
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

// The same-size baseline: the list's own answer, captured once, sent as a fixed string without a token.
let sameBytes = '';
const api = await startBenchApi({
  routes: (app) =>
    app.get('/bench/same-bytes', { config: { action: 'compute:version' } }, async (_req, reply) =>
      reply.type('application/json; charset=utf-8').send(sameBytes),
    ),
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
  sameBytes = JSON.stringify(listed);
  const smallBytes = (await (await fetch(`${api.url}/compute/v2.1`)).text()).length;
  const briefBytes = JSON.stringify(await call(api, 'GET', '/compute/v2.1/servers', undefined, 200)).length;
  if (listed.servers.length !== SERVERS || listed.servers_links)
    throw new Error(`listed ${listed.servers.length} servers, not ${SERVERS}`);

  const authed = (path: string) => () =>
    cannon(`${api.url}${path}`, { connections: CLIENTS, seconds, headers: { 'x-auth-token': api.token } });
  const list = authed('/compute/v2.1/servers/detail');
  const brief = authed('/compute/v2.1/servers');
  const stat = () => cannon(`${api.url}/compute/v2.1`, { connections: CLIENTS, seconds });
  const big = () => cannon(`${api.url}/bench/same-bytes`, { connections: CLIENTS, seconds });
  const s: CannonResult[] = [];
  const g: CannonResult[] = [];
  const l: CannonResult[] = [];
  const b: CannonResult[] = [];
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
  }
  for (const x of [...s, ...g, ...l, ...b])
    if (x.errors || x.non2xx || x.requestsPerSecond === 0)
      throw new Error(`errors in a round: ${JSON.stringify(x)}`);
  const briefRps = median(b.map((x) => x.requestsPerSecond));
  const staticRps = median(s.map((x) => x.requestsPerSecond));
  const bigRps = median(g.map((x) => x.requestsPerSecond));
  const listRps = median(l.map((x) => x.requestsPerSecond));
  const listP99 = median(l.map((x) => x.p99Ms));
  const ratio = listRps / staticRps;
  const met = ratio >= 0.5;
  const kib = (Buffer.byteLength(sameBytes) / 1024).toFixed(0);
  // Where a list request's time goes (one more round, profiled in this process: the server's side).
  const { frames } = met ? { frames: '' } : await profiled(list);
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
              note: `${(briefBytes / 1024).toFixed(0)} KiB per answer (id, name and two links per server), read from the store per request like the full list.`,
            }),
      },
    ],
    details: [
      `${rounds} alternating rounds of ${seconds} s each (static, same-size static, list, ids-and-names list, ...), medians; autocannon in its own process, HTTP on loopback (the daemon adds TLS to both alike).`,
    ],
  });
} finally {
  await api.close();
}
