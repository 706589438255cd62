/**
 * Cold migration's and evacuation's control-plane rules (docs/multi-host.md),
 * on both stores: Nova's `migrate` (admin only, refusals audited; `host` from
 * 2.56), the destination picked by the real scheduler under the create's locks
 * (never the current host, never an anti-affinity member's), VERIFY_RESIZE
 * with the source's resources still held, confirmResize / revertResize, a
 * failure leaving the server on its source with no copy elsewhere, and
 * `host evacuate` (live for running servers, cold for stopped ones; a down
 * host refused naming its servers). The host side is a fake mover beside the
 * real one: test/e2e/cold-migration.test.ts moves real guests.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ColdMover } from '../../src/compute/cold-migration.js';
import type { LiveMigrator } from '../../src/compute/servers.js';
import { FakeHypervisor } from '../../src/host/fake-hypervisor.js';
import { fakeHosts, startTestApi, type TestApi } from '../helpers/api.js';
import { dialects } from '../helpers/store.js';

const C = '/compute/v2.1';
const HOSTS = ['cm-a', 'cm-b', 'cm-c'];

describe.each(dialects())('cold migration API on %s', (dialect) => {
  let api: TestApi;
  let member = '';
  let admin = '';
  let boot: { flavorId: string; imageId: string };
  const drivers = new Map(HOSTS.map((h) => [h, new FakeHypervisor()]));
  const released: { host: string; id: string }[] = [];
  let failCopy = false;
  const mover: ColdMover = {
    canHost: (h) => drivers.has(h),
    copy: async (o) => {
      await drivers.get(o.to)!.define(o.spec);
      await o.onProgress(5, 10);
      if (failCopy) {
        failCopy = false;
        throw new Error('the destination refused the disk');
      }
      await o.onProgress(10, 10);
    },
    release: async (host, id) => {
      released.push({ host, id });
      await drivers.get(host)!.undefine(id);
    },
    moved: async () => undefined,
  };
  const live: LiveMigrator = {
    canHost: (h) => drivers.has(h),
    moved: async () => undefined,
    live: async (o) => {
      await drivers.get(o.to)!.define(o.spec);
      await drivers.get(o.to)!.start(o.serverId);
      await drivers.get(o.from)!.undefine(o.serverId);
    },
  };

  beforeAll(async () => {
    api = await startTestApi(dialect);
    member = (await api.persona('cm-proj', 'cm-user', 'member')).token;
    admin = await api.login('admin', api.adminPassword, 'admin');
    boot = await api.bootable(member, 'cm', 256);
    await fakeHosts(api, member, drivers);
    api.platform.compute.servers.migrator = live;
    api.platform.compute.coldMigrations.mover = mover;
  }, 300_000);
  afterAll(() => api?.close());

  const servers = () => api.platform.compute.servers;
  const create = async (name: string, group?: string) => {
    const r = await api.call('POST', `${C}/servers`, member, {
      server: { name, imageRef: boot.imageId, flavorRef: boot.flavorId, networks: 'none' },
      ...(group ? { 'os:scheduler_hints': { group } } : {}),
    });
    expect(r.status, JSON.stringify(r.json)).toBe(202);
    await servers().settled(r.json.server.id);
    return r.json.server.id as string;
  };
  const server = async (id: string) => (await api.call('GET', `${C}/servers/${id}`, admin)).json.server;
  const act = (id: string, body: unknown, token = admin, version?: string) =>
    api.app
      .inject({
        method: 'POST',
        url: `${C}/servers/${id}/action`,
        headers: {
          'x-auth-token': token,
          'content-type': 'application/json',
          ...(version ? { 'openstack-api-version': `compute ${version}` } : {}),
        },
        payload: JSON.stringify(body),
      })
      .then((r) => ({ status: r.statusCode, json: r.body ? JSON.parse(r.body) : undefined }));
  const holds = (host: string) =>
    api.store.db.selectFrom('placements').selectAll().where('host', '=', host).execute();
  const migrationsOf = async (id: string) =>
    (await api.call('GET', `${C}/os-migrations?instance_uuid=${id}`, admin)).json.migrations;

  it('migrate (admin only, refusal audited) -> VERIFY_RESIZE on another host, source held; confirm cleans the source', async () => {
    const id = await create('cm-1');
    const from = (await server(id))['OS-EXT-SRV-ATTR:host'];
    const refused = await act(id, { migrate: null }, member);
    expect(refused.status).toBe(403);
    const audit = await api.store.db
      .selectFrom('audit_events')
      .selectAll()
      .where('target_id', '=', id)
      .where('outcome', '=', 'denied')
      .executeTakeFirst();
    expect(audit?.reason).toMatch(/migration/);
    expect((await server(id))['OS-EXT-SRV-ATTR:host']).toBe(from);
    expect(await migrationsOf(id)).toEqual([]);

    expect((await act(id, { migrate: null })).status).toBe(202);
    await servers().settled(id);
    const s = await server(id);
    expect(s.status).toBe('VERIFY_RESIZE');
    const to = s['OS-EXT-SRV-ATTR:host'];
    expect(to).not.toBe(from);
    expect(await drivers.get(to)!.state(id)).toBe('running');
    expect(await drivers.get(from)!.state(id)).toBe('shutoff');
    const [m] = await migrationsOf(id);
    expect(m).toMatchObject({
      migration_type: 'migration',
      status: 'finished',
      source_compute: from,
      dest_compute: to,
      disk_processed_bytes: 10,
    });
    // The source's resources stay claimed for it (a revert must fit), under the migration's id.
    expect((await holds(from)).map((p) => p.server_id)).toContain(m.id);
    // Start/stop are not for a server waiting for confirmation.
    expect((await act(id, { 'os-stop': null })).status).toBe(409);

    // A member may confirm (Nova's default); a reader-free project cannot see another's.
    expect((await act(id, { confirmResize: null }, member)).status).toBe(204);
    await servers().settled(id);
    expect((await server(id)).status).toBe('ACTIVE');
    expect(released).toContainEqual({ host: from, id });
    expect((await holds(from)).map((p) => p.server_id)).not.toContain(m.id);
    expect((await migrationsOf(id))[0].status).toBe('confirmed');
    expect((await act(id, { confirmResize: null })).status).toBe(409);
    const history = await api.store.db
      .selectFrom('server_changes')
      .select('change')
      .where('server_id', '=', id)
      .execute();
    expect(history.map((h) => h.change)).toEqual(
      expect.arrayContaining(['action:migrate', 'action:confirmResize']),
    );
  });

  it('a stopped server: revertResize brings it back to its source as it was; the destination is released', async () => {
    const id = await create('cm-2');
    expect((await act(id, { 'os-stop': null })).status).toBe(202);
    await servers().settled(id);
    const from = (await server(id))['OS-EXT-SRV-ATTR:host'];
    expect((await act(id, { migrate: null })).status).toBe(202);
    await servers().settled(id);
    const s = await server(id);
    expect(s.status).toBe('VERIFY_RESIZE');
    const to = s['OS-EXT-SRV-ATTR:host'];
    expect(await drivers.get(to)!.state(id)).toBe('shutoff');
    expect((await act(id, { revertResize: null })).status).toBe(202);
    await servers().settled(id);
    const back = await server(id);
    expect(back.status).toBe('SHUTOFF');
    expect(back['OS-EXT-SRV-ATTR:host']).toBe(from);
    expect(released).toContainEqual({ host: to, id });
    expect(await drivers.get(to)!.state(id)).toBe('missing');
    const claim = await api.store.db
      .selectFrom('placements')
      .selectAll()
      .where('server_id', '=', id)
      .executeTakeFirstOrThrow();
    expect(claim.host).toBe(from);
    expect((await migrationsOf(id))[0].status).toBe('reverted');
  });

  it('refuses its own host, a host before 2.56, bad bodies, an anti-affinity move with no host; nothing changes', async () => {
    const g = await api.call('POST', `${C}/os-server-groups`, member, {
      server_group: { name: 'cm-aa', policies: ['anti-affinity'] },
    });
    const gid = g.json.server_group.id as string;
    const ids = [await create('cm-aa-1', gid), await create('cm-aa-2', gid), await create('cm-aa-3', gid)];
    const id = ids[0] as string;
    const from = (await server(id))['OS-EXT-SRV-ATTR:host'];
    const none = await act(id, { migrate: null });
    expect(none.status).toBe(400);
    expect(none.json.badRequest.message).toMatch(/No valid host was found/);
    const same = await act(id, { migrate: { host: from } }, admin, '2.56');
    expect(same.status).toBe(400);
    expect(same.json.badRequest.message).toMatch(/already on host/);
    const other = HOSTS.find((h) => h !== from)!;
    expect((await act(id, { migrate: { host: other } }, admin, '2.56')).status).toBe(400); // a member is there
    expect((await act(id, { migrate: { host: other } })).status).toBe(400); // host needs 2.56
    expect((await act(id, { migrate: { host: other, force: true } }, admin, '2.56')).status).toBe(400);
    expect((await act(id, { migrate: null }, admin, '2.57')).status).toBe(406);
    expect((await act(id, { revertResize: null })).status).toBe(409);
    const s = await server(id);
    expect(s.status).toBe('ACTIVE');
    expect(s['OS-EXT-SRV-ATTR:host']).toBe(from);
    expect(await migrationsOf(id)).toEqual([]);
    for (const x of ids) await api.call('DELETE', `${C}/servers/${x}`, member);
    for (const x of ids) await servers().settled(x);
  });

  it('fails closed: a copy that fails leaves it running on its source with a fault, nothing on the destination', async () => {
    const id = await create('cm-3');
    const from = (await server(id))['OS-EXT-SRV-ATTR:host'];
    failCopy = true;
    expect((await act(id, { migrate: null })).status).toBe(202);
    await servers().settled(id);
    const s = await server(id);
    expect(s.status).toBe('ACTIVE');
    expect(s['OS-EXT-SRV-ATTR:host']).toBe(from);
    expect(JSON.stringify(s.fault)).toMatch(/the destination refused the disk/);
    expect(await drivers.get(from)!.state(id)).toBe('running');
    const [m] = await migrationsOf(id);
    expect(m.status).toBe('error');
    expect(await drivers.get(m.dest_compute)!.state(id)).toBe('missing');
    expect((await holds(from)).map((p) => p.server_id)).not.toContain(m.id);
  });

  it('deleting a server waiting for confirmation removes both copies and the held resources', async () => {
    const id = await create('cm-4');
    const from = (await server(id))['OS-EXT-SRV-ATTR:host'];
    expect((await act(id, { migrate: null })).status).toBe(202);
    await servers().settled(id);
    const [m] = await migrationsOf(id);
    expect((await api.call('DELETE', `${C}/servers/${id}`, member)).status).toBe(204);
    await servers().settled(id);
    expect(released).toContainEqual({ host: from, id });
    expect((await holds(from)).map((p) => p.server_id)).not.toContain(m.id);
    expect(await drivers.get(m.dest_compute)!.state(id)).toBe('missing');
  });

  it('host evacuate: disables the host, moves a running (live) and a stopped (cold, confirmed) server off it', async () => {
    for (const h of HOSTS.slice(1)) await api.platform.compute.hosts.setState(h, 'disabled');
    const a = await create('cm-ev-1');
    const b = await create('cm-ev-2');
    for (const h of HOSTS.slice(1)) await api.platform.compute.hosts.setState(h, 'up');
    expect((await act(b, { 'os-stop': null })).status).toBe(202);
    await servers().settled(b);
    expect((await api.call('POST', '/bulwark/v1/hosts/cm-a/evacuate', member, {})).status).toBe(403);
    const r = await api.call('POST', '/bulwark/v1/hosts/cm-a/evacuate', admin, {});
    expect(r.status, JSON.stringify(r.json)).toBe(202);
    // (Earlier tests' servers on cm-a go too.)
    expect(r.json.evacuation).toMatchObject({ host: 'cm-a', status: 'running' });
    await api.platform.compute.evacuations.settled(r.json.evacuation.id);
    const done = (await api.call('GET', `/bulwark/v1/evacuations/${r.json.evacuation.id}`, admin)).json
      .evacuation;
    expect(done).toMatchObject({ status: 'completed', done: done.total });
    const result = (sid: string) =>
      done.servers.find((x: { server_id: string }) => x.server_id === sid) as {
        action: string;
        status: string;
      };
    expect(result(a)).toMatchObject({ action: 'live-migration', status: 'done' });
    expect(result(b)).toMatchObject({ action: 'migration', status: 'done' });
    expect((await server(a))['OS-EXT-SRV-ATTR:host']).not.toBe('cm-a');
    expect((await server(a)).status).toBe('ACTIVE');
    expect((await server(b))['OS-EXT-SRV-ATTR:host']).not.toBe('cm-a');
    expect((await server(b)).status).toBe('SHUTOFF');
    expect((await api.platform.compute.hosts.get('cm-a')).state).toBe('disabled');
    // Nothing is claimed on it any more (the cold move's hold went with the confirm).
    expect(await holds('cm-a')).toEqual([]);
  });

  it('refuses to evacuate a host that is down, naming the servers whose disks live only there', async () => {
    const id = await create('cm-down');
    const host = (await server(id))['OS-EXT-SRV-ATTR:host'];
    await api.store.db.updateTable('hosts').set({ state: 'down' }).where('name', '=', host).execute();
    const r = await api.call('POST', `/bulwark/v1/hosts/${host}/evacuate`, admin, {});
    expect(r.status).toBe(409);
    expect(JSON.stringify(r.json)).toMatch(new RegExp(`down.*cm-down \\(${id}\\).*live only on that host`));
    expect((await server(id))['OS-EXT-SRV-ATTR:host']).toBe(host);
    await api.store.db.updateTable('hosts').set({ state: 'up' }).where('name', '=', host).execute();
  });
});
