import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateRecoveryKey } from '../../src/backups/crypto.js';
import { auditedEvents, startTestApi, type TestApi } from '../helpers/api.js';
import { clockedBackups } from '../helpers/backups.js';
import { dialects } from '../helpers/store.js';

/**
 * Backups through the API with the fake hypervisor (volume data in memory):
 * who may do what, the recovery key, verify/restore refusals. The real disk
 * path (qemu-nbd, LUKS, a running guest) is test/e2e/openstack-backups.test.ts.
 */
describe.each(dialects())('backup API on %s', (dialect) => {
  let api: TestApi;
  let admin: string;
  let member: { token: string; projectId: string; userId: string };
  let operator: { token: string; projectId: string; userId: string };
  let other: { token: string; projectId: string; userId: string };
  const V = '/volume/v3';
  const B = '/bulwark/v1';
  const rk = generateRecoveryKey();
  const pattern = Buffer.from(`bw-api-${randomBytes(6).toString('hex')}-`.repeat(1000));
  let volumeId = '';
  let backupId = '';
  /** The error's text, whichever OpenStack body style the route answers in. */
  const said = (r: { json: unknown }) => JSON.stringify(r.json);
  const settle = async () => {
    await api.platform.backups.settled();
    await api.platform.volume.volumes.settled();
  };
  const backup = async (id: string, token = admin) =>
    (await api.call('GET', `${V}/backups/${id}`, token)).json.backup;
  const audited = (action: string, outcome: string) => auditedEvents(api, action, outcome);

  beforeAll(async () => {
    api = await startTestApi(dialect);
    admin = await api.login('admin', api.adminPassword, 'admin');
    member = await api.persona('bak-a', 'bak-member', 'member');
    operator = await api.persona('bak-a', 'bak-operator', 'backup-operator');
    other = await api.persona('bak-b', 'bak-other', 'backup-operator');
    const v = await api.call('POST', `${V}/volumes`, member.token, { volume: { size: 1, name: 'data' } });
    volumeId = v.json.volume.id;
    await settle();
    // What the guest wrote, at 5 MiB into the volume.
    const h = await api.driver.openVolumeData(volumeId, null, 'write');
    await h.write(5 * 1024 * 1024, pattern);
    await h.close();
  });
  afterAll(async () => {
    await settle();
    await api?.close();
  });

  it('there is no repository until an admin makes one with a public key; only admins may', async () => {
    const none = await api.call('POST', `${V}/backups`, operator.token, { backup: { volume_id: volumeId } });
    expect(none.status).toBe(409);
    expect(said(none)).toMatch(/no backup repository yet/);
    const refused = await api.call('POST', `${B}/backup-repository`, member.token, {
      repository: { recipient_public_key: rk.publicKey },
    });
    expect(refused.status).toBe(403);
    const bad = await api.call('POST', `${B}/backup-repository`, admin, {
      repository: { recipient_public_key: 'AAAA' },
    });
    expect(bad.status).toBe(400);
    const made = await api.call('POST', `${B}/backup-repository`, admin, {
      repository: { recipient_public_key: rk.publicKey },
    });
    expect(made.status).toBe(201);
    expect(made.json.repository).toMatchObject({ recipient_public_key: rk.publicKey, unlocked_until: null });
    const again = await api.call('POST', `${B}/backup-repository`, admin, {
      repository: { recipient_public_key: generateRecoveryKey().publicKey },
    });
    expect(again.status).toBe(409);
  });

  it('a member may not create a backup (403, audited); a backup operator may; another project sees nothing', async () => {
    const m = await api.call('POST', `${V}/backups`, member.token, { backup: { volume_id: volumeId } });
    expect(m.status).toBe(403);
    expect((await audited('volume:backups:create', 'denied')).map((a) => a.user_name)).toContain(
      'bak-member',
    );
    const o = await api.call('POST', `${V}/backups`, other.token, { backup: { volume_id: volumeId } });
    expect(o.status).toBe(404);
    const incr = await api.call('POST', `${V}/backups`, operator.token, {
      backup: { volume_id: volumeId, incremental: true },
    });
    expect(incr.status).toBe(400);
    expect(said(incr)).toMatch(/No backups available to do an incremental backup/);
    const r = await api.call('POST', `${V}/backups`, operator.token, {
      backup: {
        volume_id: volumeId,
        name: 'b1',
        container: null,
        description: null,
        incremental: false,
        force: false,
        snapshot_id: null,
      },
    });
    expect(r.status).toBe(202);
    backupId = r.json.backup.id;
    await settle();
    expect(await backup(backupId, member.token)).toMatchObject({
      status: 'available',
      size: 1,
      volume_id: volumeId,
    });
    expect((await api.call('GET', `${V}/backups/${backupId}`, other.token)).status).toBe(404);
    expect((await api.call('GET', `${V}/backups/detail`, other.token)).json.backups).toEqual([]);
    const done = await audited('volume:backups:create:done', 'success');
    expect(done).toEqual([expect.objectContaining({ user_name: 'bak-operator', target_id: backupId })]);
    const incr2 = await api.call('POST', `${V}/backups`, operator.token, {
      backup: { volume_id: volumeId, incremental: true, name: 'b2' },
    });
    expect(incr2.status).toBe(202);
    await settle();
    const b2 = await backup(incr2.json.backup.id);
    expect(b2).toMatchObject({ status: 'available', is_incremental: true });
    expect(b2['bulwark:stored_bytes']).toBeLessThan(4096);
  });

  it('an in-use volume needs force, and its running guest is paused only while it is read', async () => {
    const { flavorId, imageId } = await api.bootable(member.token, 'bak', 128);
    const s = await api.call('POST', '/compute/v2.1/servers', member.token, {
      server: { name: 'vm', imageRef: imageId, flavorRef: flavorId, networks: 'none' },
    });
    await api.platform.compute.servers.settled();
    const v = await api.call('POST', `${V}/volumes`, member.token, { volume: { size: 1, name: 'attached' } });
    await settle();
    const att = await api.call(
      'POST',
      `/compute/v2.1/servers/${s.json.server.id}/os-volume_attachments`,
      member.token,
      {
        volumeAttachment: { volumeId: v.json.volume.id },
      },
    );
    expect(att.status).toBe(200);
    const no = await api.call('POST', `${V}/backups`, operator.token, {
      backup: { volume_id: v.json.volume.id },
    });
    expect(no.status).toBe(400);
    let pausedDuring = false;
    const open = api.driver.openVolumeData.bind(api.driver);
    api.driver.openVolumeData = async (...args) => {
      const h = await open(...args);
      pausedDuring = api.driver.pausedForBackup.has(s.json.server.id);
      return h;
    };
    const yes = await api.call('POST', `${V}/backups`, operator.token, {
      backup: { volume_id: v.json.volume.id, force: true },
    });
    expect(yes.status).toBe(202);
    await settle();
    api.driver.openVolumeData = open;
    expect(pausedDuring).toBe(true);
    expect(api.driver.pausedForBackup.size).toBe(0);
    expect((await backup(yes.json.backup.id)).status).toBe('available');
  });

  it('restore is admin-only (audited) and needs the recovery key; a wrong key is refused', async () => {
    for (const t of [member.token, operator.token]) {
      const r = await api.call('POST', `${V}/backups/${backupId}/restore`, t, { restore: { name: 'x' } });
      expect(r.status).toBe(403);
      const k = await api.call('POST', `${B}/backups/${backupId}/restore`, t, {
        recovery_key: rk.privateKeyPem,
      });
      expect(k.status).toBe(403);
      expect((await api.call('DELETE', `${V}/backups/${backupId}`, t)).status).toBe(403);
    }
    const denied = await audited('volume:backups:restore', 'denied');
    expect(denied.map((a) => a.user_name).sort()).toEqual([
      'bak-member',
      'bak-member',
      'bak-operator',
      'bak-operator',
    ]);
    expect(denied.every((a) => a.target_id === backupId)).toBe(true);
    const locked = await api.call('POST', `${V}/backups/${backupId}/restore`, admin, {
      restore: { name: 'x' },
    });
    expect(locked.status).toBe(409);
    expect(said(locked)).toMatch(/repository is locked/);
    const wrong = await api.call('POST', `${B}/backups/${backupId}/restore`, admin, {
      recovery_key: generateRecoveryKey().privateKeyPem,
    });
    expect(wrong.status).toBe(400);
    expect(said(wrong)).toMatch(/not the recovery key of this backup repository/);
    const junk = await api.call('POST', `${B}/backup-repository/unlock`, admin, {
      recovery_key: 'junk',
      seconds: 60,
    });
    expect(junk.status).toBe(400);
    const verifyKey = await api.call('POST', `${B}/backups/${backupId}/verify`, operator.token, {
      recovery_key: rk.privateKeyPem,
    });
    expect(verifyKey.status).toBe(403);
    const names = (await api.call('GET', `${V}/volumes/detail`, member.token)).json.volumes.map(
      (v: { name: string }) => v.name,
    );
    expect(names.sort()).toEqual(['attached', 'data']); // nothing was made
  });

  it('the admin restores to a new volume with the data; in place only when said explicitly', async () => {
    const r = await api.call('POST', `${B}/backups/${backupId}/restore`, admin, {
      recovery_key: rk.privateKeyPem,
      name: 'back',
    });
    expect(r.status).toBe(202);
    const newId = r.json.restore.volume_id as string;
    await settle();
    const v = (await api.call('GET', `${V}/volumes/${newId}`, member.token)).json.volume;
    expect(v).toMatchObject({
      status: 'available',
      name: 'back',
      'os-vol-tenant-attr:tenant_id': member.projectId,
    });
    const h = await api.driver.openVolumeData(newId, null, 'read');
    expect((await h.read(5 * 1024 * 1024, pattern.length)).equals(pattern)).toBe(true);
    await h.close();
    const implicit = await api.call('POST', `${B}/backups/${backupId}/restore`, admin, {
      recovery_key: rk.privateKeyPem,
      volume_id: newId,
    });
    expect(implicit.status).toBe(400);
    expect(said(implicit)).toMatch(/in_place/);
    // Overwrite: first scribble over the volume, then restore in place.
    const w = await api.driver.openVolumeData(newId, null, 'write');
    await w.write(5 * 1024 * 1024, Buffer.alloc(pattern.length, 0x55));
    await w.close();
    const unlock = await api.call('POST', `${B}/backup-repository/unlock`, admin, {
      recovery_key: rk.privateKeyPem,
      seconds: 60,
    });
    expect(unlock.status).toBe(200);
    // In place: held for a second admin (restore-in-place); the requester cannot approve it.
    const inPlace = await api.call('POST', `${V}/backups/${backupId}/restore`, admin, {
      restore: { volume_id: newId },
    });
    expect(inPlace.status).toBe(202);
    const held = inPlace.json.approval as { id: string; kind: string; status: string };
    expect(held).toMatchObject({ kind: 'restore-in-place', status: 'pending' });
    await settle();
    const still = await api.driver.openVolumeData(newId, null, 'read');
    expect((await still.read(5 * 1024 * 1024, 16)).equals(Buffer.alloc(16, 0x55))).toBe(true);
    await still.close();
    const self = await api.call('POST', `${B}/approvals/${held.id}/approve`, admin, { reason: 'mine' });
    expect(self.status).toBe(403);
    const admin2 = await api.persona('admin', 'bak-admin2', 'admin');
    const ok = await api.call('POST', `${B}/approvals/${held.id}/approve`, admin2.token, { reason: 'ok' });
    expect(ok.status).toBe(200);
    expect(ok.json.approval).toMatchObject({ status: 'executed' });
    await settle();
    const h2 = await api.driver.openVolumeData(newId, null, 'read');
    expect((await h2.read(5 * 1024 * 1024, pattern.length)).equals(pattern)).toBe(true);
    await h2.close();
    expect((await api.call('POST', `${B}/backup-repository/lock`, admin)).status).toBe(204);
    const relocked = await api.call('POST', `${V}/backups/${backupId}/restore`, admin, {
      restore: { name: 'y' },
    });
    expect(relocked.status).toBe(409);
  });

  it('a tampered chunk fails verify and restore (409) and changes nothing', async () => {
    const seal = JSON.parse(
      readFileSync(join(api.db.dir, 'backups', 'backups', `${backupId}.seal`), 'utf8'),
    ) as { chunks: Record<string, unknown> };
    const dir = join(api.db.dir, 'backups', 'chunks');
    const files = readdirSync(dir).flatMap((d) => readdirSync(join(dir, d)).map((f) => join(dir, d, f)));
    const victim = files
      .filter((f) => Object.keys(seal.chunks).some((id) => f.endsWith(id)))
      .sort((a, b) => readFileSync(b).length - readFileSync(a).length)[0]!;
    const blob = readFileSync(victim);
    blob[40]! ^= 0x80;
    writeFileSync(victim, blob);
    const v = await api.call('POST', `${B}/backups/${backupId}/verify`, operator.token, {});
    expect(v.status).toBe(409);
    expect(said(v)).toMatch(/Backup integrity check failed: chunk .* was altered/);
    const before = (await api.call('GET', `${V}/volumes/detail`, admin)).json.volumes.length;
    const r = await api.call('POST', `${B}/backups/${backupId}/restore`, admin, {
      recovery_key: rk.privateKeyPem,
    });
    expect(r.status).toBe(409);
    expect((await api.call('GET', `${V}/volumes/detail`, admin)).json.volumes.length).toBe(before);
    expect((await backup(backupId)).status).toBe('available');
  });

  it('bad input is refused with 400 and nothing stored', async () => {
    for (const body of [
      { backup: { volume_id: volumeId, container: 'bucket' } },
      { backup: { volume_id: volumeId, extra: 1 } },
      { backup: {} },
    ]) {
      expect((await api.call('POST', `${V}/backups`, operator.token, body)).status).toBe(400);
    }
    const unlock = await api.call('POST', `${B}/backup-repository/unlock`, admin, {
      recovery_key: rk.privateKeyPem,
      seconds: 99999,
    });
    expect(unlock.status).toBe(400);
    const list = (await api.call('GET', `${V}/backups/detail`, member.token)).json.backups;
    expect(list).toHaveLength(3);
  });

  it('delete is admin-only; it keeps chunks other backups share', async () => {
    const d = await api.call('DELETE', `${V}/backups/${backupId}`, admin);
    expect(d.status).toBe(202);
    await settle();
    expect((await api.call('GET', `${V}/backups/${backupId}`, admin)).status).toBe(404);
    expect((await api.call('GET', `${V}/backups/detail`, member.token)).json.backups).toHaveLength(2);
  });

  it('a schedule runs as the bulwark-backup identity and prunes to its retention policy', {
    timeout: 300_000,
  }, async () => {
    const v = await api.call('POST', `${V}/volumes`, member.token, {
      volume: { size: 1, name: 'scheduled' },
    });
    await settle();
    const w = await api.driver.openVolumeData(v.json.volume.id, null, 'write');
    await w.write(0, randomBytes(1024 * 1024));
    await w.close();
    const body = {
      schedule: {
        volume_id: v.json.volume.id,
        name: 'nightly',
        interval_minutes: 1440,
        keep_last: 2,
        keep_daily: 0,
        keep_weekly: 2,
        keep_monthly: 0,
      },
    };
    expect((await api.call('POST', `${B}/backup-schedules`, member.token, body)).status).toBe(403);
    expect((await api.call('POST', `${B}/backup-schedules`, operator.token, body)).status).toBe(403);
    const none = { schedule: { ...body.schedule, keep_last: 0, keep_weekly: 0 } };
    expect((await api.call('POST', `${B}/backup-schedules`, admin, none)).status).toBe(400);
    const made = await api.call('POST', `${B}/backup-schedules`, admin, body);
    expect(made.status).toBe(201);
    expect((await api.call('GET', `${B}/backup-schedules`, member.token)).json.schedules).toHaveLength(1);
    expect((await api.call('GET', `${B}/backup-schedules`, other.token)).json.schedules).toHaveLength(0);

    // A clock the schedule and the service share: 20 nightly runs from Sunday 2026-03-01.
    let clock = Date.UTC(2026, 2, 1);
    const now = () => clock;
    const { scheduler } = clockedBackups(api, now);
    await api.store.db
      .updateTable('backup_schedules')
      .set({ next_run_at: new Date(clock).toISOString() })
      .where('id', '=', made.json.schedule.id)
      .execute();
    for (let day = 0; day < 20; day++) {
      await scheduler.tick();
      await scheduler.tick(); // not due again the same day
      clock += 86_400_000;
    }
    const after = (await api.call('GET', `${B}/backup-schedules?all_tenants=1`, admin)).json.schedules[0];
    expect(after).toMatchObject({ last_error: null, next_run_at: '2026-03-21T00:00:00.000Z' });
    const kept = (await api.call('GET', `${V}/backups/detail?volume_id=${v.json.volume.id}`, member.token))
      .json.backups as {
      name: string;
      status: string;
    }[];
    // Last 2 (Mar 20, Mar 19) and the newest of the last two ISO weeks (W12: Mar 20; W11: Sunday Mar 15).
    expect(kept.map((b) => b.name.slice('nightly-'.length, 'nightly-'.length + 10)).sort()).toEqual([
      '2026-03-15',
      '2026-03-19',
      '2026-03-20',
    ]);
    expect(kept.every((b) => b.status === 'available')).toBe(true);
    const who = await api.store.db
      .selectFrom('backups')
      .select('user_id')
      .where('source_id', '=', v.json.volume.id)
      .execute();
    const identity = await scheduler.identityUser();
    expect(new Set(who.map((r) => r.user_id))).toEqual(new Set([identity]));
    const done = await audited('volume:backups:create:done', 'success');
    expect(done.filter((a) => a.user_name === 'bulwark-backup')).toHaveLength(20);
    const pruned = await audited('volume:backups:delete', 'success');
    expect(pruned.filter((a) => a.user_name === 'bulwark-backup' && a.reason === 'retention')).toHaveLength(
      17,
    );
    const del = await api.call('DELETE', `${B}/backup-schedules/${made.json.schedule.id}`, admin);
    expect(del.status).toBe(204);
  });
});
