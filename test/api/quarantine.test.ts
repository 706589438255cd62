import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { dialects } from '../helpers/store.js';

/** Quarantine through the API with the fake hypervisor; the real guest case is in test/e2e/openstack-network. */
describe.each(dialects())('server quarantine API on %s', (dialect) => {
  let api: TestApi;
  let owner: { token: string; projectId: string };
  let admin: string;
  let serverId: string;
  const C = '/compute/v2.1';
  const Q = () => `${C}/servers/${serverId}/os-quarantine`;

  beforeAll(async () => {
    api = await startTestApi(dialect);
    owner = await api.persona('q-proj', 'q-owner', 'member');
    admin = await api.login('admin', api.adminPassword, 'admin');
    const { flavorId, imageId } = await api.bootable(owner.token, 'q', 128);
    const net = await api.call('POST', '/network/v2.0/networks', owner.token, { network: { name: 'q-net' } });
    await api.call('POST', '/network/v2.0/subnets', owner.token, {
      subnet: { network_id: net.json.network.id, ip_version: 4, cidr: '10.77.0.0/24' },
    });
    const r = await api.call('POST', `${C}/servers`, owner.token, {
      server: {
        name: 'suspect',
        imageRef: imageId,
        flavorRef: flavorId,
        networks: [{ uuid: net.json.network.id }],
      },
    });
    serverId = r.json.server.id;
    await api.platform.compute.servers.settled(serverId);
  });
  afterAll(async () => api?.close());

  const server = async (token = owner.token) =>
    (await api.call('GET', `${C}/servers/${serverId}`, token)).json.server;
  const portFlags = async () =>
    (
      await api.store.db.selectFrom('ports').select('quarantined').where('device_id', '=', serverId).execute()
    ).map((p) => p.quarantined);

  it('refuses the owner (403) and a blank reason (400), and changes nothing', async () => {
    const syncs = api.dataplane.reasons.length;
    const byOwner = await api.call('POST', Q(), owner.token, { quarantine: { reason: 'mine' } });
    expect(byOwner.status).toBe(403);
    for (const body of [
      { quarantine: { reason: '   ' } },
      { quarantine: {} },
      { quarantine: { reason: 'x', extra: 1 } },
    ])
      expect((await api.call('POST', Q(), admin, body)).status).toBe(400);
    expect((await server()).status).toBe('ACTIVE');
    expect((await server())['bulwark:quarantine']).toBeNull();
    expect(await portFlags()).toEqual([0]);
    expect(api.dataplane.reasons.length).toBe(syncs);
    expect((await api.call('GET', Q(), owner.token)).status).toBe(403);
  });

  it('suspends, isolates and snapshots, in that order, each step audited', async () => {
    const r = await api.call('POST', Q(), admin, { quarantine: { reason: 'outbound scanning seen by IDS' } });
    expect(r.status).toBe(200);
    const q = r.json.quarantine;
    expect(q.steps.map((s: { step: string; outcome: string }) => `${s.step}:${s.outcome}`)).toEqual([
      'suspend:success',
      'isolate:success',
      'snapshot:success',
    ]);
    expect((await server()).status).toBe('PAUSED');
    expect(await portFlags()).toEqual([1]);
    expect(api.dataplane.reasons.at(-1)).toBe('quarantine');
    // Evidence: root-only files whose hashes the manifest and the record both carry.
    const dir: string = q.snapshot.dir;
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));
    expect(manifest.files.map((f: { name: string }) => f.name)).toEqual(['memory.elf', 'disk-overlay.qcow2']);
    for (const f of manifest.files) {
      const data = readFileSync(join(dir, f.name));
      expect(createHash('sha256').update(data).digest('hex')).toBe(f.sha256);
      expect(statSync(join(dir, f.name)).mode & 0o777).toBe(0o600);
    }
    const events = await api.store.db
      .selectFrom('audit_events')
      .select(['action', 'outcome', 'user_name', 'target_id'])
      .where('action', 'like', 'compute:servers:quarantine%')
      .where('outcome', '=', 'success')
      .orderBy('seq')
      .execute();
    expect(events.map((e) => e.action)).toEqual([
      'compute:servers:quarantine:suspend',
      'compute:servers:quarantine:isolate',
      'compute:servers:quarantine:snapshot',
      'compute:servers:quarantine:create',
    ]);
    expect(events.every((e) => e.user_name === 'admin' && e.target_id === serverId)).toBe(true);
  });

  it('holds: the owner sees why, but cannot unpause, delete, regroup or quarantine twice', async () => {
    expect((await server())['bulwark:quarantine']).toEqual({ reason: 'outbound scanning seen by IDS' });
    for (const [method, url, body] of [
      ['POST', `${C}/servers/${serverId}/action`, { unpause: null }],
      ['POST', `${C}/servers/${serverId}/action`, { addSecurityGroup: { name: 'default' } }],
      ['PUT', `${C}/servers/${serverId}/metadata`, { metadata: { a: 'b' } }],
      ['DELETE', `${C}/servers/${serverId}`, undefined],
    ] as const) {
      const r = await api.call(method, url, owner.token, body);
      expect(r.status, `${method} ${url}`).toBe(409);
      expect(JSON.stringify(r.json)).toMatch(/quarantined .*only an administrator/);
    }
    expect((await server()).status).toBe('PAUSED');
    expect((await api.call('POST', Q(), admin, { quarantine: { reason: 'again' } })).status).toBe(409);
  });

  it('only an admin lifts it; the network comes back and the guest stays paused', async () => {
    expect((await api.call('DELETE', Q(), owner.token)).status).toBe(403);
    expect(await portFlags()).toEqual([1]);
    expect((await api.call('DELETE', Q(), admin)).status).toBe(204);
    expect(await portFlags()).toEqual([0]);
    expect((await server()).status).toBe('PAUSED');
    expect((await server())['bulwark:quarantine']).toBeNull();
    expect(
      (await api.call('POST', `${C}/servers/${serverId}/action`, owner.token, { unpause: null })).status,
    ).toBe(202);
    expect((await api.call('DELETE', Q(), admin)).status).toBe(409);
  });
});
