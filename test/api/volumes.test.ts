import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeHypervisor } from '../../src/host/fake-hypervisor.js';
import type { KeyService } from '../../src/keys/contract.js';
import { VolumeTypeService } from '../../src/volumes/types.js';
import { VolumeService } from '../../src/volumes/volumes.js';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { dialects } from '../helpers/store.js';

/** Cinder v3 volumes, volume types, LUKS encryption specs and Nova attachments, with the fake hypervisor. */
describe.each(dialects())('volume API on %s', (dialect) => {
  let api: TestApi;
  let admin: string;
  let owner: { token: string; projectId: string; userId: string };
  let other: { token: string; projectId: string; userId: string };
  let serverId: string;
  let otherServerId: string;
  let typeId: string;
  let volumeId: string;
  const V = '/volume/v3';
  const C = '/compute/v2.1';
  const LUKS = {
    provider: 'nova.volume.encryptors.luks.LuksEncryptor',
    cipher: 'aes-xts-plain64',
    key_size: 256,
    control_location: 'front-end',
  };
  const settle = () => api.platform.volume.volumes.settled();
  const volume = async (id: string, token = owner.token) =>
    (await api.call('GET', `${V}/volumes/${id}`, token)).json.volume;

  beforeAll(async () => {
    api = await startTestApi(dialect);
    admin = await api.login('admin', api.adminPassword, 'admin');
    owner = await api.persona('vol-a', 'vol-owner', 'member');
    other = await api.persona('vol-b', 'vol-other', 'member');
    for (const [who, set] of [
      [owner, (id: string) => (serverId = id)],
      [other, (id: string) => (otherServerId = id)],
    ] as const) {
      const { flavorId, imageId } = await api.bootable(who.token, `v${who.projectId.slice(0, 6)}`, 128);
      const r = await api.call('POST', `${C}/servers`, who.token, {
        server: { name: 'vm', imageRef: imageId, flavorRef: flavorId, networks: 'none' },
      });
      expect(r.status).toBe(202);
      set(r.json.server.id);
    }
    await api.platform.compute.servers.settled();
  });
  afterAll(async () => {
    await settle();
    await api?.close();
  });

  it('refuses a member writing volume types or encryption (403) and changes nothing', async () => {
    const r = await api.call('POST', `${V}/types`, owner.token, { volume_type: { name: 'mine' } });
    expect(r.status).toBe(403);
    const made = await api.call('POST', `${V}/types`, admin, { volume_type: { name: 'encrypted-ssd' } });
    expect(made.status).toBe(200);
    typeId = made.json.volume_type.id;
    expect(
      (await api.call('POST', `${V}/types/${typeId}/encryption`, owner.token, { encryption: LUKS })).status,
    ).toBe(403);
    expect((await api.call('DELETE', `${V}/types/${typeId}`, owner.token)).status).toBe(403);
    expect((await api.call('GET', `${V}/types/${typeId}/encryption`, admin)).json).toEqual({});
    expect(
      (await api.call('GET', `${V}/types`, admin)).json.volume_types.map((t: { name: string }) => t.name),
    ).toEqual(['encrypted-ssd']);
  });

  it('refuses encryption other than front-end LUKS aes-xts-plain64 256/512 (400) and changes nothing', async () => {
    for (const bad of [
      { ...LUKS, provider: 'luks2' },
      { ...LUKS, provider: 'plain' },
      { ...LUKS, provider: 'nova.volume.encryptors.cryptsetup.CryptsetupEncryptor' },
      { ...LUKS, cipher: 'aes-cbc-essiv:sha256' },
      { ...LUKS, cipher: 'aes-xts-plain' },
      { ...LUKS, key_size: 128 },
      { ...LUKS, key_size: '256' },
      { ...LUKS, control_location: 'back-end' },
      { ...LUKS, extra: 1 },
      { cipher: 'aes-xts-plain64' },
    ]) {
      const r = await api.call('POST', `${V}/types/${typeId}/encryption`, admin, { encryption: bad });
      expect(r.status, JSON.stringify(bad)).toBe(400);
    }
    expect((await api.call('GET', `${V}/types/${typeId}/encryption`, admin)).json).toEqual({});
    // The CLI's `volume type set` first tries an update: with no spec yet that is a 404.
    expect(
      (await api.call('PUT', `${V}/types/${typeId}/encryption/provider`, admin, { encryption: LUKS })).status,
    ).toBe(404);
  });

  it('sets the spec’s encryption (legacy provider name accepted, stored as luks)', async () => {
    const r = await api.call('POST', `${V}/types/${typeId}/encryption`, admin, { encryption: LUKS });
    expect(r.status).toBe(200);
    expect(r.json.encryption).toMatchObject({
      provider: 'luks',
      cipher: 'aes-xts-plain64',
      key_size: 256,
      control_location: 'front-end',
      volume_type_id: typeId,
    });
    expect(
      (await api.call('POST', `${V}/types/${typeId}/encryption`, admin, { encryption: LUKS })).status,
    ).toBe(400);
    const upd = await api.call('PUT', `${V}/types/${typeId}/encryption/provider`, admin, {
      encryption: { key_size: 512 },
    });
    expect(upd.status).toBe(200);
    expect((await api.call('GET', `${V}/types/${typeId}/encryption`, owner.token)).json.key_size).toBe(512);
    await api.call('PUT', `${V}/types/${typeId}/encryption/provider`, admin, {
      encryption: { key_size: 256 },
    });
  });

  it('creates an encrypted volume: a key in the key manager, LUKS on the host, encrypted: true', async () => {
    const bad = await api.call('POST', `${V}/volumes`, owner.token, {
      volume: { size: 0, volume_type: 'encrypted-ssd' },
    });
    expect(bad.status).toBe(400);
    expect(
      (await api.call('POST', `${V}/volumes`, owner.token, { volume: { size: 1, volume_type: 'nope' } }))
        .status,
    ).toBe(404);
    const r = await api.call('POST', `${V}/volumes`, owner.token, {
      volume: {
        size: 1,
        name: 'my-encrypted-volume',
        volume_type: 'encrypted-ssd',
        description: null,
        snapshot_id: null,
        imageRef: null,
        source_volid: null,
        consistencygroup_id: null,
        availability_zone: null,
        metadata: {},
        backup_id: null,
      },
    });
    expect(r.status).toBe(202);
    volumeId = r.json.volume.id;
    expect(r.json.volume.encrypted).toBe(true);
    await settle();
    const v = await volume(volumeId);
    expect(v).toMatchObject({ status: 'available', encrypted: true, volume_type: 'encrypted-ssd', size: 1 });
    expect(api.driver.volumes.get(volumeId)).toEqual({ bytes: 1024 ** 3, encrypted: true, attachedTo: null });
    const row = await api.store.db
      .selectFrom('volumes')
      .selectAll()
      .where('id', '=', volumeId)
      .executeTakeFirstOrThrow();
    expect(row.key_secret_id).toBeTruthy();
    const key = await api.platform.keys.readKeyFor(owner.projectId, row.key_secret_id!);
    expect(key.length).toBe(32);
    // The key is the owner's: the other project cannot have it read on its behalf.
    await expect(api.platform.keys.readKeyFor(other.projectId, row.key_secret_id!)).rejects.toThrow();
    // Found by name, as the CLI does.
    const byName = await api.call('GET', `${V}/volumes/detail?name=my-encrypted-volume`, owner.token);
    expect(byName.json.volumes.map((x: { id: string }) => x.id)).toEqual([volumeId]);
    // Under Cinder's project-id URLs too.
    expect(
      (await api.call('GET', `${V}/${owner.projectId}/volumes/${volumeId}`, owner.token)).json.volume
        .encrypted,
    ).toBe(true);
  });

  it('hides a volume from other projects (404, also by name and in lists) and refuses their project id in the URL', async () => {
    expect((await api.call('GET', `${V}/volumes/${volumeId}`, other.token)).status).toBe(404);
    expect((await api.call('DELETE', `${V}/volumes/${volumeId}`, other.token)).status).toBe(404);
    expect(
      (await api.call('PUT', `${V}/volumes/${volumeId}`, other.token, { volume: { name: 'x' } })).status,
    ).toBe(404);
    expect(
      (
        await api.call('POST', `${V}/volumes/${volumeId}/action`, other.token, {
          'os-extend': { new_size: 2 },
        })
      ).status,
    ).toBe(404);
    expect(
      (await api.call('GET', `${V}/volumes/detail?name=my-encrypted-volume`, other.token)).json.volumes,
    ).toEqual([]);
    expect((await api.call('GET', `${V}/volumes/detail?all_tenants=1`, other.token)).json.volumes).toEqual(
      [],
    );
    expect((await api.call('GET', `${V}/${owner.projectId}/volumes/${volumeId}`, other.token)).status).toBe(
      403,
    );
    // Attaching someone else's volume to one's own server, or one's volume to their server: 404.
    const cross = await api.call('POST', `${C}/servers/${otherServerId}/os-volume_attachments`, other.token, {
      volumeAttachment: { volumeId },
    });
    expect(cross.status).toBe(404);
    const theirs = await api.call(
      'POST',
      `${C}/servers/${otherServerId}/os-volume_attachments`,
      owner.token,
      {
        volumeAttachment: { volumeId },
      },
    );
    expect(theirs.status).toBe(404);
    expect((await volume(volumeId)).status).toBe('available');
    expect(api.driver.volumes.get(volumeId)?.attachedTo).toBeNull();
    // The admin sees it across projects.
    expect((await api.call('GET', `${V}/volumes/${volumeId}`, admin)).status).toBe(200);
  });

  it('refuses to change an encryption spec or delete a type while volumes use it', async () => {
    expect(
      (
        await api.call('PUT', `${V}/types/${typeId}/encryption/provider`, admin, {
          encryption: { key_size: 512 },
        })
      ).status,
    ).toBe(400);
    expect((await api.call('DELETE', `${V}/types/${typeId}/encryption/provider`, admin)).status).toBe(400);
    expect((await api.call('DELETE', `${V}/types/${typeId}`, admin)).status).toBe(400);
  });

  it('extends an available volume, never shrinks it', async () => {
    expect(
      (
        await api.call('POST', `${V}/volumes/${volumeId}/action`, owner.token, {
          'os-extend': { new_size: 1 },
        })
      ).status,
    ).toBe(400);
    const r = await api.call('POST', `${V}/volumes/${volumeId}/action`, owner.token, {
      'os-extend': { new_size: 2 },
    });
    expect(r.status).toBe(202);
    await settle();
    expect(await volume(volumeId)).toMatchObject({ size: 2, status: 'available' });
    expect(api.driver.volumes.get(volumeId)?.bytes).toBe(2 * 1024 ** 3);
  });

  it('attaches to the owner’s server (in-use), refuses deleting it then, and detaches', async () => {
    const url = `${C}/servers/${serverId}/os-volume_attachments`;
    const r = await api.call('POST', url, owner.token, { volumeAttachment: { volumeId } });
    expect(r.status).toBe(200);
    expect(r.json.volumeAttachment).toMatchObject({ volumeId, serverId, id: volumeId });
    expect(api.driver.volumes.get(volumeId)?.attachedTo).toBe(serverId);
    const v = await volume(volumeId);
    expect(v.status).toBe('in-use');
    expect(v.attachments).toEqual([expect.objectContaining({ server_id: serverId, volume_id: volumeId })]);
    expect((await api.call('GET', url, owner.token)).json.volumeAttachments).toHaveLength(1);
    expect((await api.call('GET', url, other.token)).status).toBe(404);
    expect((await api.call('POST', url, owner.token, { volumeAttachment: { volumeId } })).status).toBe(400);
    expect((await api.call('DELETE', `${V}/volumes/${volumeId}`, owner.token)).status).toBe(400);
    expect((await api.call('DELETE', `${url}/${volumeId}`, other.token)).status).toBe(404);
    expect((await api.call('DELETE', `${url}/${volumeId}`, owner.token)).status).toBe(202);
    expect((await volume(volumeId)).status).toBe('available');
    expect(api.driver.volumes.get(volumeId)?.attachedTo).toBeNull();
  });

  it('a volume attached to a server that is deleted becomes available again', async () => {
    const { flavorId, imageId } = await api.bootable(owner.token, 'reap', 128);
    const srv = await api.call('POST', `${C}/servers`, owner.token, {
      server: { name: 'doomed', imageRef: imageId, flavorRef: flavorId, networks: 'none' },
    });
    const sid = srv.json.server.id as string;
    await api.platform.compute.servers.settled(sid);
    const v = await api.call('POST', `${V}/volumes`, owner.token, { volume: { size: 1, name: 'reaped' } });
    await settle();
    expect(v.json.volume.encrypted).toBe(false);
    const att = await api.call('POST', `${C}/servers/${sid}/os-volume_attachments`, owner.token, {
      volumeAttachment: { volumeId: v.json.volume.id },
    });
    expect(att.status).toBe(200);
    const keyId = (
      await api.store.db
        .selectFrom('servers')
        .select('root_key_secret_id')
        .where('id', '=', sid)
        .executeTakeFirstOrThrow()
    ).root_key_secret_id;
    expect(keyId).toBeTruthy();
    expect((await api.call('DELETE', `${C}/servers/${sid}`, owner.token)).status).toBe(204);
    await api.platform.compute.servers.settled(sid);
    await expect(api.platform.keys.readKeyFor(owner.projectId, keyId!)).rejects.toThrow();
    const after = await volume(v.json.volume.id);
    expect(after.status).toBe('available');
    expect(after.attachments).toEqual([]);
    expect((await api.call('DELETE', `${V}/volumes/${v.json.volume.id}`, owner.token)).status).toBe(202);
    await settle();
  });

  it('gives every new server a LUKS root disk with its own key, destroyed with the server', async () => {
    const row = await api.store.db
      .selectFrom('servers')
      .selectAll()
      .where('id', '=', serverId)
      .executeTakeFirstOrThrow();
    expect(row.root_key_secret_id).toBeTruthy();
    expect(api.driver.guests.get(serverId)?.spec.bootDisk.encrypted).toBe(true);
    expect(await api.driver.diskKeyFor(serverId)).toBe(32);
    await expect(api.platform.keys.readKeyFor(other.projectId, row.root_key_secret_id!)).rejects.toThrow();
  });

  it('fails closed without the key manager: an encrypted volume goes to error, never unencrypted', async () => {
    const driver = new FakeHypervisor();
    const broken: KeyService = {
      createKey: async () => {
        throw new Error('key manager down');
      },
      readKeyFor: async () => {
        throw new Error('key manager down');
      },
      deleteKeyFor: async () => undefined,
    };
    for (const keys of [broken, null]) {
      const svc = new VolumeService(api.store, new VolumeTypeService(api.store), driver, keys, (auth, id) =>
        api.platform.compute.servers.get(auth, id),
      );
      const v = await svc.create(api.authOf(owner.token), {
        size: 1,
        volumeType: 'encrypted-ssd',
        name: 'locked',
      });
      await svc.settled();
      const after = await svc.get(api.authOf(owner.token), v.id);
      expect(after.status).toBe('error');
      expect(after.fault).toMatch(/key manager|could not be created/);
      expect(driver.volumes.has(v.id)).toBe(false);
      await svc.delete(api.authOf(owner.token), v.id);
      await svc.settled();
    }
  });

  it('deletes the volume: its key is destroyed first, then the file', async () => {
    const row = await api.store.db
      .selectFrom('volumes')
      .selectAll()
      .where('id', '=', volumeId)
      .executeTakeFirstOrThrow();
    expect((await api.call('DELETE', `${V}/volumes/${volumeId}`, owner.token)).status).toBe(202);
    await settle();
    expect((await api.call('GET', `${V}/volumes/${volumeId}`, owner.token)).status).toBe(404);
    expect(api.driver.volumes.has(volumeId)).toBe(false);
    await expect(api.platform.keys.readKeyFor(owner.projectId, row.key_secret_id!)).rejects.toThrow();
    expect((await api.call('DELETE', `${V}/types/${typeId}`, admin)).status).toBe(202);
  });
});
