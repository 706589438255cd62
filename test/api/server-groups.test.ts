/**
 * Scheduling and Nova server groups (docs/multi-host.md) on both dialects:
 * the group API as Nova answers it, anti-affinity that is never broken even
 * by concurrent creates through two control-plane replicas on one database,
 * and placement claims that never overcommit a host.
 */
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApi } from '../../src/api/server.js';
import { NO_VALID_HOST } from '../../src/compute/scheduler/index.js';
import { FakeHypervisor } from '../../src/host/fake-hypervisor.js';
import { buildPlatform, type Platform } from '../../src/platform.js';
import { openStore, type Store } from '../../src/store/database.js';
import { PUBLIC_URL, startTestApi, type TestApi, testPlatformOptions } from '../helpers/api.js';
import { dialects } from '../helpers/store.js';

const C = '/compute/v2.1';
const HOSTS = ['mh-a', 'mh-b', 'mh-c'];
const v = (minor: number) => ({ 'openstack-api-version': `compute 2.${minor}` });

describe.each(dialects())('server groups and placement on %s', (dialect) => {
  let api: TestApi;
  let token: string;
  let other: string;
  let boot: { flavorId: string; imageId: string };
  /** A second `bulwark serve` on the same database: its own pool, platform and API. */
  let replica: { store: Store; platform: Platform; app: FastifyInstance };

  const attach = (p: Platform) => {
    for (const h of HOSTS) p.compute.servers.attachHost(h, new FakeHypervisor());
  };

  beforeAll(async () => {
    api = await startTestApi(dialect);
    token = (await api.persona('mh-proj', 'mh-user', 'member')).token;
    other = (await api.persona('mh-other', 'mh-other-user', 'member')).token;
    boot = await api.bootable(token, 'mh', 256);
    const projectId = api.authOf(token).projectId as string;
    await api.platform.quotas.set(projectId, { instances: -1, cores: -1, ram: -1 });
    // Three hosts with room for two 256 MiB servers each; the local test host is disabled.
    await api.platform.compute.registerLocalHost();
    await api.platform.compute.hosts.setState('test-host', 'disabled');
    for (const name of HOSTS)
      await api.platform.compute.hosts.register({
        name,
        capacity: { vcpus: 4, ramMiB: 512, diskGiB: 100 },
        features: ['uefi'],
      });
    attach(api.platform);
    const store = await openStore({ url: api.db.url });
    const platform = buildPlatform(
      store,
      new FakeHypervisor(),
      { sync: async () => undefined },
      testPlatformOptions(api.db.dir),
    );
    attach(platform);
    const app = await buildApi({ store, ...platform, publicUrl: PUBLIC_URL });
    await app.ready();
    replica = { store, platform, app };
  });
  afterAll(async () => {
    if (replica) {
      await replica.platform.compute.servers.settled();
      await replica.app.close();
      await replica.store.close();
    }
    await api?.close();
  });

  const call = async (
    method: 'GET' | 'POST' | 'DELETE',
    url: string,
    body?: unknown,
    headers: Record<string, string> = {},
    as = token,
    app = api.app,
  ) => {
    const res = await app.inject({
      method,
      url,
      headers: { 'x-auth-token': as, ...(body ? { 'content-type': 'application/json' } : {}), ...headers },
      ...(body ? { payload: JSON.stringify(body) } : {}),
    });
    return {
      status: res.statusCode,
      json: res.body ? JSON.parse(res.body) : undefined,
      headers: res.headers,
    };
  };
  const group = async (name: string, policy: string, rules?: Record<string, unknown>) => {
    const r = await call(
      'POST',
      `${C}/os-server-groups`,
      { server_group: { name, policy, ...(rules ? { rules } : {}) } },
      v(64),
    );
    expect(r.status).toBe(200);
    return r.json.server_group.id as string;
  };
  const create = (name: string, groupId?: string, app = api.app) =>
    call(
      'POST',
      `${C}/servers`,
      {
        server: { name, imageRef: boot.imageId, flavorRef: boot.flavorId },
        ...(groupId ? { 'os:scheduler_hints': { group: groupId } } : {}),
      },
      {},
      token,
      app,
    );
  const rowsOf = (ids: string[]) =>
    api.store.db
      .selectFrom('servers')
      .select(['id', 'host', 'status', 'fault'])
      .where('id', 'in', ids)
      .execute();
  const clear = async () => {
    for (const s of await api.platform.compute.servers.list(api.authOf(token), {}))
      await api.platform.compute.servers.delete(api.authOf(token), s.id);
    await api.platform.compute.servers.settled();
  };

  it('creates groups as Nova does: policies before 2.64, policy and rules from 2.64', async () => {
    const old = await call('POST', `${C}/os-server-groups`, {
      server_group: { name: 'g1', policies: ['anti-affinity'] },
    });
    expect(old.status).toBe(200);
    expect(old.json.server_group).toMatchObject({ name: 'g1', policies: ['anti-affinity'], members: [] });
    expect(old.json.server_group.policy).toBeUndefined();
    const id = old.json.server_group.id as string;
    const shown = await call('GET', `${C}/os-server-groups/${id}`, undefined, v(64));
    expect(shown.json.server_group).toMatchObject({ policy: 'anti-affinity', rules: {} });
    expect(shown.headers['openstack-api-version']).toBe('compute 2.64');
    const ruled = await call(
      'POST',
      `${C}/os-server-groups`,
      { server_group: { name: 'g2', policy: 'anti-affinity', rules: { max_server_per_host: 2 } } },
      v(64),
    );
    expect(ruled.json.server_group.rules).toEqual({ max_server_per_host: 2 });
    expect((await call('GET', `${C}/os-server-groups`)).json.server_groups).toHaveLength(2);
    // Other projects see nothing of it.
    expect((await call('GET', `${C}/os-server-groups/${id}`, undefined, {}, other)).status).toBe(404);
    expect((await call('GET', `${C}/os-server-groups`, undefined, {}, other)).json.server_groups).toEqual([]);
    expect((await call('DELETE', `${C}/os-server-groups/${id}`, undefined, {}, other)).status).toBe(404);
    expect((await call('DELETE', `${C}/os-server-groups/${id}`)).status).toBe(204);
    expect((await call('DELETE', `${C}/os-server-groups/${ruled.json.server_group.id}`)).status).toBe(204);
  });

  it('refuses bad groups with 400 and changes nothing', async () => {
    const bad = async (body: unknown, minor: number, why: RegExp) => {
      const r = await call('POST', `${C}/os-server-groups`, { server_group: body }, v(minor));
      expect(r.status, JSON.stringify(r.json)).toBe(400);
      expect(JSON.stringify(r.json)).toMatch(why);
    };
    await bad(
      { name: 'x', policy: 'affinity', rules: { max_server_per_host: 2 } },
      64,
      /Only anti-affinity policy supports rules\./,
    );
    await bad(
      { name: 'x', policy: 'anti-affinity', rules: { max_server_per_host: 0 } },
      64,
      /positive integer/,
    );
    await bad({ name: 'x', policy: 'sideways' }, 64, /Invalid policy/);
    await bad({ name: 'x', policies: ['soft-affinity'] }, 1, /2\.15/);
    await bad({ name: 'x', policy: 'affinity' }, 1, /policies/);
    await bad({ name: 'x', policies: ['affinity', 'anti-affinity'] }, 1, /policies/);
    await bad({ name: 'x', policy: 'affinity', extra: 1 }, 64, /extra|additional/i);
    expect(
      (
        await call(
          'POST',
          `${C}/os-server-groups`,
          { server_group: { name: 'x', policy: 'affinity' } },
          v(65),
        )
      ).status,
    ).toBe(406);
    expect((await call('GET', `${C}/servers`, undefined, v(64))).status).toBe(406);
    expect((await call('GET', `${C}/os-server-groups`)).json.server_groups).toEqual([]);
  });

  it('anti-affinity: 3 servers on 3 hosts, the 4th is ERROR "No valid host was found", never co-located', async () => {
    const g = await group('production-web-tier', 'anti-affinity');
    const ids: string[] = [];
    for (const n of ['web-node-01', 'web-node-02', 'web-node-03', 'web-node-04']) {
      const r = await create(n, g);
      expect(r.status).toBe(202);
      ids.push(r.json.server.id);
    }
    const rows = await rowsOf(ids);
    const placed = rows.filter((r) => r.host);
    expect(new Set(placed.map((r) => r.host))).toEqual(new Set(HOSTS));
    const failed = rows.find((r) => r.id === ids[3]);
    expect(failed).toMatchObject({ host: null, status: 'ERROR' });
    const shown = await call('GET', `${C}/servers/${ids[3]}`);
    expect(shown.json.server.fault.message).toBe(NO_VALID_HOST);
    expect((await call('GET', `${C}/os-server-groups/${g}`)).json.server_group.members).toEqual(ids);
    await clear();
  });

  it('10 concurrent creates into a 3-slot anti-affinity group, through two replicas, never co-locate', async () => {
    const g = await group('racy', 'anti-affinity');
    const res = await Promise.all(
      Array.from({ length: 10 }, (_, i) => create(`race-${i}`, g, i % 2 ? replica.app : api.app)),
    );
    expect(res.map((r) => r.status)).toEqual(Array(10).fill(202));
    const rows = await rowsOf(res.map((r) => r.json.server.id));
    const hosts = rows.flatMap((r) => (r.host ? [r.host] : []));
    expect(hosts.sort()).toEqual([...HOSTS].sort());
    expect(rows.filter((r) => r.status === 'ERROR')).toHaveLength(7);
    await clear();
  });

  it('concurrent creates from many projects never overcommit a host; a delete frees its claim', async () => {
    // Ten projects: no project quota lock serialises these, only the placement claim's host locks.
    const tenants = await Promise.all(
      Array.from({ length: 10 }, async (_, i) => {
        const t = (await api.persona(`mh-fill-${i}`, `mh-fill-user-${i}`, 'member')).token;
        return { token: t, boot: await api.bootable(t, `mh-fill-${i}`, 256) };
      }),
    );
    const res = await Promise.all(
      tenants.map((t, i) =>
        call(
          'POST',
          `${C}/servers`,
          { server: { name: `fill-${i}`, imageRef: t.boot.imageId, flavorRef: boot.flavorId } },
          {},
          t.token,
          i % 2 ? replica.app : api.app,
        ),
      ),
    );
    expect(res.map((r) => r.status)).toEqual(Array(10).fill(202));
    const rows = await rowsOf(res.map((r) => r.json.server.id));
    const perHost = new Map<string, number>();
    for (const r of rows) if (r.host) perHost.set(r.host, (perHost.get(r.host) ?? 0) + 1);
    // 512 MiB per host, 256 MiB per server: two each, six in all; the rest found no host.
    expect([...perHost.values()]).toEqual([2, 2, 2]);
    expect(rows.filter((r) => r.status === 'ERROR')).toHaveLength(4);
    const onA = rows.find((r) => r.host === 'mh-a') as { id: string };
    const owner = tenants[res.findIndex((r) => r.json.server.id === onA.id)]?.token as string;
    await api.platform.compute.servers.delete(api.authOf(owner), onA.id);
    await api.platform.compute.servers.settled();
    const again = await create('fill-again');
    expect((await rowsOf([again.json.server.id]))[0]?.host).toBe('mh-a');
    await clear();
    for (const [i, t] of tenants.entries()) {
      const mine = rows.filter((r) => r.id === res[i]?.json.server.id && r.id !== onA.id);
      for (const r of mine) await api.platform.compute.servers.delete(api.authOf(t.token), r.id);
    }
    await api.platform.compute.servers.settled();
  });

  it('affinity follows the first member; max_server_per_host allows that many per host; soft policies bend', async () => {
    const aff = await group('together', 'affinity');
    const a = await Promise.all([create('t1', aff), create('t2', aff)]);
    const rows = await rowsOf(a.map((r) => r.json.server.id));
    expect(rows[0]?.host).toBeTruthy();
    expect(rows[0]?.host).toBe(rows[1]?.host);
    // The host is now full (2 x 256 MiB): a third member cannot follow, so no valid host.
    const third = await create('t3', aff);
    expect((await rowsOf([third.json.server.id]))[0]?.status).toBe('ERROR');
    await clear();
    const two = await group('two-per-host', 'anti-affinity', { max_server_per_host: 2 });
    const six = await Promise.all(Array.from({ length: 7 }, (_, i) => create(`m${i}`, two)));
    const placed = (await rowsOf(six.map((r) => r.json.server.id))).filter((r) => r.host);
    expect(placed).toHaveLength(6);
    await clear();
    const soft = await group('spread', 'soft-anti-affinity');
    const s = await Promise.all(Array.from({ length: 4 }, (_, i) => create(`s${i}`, soft)));
    const sRows = await rowsOf(s.map((r) => r.json.server.id));
    // Three hosts, four members: all placed, one host holds two.
    expect(sRows.every((r) => r.host)).toBe(true);
    expect(new Set(sRows.map((r) => r.host)).size).toBe(3);
    await clear();
  });

  it("a hint naming another project's group, or none, is a 400 that creates nothing", async () => {
    const g = await group('mine', 'affinity');
    const theirs = await call(
      'POST',
      `${C}/servers`,
      {
        server: { name: 'x', imageRef: boot.imageId, flavorRef: boot.flavorId },
        'os:scheduler_hints': { group: g },
      },
      {},
      other,
    );
    expect(theirs.status).toBe(400);
    const missing = await create('y', '00000000-0000-0000-0000-000000000000');
    expect(missing.status).toBe(400);
    expect(missing.json.badRequest.message).toMatch(/not found/);
    expect(await api.platform.compute.servers.list(api.authOf(token), {})).toEqual([]);
  });

  it('enforces Nova quotas: 10 groups per project, 10 members per group (403)', async () => {
    const existing = (await call('GET', `${C}/os-server-groups`)).json.server_groups.length as number;
    let last = 0;
    for (let i = existing; i < 11; i++) {
      last = (
        await call('POST', `${C}/os-server-groups`, {
          server_group: { name: `q${i}`, policies: ['affinity'] },
        })
      ).status;
    }
    expect(last).toBe(403);
    const g = (await call('GET', `${C}/os-server-groups`)).json.server_groups[0].id as string;
    await call('DELETE', `${C}/os-server-groups/${g}`);
    const soft = await group('many', 'soft-affinity');
    for (let i = 0; i < 10; i++) expect((await create(`many-${i}`, soft)).status).toBe(202);
    const over = await create('many-10', soft);
    expect(over.status).toBe(403);
    expect(over.json.forbidden.message).toMatch(/too many servers in group/);
    await clear();
  });
});
