import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostOutage } from '../../src/api/error-map.js';
import { BulwarkError } from '../../src/errors.js';
import { sweepOrphanKeys } from '../../src/keys/orphan-keys.js';
import { uuid } from '../../src/util/ids.js';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { dialects } from '../helpers/store.js';

/**
 * Start-up reconciliation after a crash (docs/reliability.md), with the fake
 * hypervisor: volumes left in a task's state by a killed daemon, and keys a
 * killed task left unreferenced. The real-daemon SIGKILL storm is
 * test/e2e/crash-recovery.test.ts.
 */
describe.each(dialects())('recovery after a restart on %s', (dialect) => {
  let api: TestApi;
  let member: { token: string; projectId: string; userId: string };
  let serverId: string;
  const V = '/volume/v3';
  const C = '/compute/v2.1';
  const volumes = () => api.platform.volume.volumes;
  const status = async (id: string) =>
    (await api.call('GET', `${V}/volumes/${id}`, member.token)).json.volume as {
      status: string;
      'bulwark:fault'?: string;
    };
  const stuckAs = async (id: string, s: string) =>
    api.store.db.updateTable('volumes').set({ status: s }).where('id', '=', id).execute();
  const newVolume = async (name: string) => {
    const r = await api.call('POST', `${V}/volumes`, member.token, { volume: { size: 1, name } });
    expect(r.status).toBe(202);
    await volumes().settled();
    return r.json.volume.id as string;
  };

  beforeAll(async () => {
    api = await startTestApi(dialect);
    member = await api.persona('rec-a', 'rec-owner', 'member');
    const { flavorId, imageId } = await api.bootable(member.token, 'rec', 128);
    const r = await api.call('POST', `${C}/servers`, member.token, {
      server: { name: 'vm', imageRef: imageId, flavorRef: flavorId, networks: 'none' },
    });
    serverId = r.json.server.id;
    await api.platform.compute.servers.settled();
  });
  afterAll(async () => {
    await volumes().settled();
    await api?.close();
  });

  it('resumes interrupted creates and deletes, and settles attaches, detaches and extends', async () => {
    const creating = await newVolume('creating');
    const deleting = await newVolume('deleting');
    const attaching = await newVolume('attaching');
    const extending = await newVolume('extending');
    const detaching = await newVolume('detaching');
    const att = await api.call('POST', `${C}/servers/${serverId}/os-volume_attachments`, member.token, {
      volumeAttachment: { volumeId: detaching },
    });
    expect(att.status).toBe(200);
    // The old process died holding each in its task's state (the create's file half-made).
    await stuckAs(creating, 'creating');
    await api.driver.deleteVolume(creating);
    await stuckAs(deleting, 'deleting');
    await stuckAs(attaching, 'attaching');
    await api.driver.attachVolume(serverId, attaching); // plugged in, the record never written
    await stuckAs(extending, 'extending');
    await stuckAs(detaching, 'detaching');

    const done = await volumes().reconcile([serverId]);
    await volumes().settled();
    expect(Object.keys(done).sort()).toEqual(['attaching', 'creating', 'deleting', 'detaching', 'extending']);
    expect((await status(creating)).status).toBe('available');
    expect((await api.call('GET', `${V}/volumes/${deleting}`, member.token)).status).toBe(404);
    const a = await status(attaching);
    expect(a.status).toBe('available');
    expect(a['bulwark:fault']).toMatch(/restarted during the volume's attaching; it was not attached/);
    expect(api.driver.volumes.get(attaching)?.attachedTo).toBeNull();
    expect((await status(extending)).status).toBe('available');
    expect((await status(extending))['bulwark:fault']).toMatch(/restarted during the volume's extending/);
    expect((await status(detaching)).status).toBe('available');
    const list = await api.call('GET', `${C}/servers/${serverId}/os-volume_attachments`, member.token);
    expect(list.json.volumeAttachments).toEqual([]);
    // A second start finds nothing to do.
    expect(await volumes().reconcile([serverId])).toEqual({});
  });

  it('deletes keys the platform made that nothing refers to, never a user secret', async () => {
    const keys = api.platform.keys;
    const ghost = uuid();
    const orphan = await keys.createKey(member.projectId, {
      name: `root-disk-${ghost}`,
      bits: 256,
      purpose: 'x',
    });
    const orphanVolumeKey = await keys.createKey(member.projectId, {
      name: `volume ${ghost}`,
      bits: 256,
      purpose: 'x',
    });
    // The same name, stored by a user through the key manager API: theirs, whatever it is called.
    const mine = await api.call('POST', '/key-manager/v1/secrets', member.token, {
      name: `vtpm-${ghost}`,
      payload: 'c2VjcmV0',
      payload_content_type: 'application/octet-stream',
      payload_content_encoding: 'base64',
    });
    expect(mine.status).toBe(201);
    const swept = await sweepOrphanKeys(api.store, keys);
    expect(swept.sort()).toEqual([`root-disk-${ghost}`, `volume ${ghost}`]);
    const left = await api.store.db.selectFrom('secrets').select(['id', 'name']).execute();
    expect(left.map((s) => s.id)).not.toContain(orphan);
    expect(left.map((s) => s.id)).not.toContain(orphanVolumeKey);
    expect(left.map((s) => s.name)).toContain(`vtpm-${ghost}`);
    // The live server's own disk key stays.
    const row = await api.store.db
      .selectFrom('servers')
      .select('root_key_secret_id')
      .where('id', '=', serverId)
      .executeTakeFirstOrThrow();
    if (row.root_key_secret_id) expect(left.map((s) => s.id)).toContain(row.root_key_secret_id);
    expect(await sweepOrphanKeys(api.store, keys)).toEqual([]);
  });
});

describe('outages in words an operator can act on', () => {
  it('a full disk and a database that went away are 503s saying so, through wrapping errors too', () => {
    const full = Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' });
    expect(hostOutage(new BulwarkError('Unavailable', 'audit', { cause: full }))?.message).toMatch(
      /filesystem is full.*Free space there/,
    );
    expect(hostOutage(Object.assign(new Error('write'), { code: 'ENOSPC' }))?.status).toBe(503);
    const gone = Object.assign(new Error('terminating connection due to administrator command'), {
      code: '57P01',
    });
    expect(hostOutage(gone)?.message).toMatch(/database is unavailable.*reconnects on its own/);
    const noSocket = Object.assign(new Error('connect ENOENT /tmp/x/.s.PGSQL.5432'), {
      code: 'ENOENT',
      syscall: 'connect',
    });
    expect(hostOutage(noSocket)?.status).toBe(503);
    // Anything else stays what it was (a 500 with a request id, logged).
    expect(hostOutage(new Error('boom'))).toBeNull();
    expect(
      hostOutage(Object.assign(new Error('no such file'), { code: 'ENOENT', syscall: 'open' })),
    ).toBeNull();
  });
});
