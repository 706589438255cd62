/**
 * Live migration's control-plane rules (docs/multi-host.md), on both stores:
 * Nova's os-migrateLive (admin only, bad bodies 400), the destination picked by
 * the real scheduler and claimed under the same locks (never the current host,
 * never an anti-affinity member's), a failure leaving the server where it was,
 * os-migrations and server-migrations views, and the 2.30 microversion taken only
 * on the routes the CLI uses for `--host`. The host side is a fake migrator
 * beside the real one: test/e2e/multi-host.test.ts moves real guests over TLS.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LiveMigrator } from '../../src/compute/servers.js';
import { FakeHypervisor } from '../../src/host/fake-hypervisor.js';
import { fakeHosts, startTestApi, type TestApi } from '../helpers/api.js';
import { dialects } from '../helpers/store.js';

const C = '/compute/v2.1';
const HOSTS = ['lm-a', 'lm-b', 'lm-c'];

describe.each(dialects())('live migration API on %s', (dialect) => {
  let api: TestApi;
  let member = '';
  let boot: { flavorId: string; imageId: string };
  const moves: { serverId: string; from: string; to: string }[] = [];
  let failNext = false;
  const drivers = new Map(HOSTS.map((h) => [h, new FakeHypervisor()]));
  const released: string[] = [];
  const migrator: LiveMigrator = {
    canHost: (h) => drivers.has(h),
    moved: async (from) => {
      released.push(from);
    },
    live: async (o) => {
      if (failNext) {
        failNext = false;
        throw new Error('the destination refused the stream');
      }
      await o.onProgress({
        status: 'active',
        memoryTotal: 100,
        memoryProcessed: 100,
        memoryRemaining: 0,
        diskTotal: 10,
        diskProcessed: 10,
      });
      // What the real hub does: the guest is defined and running at the destination, gone at the source.
      await drivers.get(o.to)!.define(o.spec);
      await drivers.get(o.to)!.start(o.serverId);
      await drivers.get(o.from)!.undefine(o.serverId);
      moves.push({ serverId: o.serverId, from: o.from, to: o.to });
    },
  };

  beforeAll(async () => {
    api = await startTestApi(dialect);
    member = (await api.persona('lm-proj', 'lm-user', 'member')).token;
    boot = await api.bootable(member, 'lm', 256);
    await fakeHosts(api, member, drivers);
    api.platform.compute.servers.migrator = migrator;
  });
  afterAll(() => api?.close());

  const create = async (name: string, group?: string) => {
    const r = await api.call('POST', `${C}/servers`, member, {
      server: { name, imageRef: boot.imageId, flavorRef: boot.flavorId, networks: 'none' },
      ...(group ? { 'os:scheduler_hints': { group } } : {}),
    });
    expect(r.status, JSON.stringify(r.json)).toBe(202);
    await api.platform.compute.servers.settled(r.json.server.id);
    return r.json.server.id as string;
  };
  const hostOf = async (id: string) =>
    (await api.call('GET', `${C}/servers/${id}`)).json.server['OS-EXT-SRV-ATTR:host'] as string;
  const migrate = (id: string, body: Record<string, unknown>, token?: string, headers?: string) =>
    api.app
      .inject({
        method: 'POST',
        url: `${C}/servers/${id}/action`,
        headers: {
          'x-auth-token': token ?? admin,
          'content-type': 'application/json',
          ...(headers ? { 'openstack-api-version': `compute ${headers}` } : {}),
        },
        payload: JSON.stringify({ 'os-migrateLive': body }),
      })
      .then((r) => ({
        status: r.statusCode,
        json: r.body ? JSON.parse(r.body) : undefined,
        headers: r.headers,
      }));
  let admin = '';

  it('moves a server to another host the scheduler picks (admin only), with its migration recorded', async () => {
    admin = await api.login('admin', api.adminPassword, 'admin');
    const id = await create('lm-1');
    const from = await hostOf(id);
    // A member may not (Nova's default), and nothing changes.
    const refused = await migrate(
      id,
      { host: null, block_migration: false, disk_over_commit: false },
      member,
    );
    expect(refused.status).toBe(403);
    expect(await hostOf(id)).toBe(from);
    const r = await migrate(id, { host: null, block_migration: false, disk_over_commit: false }, admin);
    expect(r.status, JSON.stringify(r.json)).toBe(202);
    await api.platform.compute.servers.settled(id);
    const to = await hostOf(id);
    expect(to).not.toBe(from);
    expect(HOSTS).toContain(to);
    const shown = (await api.call('GET', `${C}/servers/${id}`, admin)).json.server;
    expect(shown.status).toBe('ACTIVE');
    const placement = await api.store.db
      .selectFrom('placements')
      .selectAll()
      .where('server_id', '=', id)
      .executeTakeFirstOrThrow();
    expect(placement.host).toBe(to);
    expect(released).toEqual([from]);
    const migs = await api.call('GET', `${C}/os-migrations?instance_uuid=${id}`, admin);
    expect(migs.status).toBe(200);
    expect(migs.json.migrations[0]).toMatchObject({
      instance_uuid: id,
      source_compute: from,
      dest_compute: to,
      status: 'completed',
      migration_type: 'live-migration',
      memory_processed_bytes: 100,
    });
    expect((await api.call('GET', `${C}/os-migrations`, member)).status).toBe(403);
    // server-migrations lists the ones in progress: none now.
    expect((await api.call('GET', `${C}/servers/${id}/migrations`, admin)).json.migrations).toEqual([]);
  });

  it("keeps anti-affinity: never onto a member's host, even when asked; a failure leaves the server where it was", async () => {
    const g = await api.call('POST', `${C}/os-server-groups`, member, {
      server_group: { name: 'lm-aa', policies: ['anti-affinity'] },
    });
    const gid = g.json.server_group.id as string;
    const a = await create('lm-aa-1', gid);
    const b = await create('lm-aa-2', gid);
    const [ha, hb] = [await hostOf(a), await hostOf(b)];
    const third = HOSTS.find((h) => h !== ha && h !== hb)!;
    const onto = await migrate(a, { host: hb, block_migration: 'auto' }, admin, '2.30');
    expect(onto.status).toBe(400);
    expect(onto.json.badRequest.message).toMatch(/No valid host was found/);
    expect(await hostOf(a)).toBe(ha);
    // Already there: 400, changes nothing.
    expect((await migrate(a, { host: ha, block_migration: 'auto' }, admin, '2.30')).status).toBe(400);
    failNext = true;
    expect((await migrate(a, { host: null }, admin)).status).toBe(202);
    await api.platform.compute.servers.settled(a);
    expect(await hostOf(a)).toBe(ha);
    const claim = await api.store.db
      .selectFrom('placements')
      .selectAll()
      .where('server_id', '=', a)
      .executeTakeFirstOrThrow();
    expect(claim.host).toBe(ha);
    const failed = (await api.call('GET', `${C}/os-migrations?instance_uuid=${a}`, admin)).json.migrations[0];
    expect(failed).toMatchObject({ status: 'error', dest_compute: third });
    expect((await api.call('GET', `${C}/servers/${a}`, admin)).json.server.status).toBe('ACTIVE');
    // The scheduler's only choice is the third host.
    expect((await migrate(a, { host: null }, admin)).status).toBe(202);
    await api.platform.compute.servers.settled(a);
    expect(await hostOf(a)).toBe(third);
  });

  it('refuses bad bodies (400) and a stopped server (409); takes 2.30 only where the CLI needs it', async () => {
    const id = await create('lm-2');
    expect((await migrate(id, { host: null, speed: 'max' }, admin)).status).toBe(400);
    expect((await migrate(id, { block_migration: false }, admin)).status).toBe(400); // host is required
    expect((await migrate(id, { host: null, force: true }, admin)).status).toBe(400);
    const ok230 = await api.app.inject({
      method: 'GET',
      url: `${C}/servers/${id}`,
      headers: { 'x-auth-token': admin, 'openstack-api-version': 'compute 2.30' },
    });
    expect(ok230.statusCode).toBe(200);
    expect(ok230.headers['openstack-api-version']).toBe('compute 2.30');
    // The CLI finds a server given by name with the list filter, at 2.30 too; a create stays 2.1.
    const byName = await api.app.inject({
      method: 'GET',
      url: `${C}/servers?name=lm-2`,
      headers: { 'x-auth-token': member, 'openstack-api-version': 'compute 2.30' },
    });
    expect(byName.statusCode).toBe(200);
    expect(byName.json().servers.map((s: { id: string }) => s.id)).toEqual([id]);
    const create230 = await api.app.inject({
      method: 'POST',
      url: `${C}/servers`,
      headers: { 'x-auth-token': admin, 'openstack-api-version': 'compute 2.30' },
      payload: { server: { name: 'lm-230' } },
    });
    expect(create230.statusCode).toBe(406);
    const list230 = await api.app.inject({
      method: 'GET',
      url: `${C}/flavors`,
      headers: { 'x-auth-token': admin, 'openstack-api-version': 'compute 2.30' },
    });
    expect(list230.statusCode).toBe(406);
    expect((await migrate(id, { host: null }, admin, '2.57')).status).toBe(406);
    expect((await api.call('POST', `${C}/servers/${id}/action`, admin, { 'os-stop': null })).status).toBe(
      202,
    );
    await api.platform.compute.servers.settled(id);
    expect((await migrate(id, { host: null }, admin)).status).toBe(409);
    expect(moves.every((m) => m.from !== m.to)).toBe(true);
  });
});
