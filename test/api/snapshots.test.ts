import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { dialects } from '../helpers/store.js';

/**
 * Snapshots through the API (fake hypervisor; the real qcow2 work is in
 * test/host/snapshots.test.ts and the real CLI in test/e2e/openstack-snapshots.test.ts):
 * a description is required, names carry purpose and UTC time, lifecycle
 * policies refuse, warn and prune (audited as the platform), tenants isolated.
 */
describe.each(dialects())('snapshot API on %s', (dialect) => {
  let api: TestApi;
  let admin: string;
  let owner: { token: string; projectId: string; userId: string };
  let reader: { token: string; projectId: string; userId: string };
  let other: { token: string; projectId: string; userId: string };
  let serverId: string;
  let now = Date.parse('2026-12-01T08:00:00.000Z');
  const DAY = 86_400_000;
  const V = '/volume/v3';
  const B = '/bulwark/v1';
  const settle = async () => {
    await api.platform.volume.volumes.settled();
    await api.platform.snapshots.snapshots.settled();
  };
  const newVolume = async (token = owner.token) => {
    const r = await api.call('POST', `${V}/volumes`, token, { volume: { size: 1, name: 'data' } });
    expect(r.status).toBe(202);
    await settle();
    return r.json.volume.id as string;
  };
  const snap = (volumeId: string, description: unknown, name: unknown = 'pre-upgrade', token = owner.token) =>
    api.call('POST', `${V}/snapshots`, token, {
      snapshot: { volume_id: volumeId, name, description, force: false, metadata: {} },
    });
  const audits = (action: string) =>
    api.store.db.selectFrom('audit_events').selectAll().where('action', '=', action).orderBy('seq').execute();
  const liveSnapshots = async (resourceId: string) =>
    api.store.db
      .selectFrom('snapshots')
      .selectAll()
      .where('resource_id', '=', resourceId)
      .where('deleted_at', 'is', null)
      .execute();

  beforeAll(async () => {
    api = await startTestApi(dialect, { clock: () => new Date(now) });
    admin = await api.login('admin', api.adminPassword, 'admin');
    owner = await api.persona('snap-a', 'snap-owner', 'member');
    reader = await api.persona('snap-a', 'snap-reader', 'reader');
    other = await api.persona('snap-b', 'snap-other', 'member');
    const { flavorId, imageId } = await api.bootable(owner.token, 'snap', 128);
    const r = await api.call('POST', '/compute/v2.1/servers', owner.token, {
      server: { name: 'vm', imageRef: imageId, flavorRef: flavorId, networks: 'none' },
    });
    expect(r.status).toBe(202);
    serverId = r.json.server.id;
    await api.platform.compute.servers.settled();
  });
  afterAll(async () => {
    await settle();
    await api?.close();
  });

  it('refuses a volume snapshot without a description (400, audited, nothing created)', async () => {
    const vol = await newVolume();
    for (const description of [undefined, null, '', '   ']) {
      const r = await snap(vol, description);
      expect(r.status).toBe(400);
      expect(JSON.stringify(r.json)).toMatch(/needs a description/);
    }
    const noPurpose = await snap(vol, 'why', null);
    expect(noPurpose.status).toBe(400);
    expect(JSON.stringify(noPurpose.json)).toMatch(/name saying its purpose/);
    expect(await liveSnapshots(vol)).toEqual([]);
    expect(api.driver.snapshots.get(`volume:${vol}`)?.size ?? 0).toBe(0);
    const refused = (await audits('volume:snapshots:create')).filter((a) => a.outcome === 'failure');
    expect(refused.length).toBeGreaterThanOrEqual(5);
    expect(refused[0]?.reason ?? '').toMatch(/description/);
  });

  it('takes a volume snapshot named <purpose>-<UTC time>, in the volume’s project only', async () => {
    const vol = await newVolume();
    const r = await snap(vol, 'before the schema migration');
    expect(r.status).toBe(202);
    const s = r.json.snapshot;
    expect(s.name).toBe('pre-upgrade-20261201T080000Z');
    expect(s['bulwark:purpose']).toBe('pre-upgrade');
    expect(s.description).toBe('before the schema migration');
    await settle();
    const shown = await api.call('GET', `${V}/snapshots/${s.id}`, reader.token);
    expect(shown.json.snapshot).toMatchObject({ status: 'available', volume_id: vol, size: 1 });
    const tag = (await liveSnapshots(vol))[0]?.tag;
    expect(api.driver.snapshots.get(`volume:${vol}`)?.has(tag as string)).toBe(true);
    // Another project: 404 for the snapshot and for the volume; a reader may not write.
    expect((await api.call('GET', `${V}/snapshots/${s.id}`, other.token)).status).toBe(404);
    expect((await api.call('DELETE', `${V}/snapshots/${s.id}`, other.token)).status).toBe(404);
    expect((await snap(vol, 'not mine', 'x', other.token)).status).toBe(404);
    expect((await snap(vol, 'reader', 'x', reader.token)).status).toBe(403);
    const list = await api.call('GET', `${V}/snapshots/detail`, other.token);
    expect(list.json.snapshots).toEqual([]);
    // Cinder's rule: no volume delete while it has snapshots.
    const del = await api.call('DELETE', `${V}/volumes/${vol}`, owner.token);
    expect(del.status).toBe(400);
    expect(JSON.stringify(del.json)).toMatch(/snapshot/);
    expect((await api.call('DELETE', `${V}/snapshots/${s.id}`, owner.token)).status).toBe(202);
    await settle();
    expect(api.driver.snapshots.get(`volume:${vol}`)?.size).toBe(0);
    expect((await api.call('GET', `${V}/snapshots/${s.id}`, owner.token)).status).toBe(404);
    expect((await api.call('DELETE', `${V}/volumes/${vol}`, owner.token)).status).toBe(202);
  });

  it('an in-use volume needs force, as in Cinder', async () => {
    const vol = await newVolume();
    await api.platform.volume.volumes.attach(api.authOf(owner.token), serverId, vol);
    expect((await snap(vol, 'live')).status).toBe(400);
    const r = await api.call('POST', `${V}/snapshots`, owner.token, {
      snapshot: { volume_id: vol, name: 'live', description: 'while attached', force: true },
    });
    expect(r.status).toBe(202);
    await settle();
    expect(
      (await api.call('GET', `${V}/snapshots/${r.json.snapshot.id}`, owner.token)).json.snapshot.status,
    ).toBe('available');
    await api.call('DELETE', `${V}/snapshots/${r.json.snapshot.id}`, owner.token);
    await settle();
    await api.platform.volume.volumes.detach(api.authOf(owner.token), serverId, vol);
  });

  it('project policy: only admins set it; warns near the count, refuses beyond it (409, audited, nothing made)', async () => {
    const policy = { snapshot_policy: { max_count: 3, max_age_days: 30, prune_oldest: false } };
    const url = `${B}/snapshot-policies/projects/${owner.projectId}`;
    expect((await api.call('PUT', url, owner.token, policy)).status).toBe(403);
    expect((await api.call('PUT', url, admin, { snapshot_policy: { max_count: 0 } })).status).toBe(400);
    const set = await api.call('PUT', url, admin, policy);
    expect(set.status).toBe(200);
    expect(set.json.snapshot_policy.effective).toEqual({
      max_count: 3,
      max_age_days: 30,
      prune_oldest: false,
    });
    expect((await api.call('GET', url, reader.token)).json.snapshot_policy.project.max_count).toBe(3);
    expect((await api.call('GET', url, other.token)).status).toBe(403);

    const vol = await newVolume();
    const first = await snap(vol, 'one');
    expect(first.status).toBe(202);
    expect(first.headers['x-bulwark-snapshot-warning']).toBeUndefined();
    const second = await snap(vol, 'two');
    expect(second.json.snapshot['bulwark:warning']).toMatch(/2 of 3/);
    expect(String(second.headers['x-bulwark-snapshot-warning'])).toMatch(/2 of 3/);
    const third = await snap(vol, 'three');
    expect(third.json.snapshot['bulwark:warning']).toMatch(/3 of 3.*refused/);
    const warned = await audits('snapshot:policy_warning');
    expect(warned.map((a) => a.target_id)).toEqual([vol, vol]);
    expect(warned[0]?.user_id).toBe(owner.userId);
    await settle();
    const fourth = await snap(vol, 'four');
    expect(fourth.status).toBe(409);
    expect(JSON.stringify(fourth.json)).toMatch(/allows 3/);
    expect((await liveSnapshots(vol)).length).toBe(3);
    expect(api.driver.snapshots.get(`volume:${vol}`)?.size).toBe(3);
    const refused = (await audits('volume:snapshots:create')).at(-1);
    expect(refused).toMatchObject({ outcome: 'failure', status: 409 });
  });

  it('a resource policy only tightens; with prune_oldest a new snapshot prunes the oldest (audited as the platform)', async () => {
    const vol = await newVolume();
    const url = `${B}/snapshot-policies/volumes/${vol}`;
    expect((await api.call('PUT', url, other.token, { snapshot_policy: { max_count: 9 } })).status).toBe(404);
    expect((await api.call('PUT', url, reader.token, { snapshot_policy: { max_count: 9 } })).status).toBe(
      403,
    );
    const loose = await api.call('PUT', url, owner.token, { snapshot_policy: { max_count: 10 } });
    expect(loose.json.snapshot_policy.effective.max_count).toBe(3);
    const tight = await api.call('PUT', url, owner.token, {
      snapshot_policy: { max_count: 2, prune_oldest: true },
    });
    expect(tight.json.snapshot_policy.effective).toEqual({
      max_count: 2,
      max_age_days: 30,
      prune_oldest: true,
    });
    const ids: string[] = [];
    for (const n of ['a', 'b']) {
      now += 1000;
      ids.push((await snap(vol, `snap ${n}`, n)).json.snapshot.id);
      await settle();
    }
    now += 1000;
    const c = await snap(vol, 'snap c', 'c');
    expect(c.status).toBe(202);
    await settle();
    const left = (await liveSnapshots(vol)).map((s) => s.id).sort();
    expect(left).toEqual([ids[1], c.json.snapshot.id].sort());
    const pruned = (await audits('snapshot:prune')).at(-1);
    expect(pruned).toMatchObject({
      target_id: ids[0],
      user_name: 'bulwark',
      user_id: null,
      outcome: 'success',
    });
    expect(pruned?.reason).toMatch(/maximum count \(2\)/);
    expect(api.driver.snapshots.get(`volume:${vol}`)?.size).toBe(2);
    expect((await api.call('DELETE', url, owner.token)).status).toBe(204);
  });

  it('the scheduler prunes snapshots past the maximum age, audited as the platform', async () => {
    const vol = await newVolume();
    const old = (await snap(vol, 'old one', 'nightly')).json.snapshot.id as string;
    await settle();
    now += 20 * DAY;
    const young = (await snap(vol, 'young one', 'nightly')).json.snapshot.id as string;
    await settle();
    now += 11 * DAY; // old: 31 days, young: 11 days; the project allows 30
    const pruned = await api.platform.snapshots.scheduler.tick();
    expect(pruned).toContain(old);
    expect(pruned).not.toContain(young);
    expect((await liveSnapshots(vol)).map((s) => s.id)).toEqual([young]);
    const row = (await audits('snapshot:prune')).find((a) => a.target_id === old);
    expect(row).toMatchObject({ user_name: 'bulwark', outcome: 'success', method: 'SYSTEM' });
    expect(row?.reason).toMatch(/maximum age \(30 days\)/);
    // Nothing left to prune: a second tick does nothing.
    expect(await api.platform.snapshots.scheduler.tick()).not.toContain(young);
  });

  it('server snapshots: description required, memory needs a running guest, listed and deleted', async () => {
    const url = `${B}/servers/${serverId}/snapshots`;
    const none = await api.call('POST', url, owner.token, { snapshot: { name: 'pre-patch' } });
    expect(none.status).toBe(400);
    expect(
      (await api.call('POST', url, owner.token, { snapshot: { name: 'x', description: 'd', extra: 1 } }))
        .status,
    ).toBe(400);
    expect(
      (await api.call('POST', url, other.token, { snapshot: { name: 'x', description: 'd' } })).status,
    ).toBe(404);
    const disk = await api.call('POST', url, owner.token, {
      snapshot: { name: 'pre-patch', description: 'before kernel update' },
    });
    expect(disk.status).toBe(202);
    expect(disk.json.snapshot).toMatchObject({ kind: 'server', server_id: serverId, memory: false });
    expect(disk.json.snapshot.name).toMatch(/^pre-patch-\d{8}T\d{6}Z$/);
    const mem = await api.call('POST', url, owner.token, {
      snapshot: { name: 'debug', description: 'RAM too', memory: true },
    });
    expect(mem.status).toBe(202);
    await settle();
    expect(api.driver.snapshots.get(`server:${serverId}`)?.size).toBe(2);
    await api.call('POST', `/compute/v2.1/servers/${serverId}/action`, owner.token, { 'os-stop': null });
    await api.platform.compute.servers.settled();
    const stopped = await api.call('POST', url, owner.token, {
      snapshot: { name: 'debug', description: 'RAM too', memory: true },
    });
    expect(stopped.status).toBe(409);
    const list = await api.call('GET', `${B}/snapshots?server=${serverId}`, reader.token);
    expect(list.json.snapshots.map((s: { id: string }) => s.id).sort()).toEqual(
      [disk.json.snapshot.id, mem.json.snapshot.id].sort(),
    );
    expect((await api.call('GET', `${B}/snapshots`, other.token)).json.snapshots).toEqual([]);
    expect((await api.call('DELETE', `${B}/snapshots/${disk.json.snapshot.id}`, reader.token)).status).toBe(
      403,
    );
    expect((await api.call('DELETE', `${B}/snapshots/${disk.json.snapshot.id}`, owner.token)).status).toBe(
      202,
    );
    await settle();
    expect(api.driver.snapshots.get(`server:${serverId}`)?.size).toBe(1);
    // The server's deletion takes its snapshots (they live in its overlay).
    await api.call('DELETE', `/compute/v2.1/servers/${serverId}`, owner.token);
    await api.platform.compute.servers.settled();
    expect((await api.call('GET', `${B}/snapshots/${mem.json.snapshot.id}`, owner.token)).status).toBe(404);
  });
});
