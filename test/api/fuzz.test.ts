/**
 * API fuzzing (fast-check): malformed and hostile requests for every route the
 * API registers, through fastify's inject against the in-process API. Each
 * request is a route from the route table with fuzzed path params, query and
 * body (a valid body with one leaf swapped for a hostile value, arbitrary or
 * deep JSON, garbage text), a random content type and persona. Never a 5xx,
 * never a crash, and a refused request (4xx) changes nothing in the store but
 * the audit log.
 *
 * CI runs BULWARK_FUZZ_RUNS (default 10,000) requests (about 3 minutes on a loaded 2-core host); `npm run test:fuzz` runs
 * 100,000. BULWARK_FUZZ_SEED replays a run (the seed is printed in the figures).
 */
import fc from 'fast-check';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RouteInfo } from '../../src/api/context.js';
import { serverRequest, startTestApi, type TestApi } from '../helpers/api.js';
import { reportFigures } from '../helpers/figures.js';
import { type JsonSchema, minimalValue } from '../helpers/schema-sample.js';
import { diffSnapshots, type StoreSnapshot, snapshotStore } from '../helpers/store-snapshot.js';

const RUNS = Number(process.env.BULWARK_FUZZ_RUNS ?? 10_000);
const SEED = process.env.BULWARK_FUZZ_SEED ? Number(process.env.BULWARK_FUZZ_SEED) : Date.now() % 2 ** 31;
/** Tables a refused request may append to by design: the audit log and its chain head. */
const AUDIT_TABLES = ['audit_events', 'audit_head'];
/**
 * Refusals that write by design: a failed login counts towards the lockout, a failed break-glass attempt
 * is recorded (identity/login.ts, identity/break-glass.ts). Their changes are allowed on these tables only.
 */
const REFUSAL_WRITES: Record<string, readonly string[]> = {
  'identity:issue_token': ['users', 'auth_receipts'],
  'dashboard:session:create': ['users', 'auth_receipts'],
  'webauthn:login': ['users', 'webauthn_challenges'],
  'webauthn:login_options': ['webauthn_challenges'],
  'recovery_codes:login': ['users', 'recovery_codes'],
  'break_glass:open_session': ['users'],
  // A registration attempt spends its pending challenge whatever the outcome: no second try with it.
  'webauthn:register': ['webauthn_challenges'],
};

/** Strings that have broken parsers, shells, SQL, paths and address handling elsewhere. */
const HOSTILE_STRINGS = [
  '',
  ' ',
  '../../../../etc/passwd',
  '..%2F..%2Fetc%2Fpasswd',
  '/etc/shadow',
  'C:\\Windows\\system32',
  "' OR '1'='1",
  "'; DROP TABLE servers; --",
  '" OR ""="',
  '$(reboot)',
  '`id`',
  '; rm -rf / ;',
  '| nc 10.0.0.1 4444',
  '\u0000',
  'a\u0000b',
  '\r\nX-Injected: 1',
  '%00',
  '%s%s%s%n',
  '{{7*7}}',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a hostile literal (log4j-style lookup), not a template
  '${jndi:ldap://x}',
  '<script>alert(1)</script>',
  '__proto__',
  'constructor',
  'prototype',
  '\u202e\u0635\u{1F600}\uFEFF',
  '\uD800',
  '\u{10FFFF}',
  'ǅ̶̡͇̩',
  '0.0.0.0/0',
  '::/0',
  '10.0.0.0/33',
  '10.0.0.1/-1',
  '256.256.256.256/24',
  '10.0.0.0/8x',
  'fe80::/129',
  '::ffff:10.0.0.1/128',
  '10.0.0.1',
  '1e400',
  'NaN',
  '-0',
  'true',
  'null',
  '00000000-0000-0000-0000-000000000000',
  'x'.repeat(256),
  'x'.repeat(70_000),
];

const hostileNumber = fc.constantFrom(
  -1,
  0,
  1,
  65535,
  65536,
  -65536,
  2 ** 31,
  2 ** 32 + 1,
  Number.MAX_SAFE_INTEGER + 2,
  -Number.MAX_SAFE_INTEGER,
  1e308,
  -1e308,
  0.5,
  Number.MIN_VALUE,
);

const hostileString = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...HOSTILE_STRINGS) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 20 }) },
  { weight: 1, arbitrary: fc.uuid() },
);

const deepJson = fc
  .tuple(fc.integer({ min: 100, max: 60_000 }), fc.constantFrom('[', '{"a":'))
  .map(([n, open]) => open.repeat(n) + (open === '[' ? ']' : '1}').repeat(n));

const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: hostileString },
  { weight: 2, arbitrary: hostileNumber },
  { weight: 1, arbitrary: fc.constantFrom(null, true, false, [], {}, [[]], { '': '' }) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
  { weight: 1, arbitrary: fc.array(hostileString, { maxLength: 5 }) },
  { weight: 1, arbitrary: fc.constant(Array.from({ length: 5000 }, (_, i) => i)) },
  {
    weight: 1,
    arbitrary: fc.dictionary(fc.constantFrom('__proto__', 'constructor', 'x', 'name', 'id'), hostileString, {
      maxKeys: 3,
    }),
  },
);

/** encodeURIComponent, with lone surrogates (which it cannot encode) replaced. */
const enc = (s: string) =>
  encodeURIComponent(
    s.replace(/[\uD800-\uDFFF]/g, (c, i: number, all: string) => {
      const pair = /[\uD800-\uDBFF][\uDC00-\uDFFF]/;
      return pair.test(all.slice(i, i + 2)) || pair.test(all.slice(i - 1, i + 1)) ? c : '\uFFFD';
    }),
  );

/** Leaves of a JSON value, as paths. */
function leaves(v: unknown, path: (string | number)[] = []): (string | number)[][] {
  if (v !== null && typeof v === 'object') {
    const entries = Array.isArray(v) ? v.map((x, i) => [i, x] as const) : Object.entries(v);
    const inner = entries.flatMap(([k, x]) => leaves(x, [...path, k]));
    return inner.length ? [path, ...inner] : [path];
  }
  return [path];
}

/** `v` with the value at `path` replaced (or, for `extra`, a new key added beside it). */
function mutate(v: unknown, path: (string | number)[], value: unknown, extra: string | null): unknown {
  if (path.length === 0) {
    if (extra !== null && v !== null && typeof v === 'object' && !Array.isArray(v))
      return Object.assign(Object.create(null), v, { [extra]: value });
    return extra === null ? value : v;
  }
  const [k, ...rest] = path;
  const copy: any = Array.isArray(v) ? [...v] : { ...(v as object) };
  copy[k as string] = mutate(copy[k as string], rest, value, extra);
  return copy;
}

interface Fuzzed {
  route: RouteInfo;
  persona: 'admin' | 'member' | 'none';
  params: string[];
  query: [string, string][];
  body:
    | { kind: 'mutated'; leaf: number; value: unknown; extra: string | null }
    | { kind: 'json'; value: unknown }
    | { kind: 'raw'; text: string }
    | { kind: 'none' };
  contentType: string | null;
}

describe('API fuzzing', () => {
  let api: TestApi;
  const tokens = {} as Record<'admin' | 'member', string>;
  /** Real ids, so fuzzed requests also reach handlers with resources behind them. */
  const realIds: string[] = [];
  const figures = {
    requests: 0,
    '5xx': 0,
    partial_changes: 0,
    refused: 0,
    accepted: 0,
    routes: 0,
    routes_tried: 0,
  };
  const failures: string[] = [];

  beforeAll(async () => {
    api = await startTestApi('sqlite');
    tokens.admin = await api.login('admin', api.adminPassword, 'admin');
    const m = await api.persona('fuzz', 'fuzz-member', 'member');
    tokens.member = m.token;
    const member = api.authOf(m.token);
    await api.platform.quotas.set(m.projectId, {
      instances: -1,
      cores: -1,
      ram: -1,
      volumes: -1,
      gigabytes: -1,
    });
    const { flavorId, imageId } = await api.bootable(m.token, 'fuzz');
    const { servers } = api.platform.compute;
    const server = await servers.create(member, serverRequest(imageId, flavorId, 'fuzz-server'));
    const { networks, securityGroups } = api.platform.network;
    const net = await networks.createNetwork(member, { name: 'fuzz-net' });
    const sub = await networks.createSubnet(member, {
      name: 'fuzz-sub',
      networkId: net.id,
      ipVersion: 4,
      cidr: '10.9.0.0/24',
    });
    const sg = await securityGroups.create(member, { name: 'fuzz-sg' });
    const port = await networks.createPort(member, { networkId: net.id }, (ids) =>
      securityGroups.resolveForPort(member, ids),
    );
    const vol = await api.platform.volume.volumes.create(member, { size: 1, name: 'fuzz-vol' });
    await servers.settled();
    await api.platform.volume.volumes.settled();
    realIds.push(flavorId, imageId, server.id, net.id, sub.id, sg.id, port.id, vol.id, m.projectId, m.userId);
  }, 120_000);

  afterAll(async () => {
    if (api) {
      reportFigures('fuzz', { ...figures, failures: failures.length, seed: SEED, runs: RUNS });
      await api.close();
    }
  });

  /** Waits for background work a 2xx started (builds, snapshots, backups), so its writes are not blamed on the next request. */
  const settled = async () => {
    await api.platform.compute.servers.settled();
    await api.platform.volume.volumes.settled();
    await api.platform.snapshots.snapshots.settled();
    await api.platform.backups.settled();
  };

  const counters = async () => {
    const r = await sql<{
      changes: number;
      seq: number;
    }>`SELECT total_changes() AS changes, (SELECT COALESCE(MAX(seq), 0) FROM audit_events) AS seq`.execute(
      api.store.db,
    );
    const row = r.rows[0]!;
    return { changes: Number(row.changes), seq: Number(row.seq) };
  };

  const request = (routes: readonly RouteInfo[]): fc.Arbitrary<Fuzzed> =>
    fc.constantFrom(...routes).chain((route) => {
      const nParams = [...route.url.matchAll(/:\w+|\*/g)].length;
      const param = fc.oneof(
        { weight: 3, arbitrary: fc.constantFrom(...realIds) },
        { weight: 4, arbitrary: hostileString.map(enc) },
        { weight: 1, arbitrary: fc.constantFrom('..', '.', '..%2F..', '%2e%2e', 'a/../b', '%00', '%ZZ') },
      );
      const qs = route.schema?.querystring as JsonSchema | undefined;
      const qKeys = Object.keys(qs?.properties ?? {});
      const query = fc.array(
        fc.tuple(
          qKeys.length
            ? fc.oneof(fc.constantFrom(...qKeys), fc.constantFrom('x', '__proto__'))
            : fc.constant('x'),
          hostileString,
        ),
        { maxLength: 3 },
      );
      const hasBody = route.method !== 'GET' && route.method !== 'HEAD';
      const body: fc.Arbitrary<Fuzzed['body']> = hasBody
        ? fc.oneof(
            {
              weight: 6,
              arbitrary: fc.record({
                kind: fc.constant('mutated' as const),
                leaf: fc.nat(),
                value: hostileValue,
                extra: fc.option(fc.constantFrom('evil', '__proto__', 'constructor', 'project_id'), {
                  freq: 4,
                  nil: null,
                }),
              }),
            },
            {
              weight: 1,
              arbitrary: fc.record({
                kind: fc.constant('json' as const),
                value: fc.jsonValue({ maxDepth: 4 }),
              }),
            },
            {
              weight: 1,
              arbitrary: fc.record({
                kind: fc.constant('raw' as const),
                text: fc.oneof(deepJson, fc.string({ unit: 'binary', maxLength: 200 })),
              }),
            },
            { weight: 1, arbitrary: fc.constant({ kind: 'none' as const }) },
          )
        : fc.constant({ kind: 'none' as const });
      const contentType = fc.oneof(
        { weight: 8, arbitrary: fc.constant('application/json') },
        {
          weight: 2,
          arbitrary: fc.constantFrom(
            null,
            'text/plain',
            'application/x-www-form-urlencoded',
            'application/octet-stream',
            'application/openstack-images-v2.1-json-patch',
            'application/json; charset=utf-16',
            'multipart/form-data; boundary=x',
            'application/json, text/html',
            '*/*',
          ),
        },
      );
      return fc.record({
        route: fc.constant(route),
        persona: fc.constantFrom('admin', 'admin', 'member', 'none') as fc.Arbitrary<Fuzzed['persona']>,
        params: fc.array(param, { minLength: nParams, maxLength: nParams }),
        query,
        body,
        contentType,
      });
    });

  const bodyOf = (f: Fuzzed): string | Buffer | undefined => {
    const b = f.body;
    switch (b.kind) {
      case 'none':
        return undefined;
      case 'raw':
        return b.text;
      case 'json':
        return JSON.stringify(b.value);
      case 'mutated': {
        const valid = minimalValue(f.route.schema?.body as JsonSchema | undefined) ?? {};
        const paths = leaves(valid);
        return JSON.stringify(mutate(valid, paths[b.leaf % paths.length]!, b.value, b.extra)) ?? 'null';
      }
    }
  };

  let baseline: StoreSnapshot;
  const tried = new Set<string>();

  async function fire(f: Fuzzed): Promise<void> {
    let i = 0;
    const url = `${f.route.url.replace(/:\w+|\*/g, () => f.params[i++] ?? 'x')}${
      f.query.length ? `?${f.query.map(([k, v]) => `${enc(k)}=${enc(v)}`).join('&')}` : ''
    }`;
    const payload = bodyOf(f);
    const headers: Record<string, string> = {};
    if (f.persona !== 'none') headers['x-auth-token'] = tokens[f.persona];
    if (payload !== undefined && f.contentType) headers['content-type'] = f.contentType;
    const before = await counters();
    const res = await api.app.inject({
      method: f.route.method as 'GET',
      url,
      headers,
      ...(payload !== undefined ? { payload } : {}),
    });
    figures.requests++;
    tried.add(`${f.route.method} ${f.route.url}`);
    const what = `${f.route.method} ${url.slice(0, 200)} as ${f.persona} (${f.contentType}) ${String(payload ?? '').slice(0, 200)}`;
    if (res.statusCode >= 500) {
      figures['5xx']++;
      failures.push(`${res.statusCode} for ${what}: ${res.body.slice(0, 300)}`);
    }
    if (res.statusCode < 400) {
      figures.accepted++;
      // A change it made is its own; take a new baseline once its background work is done.
      await settled();
      const after = await counters();
      if (after.changes - before.changes !== 2 * (after.seq - before.seq))
        baseline = await snapshotStore(api.store, AUDIT_TABLES);
      return;
    }
    figures.refused++;
    const after = await counters();
    // Every audit append is two changes (the row and the chain head); anything beyond is a write.
    if (after.changes - before.changes === 2 * (after.seq - before.seq)) return;
    const now = await snapshotStore(api.store, AUDIT_TABLES);
    const allowed = REFUSAL_WRITES[f.route.action] ?? [];
    const changed = diffSnapshots(baseline, now).filter((c) => !allowed.includes(c.split(':')[0]!));
    baseline = now;
    if (changed.length) {
      figures.partial_changes++;
      failures.push(`refused ${res.statusCode} but changed ${changed.join('; ')} for ${what}`);
    }
  }

  // What the fuzzer found, kept as plain cases: keys named like Object.prototype's were looked up with `in`.
  it('prototype-named keys are ordinary keys: a clear 4xx or a normal answer, never a 500', async () => {
    const admin = tokens.admin;
    const [flavor, image, server] = realIds;
    const img = await api.call('POST', '/image/v2/images', tokens.member, {
      constructor: 'x',
      name: 'proto',
    });
    expect(img.status).toBe(201);
    expect(img.json.constructor).toBe('x');
    expect(
      (await api.call('GET', `/compute/v2.1/flavors/${flavor}/os-extra_specs/constructor`, admin)).status,
    ).toBe(404);
    expect(
      (await api.call('DELETE', `/compute/v2.1/flavors/${flavor}/os-extra_specs/toString`, admin)).status,
    ).toBe(404);
    expect(
      (await api.call('DELETE', `/compute/v2.1/servers/${server}/metadata/constructor`, tokens.member))
        .status,
    ).toBe(404);
    const patch = await api.app.inject({
      method: 'PATCH',
      url: `/image/v2/images/${image}`,
      headers: {
        'x-auth-token': tokens.member,
        'content-type': 'application/openstack-images-v2.1-json-patch',
      },
      payload: JSON.stringify([{ op: 'remove', path: '/hasOwnProperty' }]),
    });
    expect(patch.statusCode).toBe(409);
    await api.platform.network.zones.create({ name: 'fuzz-zone' });
    const zone = await api.call('POST', '/network/v2.0/bulwark-zone-rules', admin, {
      bulwark_zone_rule: { from_zone: 'fuzz-zone', to_zone: 'default', protocol: 'constructor' },
    });
    expect(zone.status).toBe(400);
    expect(zone.json.NeutronError?.message ?? JSON.stringify(zone.json)).toMatch(/Protocol 'constructor'/);
  });

  it(`${RUNS} hostile requests over every route: no 5xx, no crash, no change from a refused request`, {
    timeout: 120_000 + RUNS * 60,
  }, async () => {
    const routes = api.app.routeTable;
    figures.routes = routes.length;
    baseline = await snapshotStore(api.store, AUDIT_TABLES);
    await fc.assert(
      fc.asyncProperty(request(routes), async (f) => {
        await fire(f);
      }),
      { numRuns: RUNS, seed: SEED, endOnFailure: true },
    );
    expect(failures).toEqual([]);
  });

  it('tried (nearly) every route', () => {
    expect(figures.requests).toBeGreaterThanOrEqual(RUNS);
    figures.routes_tried = tried.size;
    // Routes are drawn uniformly: at CI's run count every one of ~500 is hit many times over.
    if (RUNS >= 10_000) expect(tried.size).toBe(figures.routes);
  });
});
