import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateRecoveryKey } from '../../src/backups/crypto.js';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { dialects } from '../helpers/store.js';

/**
 * Whole-server backups and DR drills through the API with the fake
 * hypervisor (disks in memory): who may do what, restore to a new server
 * with the data, in place only after a second admin, drills with and
 * without a backup, cleanup. The real disks and guests are
 * test/e2e/server-backups.test.ts.
 */
describe.each(dialects())('server backups and DR drills on %s', (dialect) => {
  let api: TestApi;
  let admin: string;
  let admin2: { token: string };
  let member: { token: string; projectId: string };
  let operator: { token: string };
  let other: { token: string };
  const B = '/bulwark/v1';
  const C = '/compute/v2.1';
  const rk = generateRecoveryKey();
  const pattern = Buffer.from(`bw-srv-api-${randomBytes(6).toString('hex')}-`.repeat(500));
  let serverId = '';
  let flavorId = '';
  let imageId = '';
  let volumeId = '';
  let backupId = '';
  const settle = async () => {
    await api.platform.backups.settled();
    await api.platform.compute.servers.settled();
    await api.platform.volume.volumes.settled();
  };
  const write = async (
    open: () => Promise<{ write(o: number, d: Buffer): Promise<void>; close(): Promise<void> }>,
    at: number,
    data: Buffer,
  ) => {
    const h = await open();
    await h.write(at, data);
    await h.close();
  };
  const read = async (
    open: () => Promise<{ read(o: number, l: number): Promise<Buffer>; close(): Promise<void> }>,
    at: number,
    n: number,
  ) => {
    const h = await open();
    try {
      return await h.read(at, n);
    } finally {
      await h.close();
    }
  };

  beforeAll(async () => {
    api = await startTestApi(dialect);
    admin = await api.login('admin', api.adminPassword, 'admin');
    admin2 = await api.persona('admin', 'sb-admin2', 'admin');
    member = await api.persona('sb-a', 'sb-member', 'member');
    operator = await api.persona('sb-a', 'sb-operator', 'backup-operator');
    other = await api.persona('sb-b', 'sb-other', 'backup-operator');
    await api.platform.backups.initRepository(api.authOf(admin), rk.publicKey);
    ({ flavorId, imageId } = await api.bootable(member.token, 'sb', 128));
    const s = await api.call('POST', `${C}/servers`, member.token, {
      server: {
        name: 'sb-vm',
        flavorRef: flavorId,
        imageRef: imageId,
        networks: 'none',
        metadata: { owner: 'team-a' },
      },
    });
    expect(s.status, JSON.stringify(s.json)).toBe(202);
    serverId = s.json.server.id;
    const v = await api.call('POST', '/volume/v3/volumes', member.token, {
      volume: { size: 1, name: 'sb-data' },
    });
    volumeId = v.json.volume.id;
    await settle();
    await write(() => api.driver.openVolumeData(volumeId, null, 'write'), 2 ** 20, pattern);
    const a = await api.call('POST', `${C}/servers/${serverId}/os-volume_attachments`, member.token, {
      volumeAttachment: { volumeId },
    });
    expect(a.status, JSON.stringify(a.json)).toBe(200);
    // What the guest "wrote" to its root disk (written while it is stopped, as the driver demands).
    await api.call('POST', `${C}/servers/${serverId}/action`, member.token, { 'os-stop': null });
    await settle();
    await write(() => api.driver.openRootDisk(serverId, 'write'), 7 * 2 ** 20, pattern);
    await api.call('POST', `${C}/servers/${serverId}/action`, member.token, { 'os-start': null });
    await settle();
  });
  afterAll(async () => {
    await settle();
    await api?.close();
  });

  it('a backup operator backs up the running server (paused while read); a member and another project may not', async () => {
    const m = await api.call('POST', `${B}/servers/${serverId}/backups`, member.token, { backup: {} });
    expect(m.status).toBe(403);
    const o = await api.call('POST', `${B}/servers/${serverId}/backups`, other.token, { backup: {} });
    expect(o.status).toBe(404);
    const r = await api.call('POST', `${B}/servers/${serverId}/backups`, operator.token, {
      backup: { name: 'sb1' },
    });
    expect(r.status).toBe(202);
    backupId = r.json.backup.id;
    await settle();
    const b = (await api.call('GET', `${B}/server-backups/${backupId}`, member.token)).json.backup;
    expect(b, String(b.fail_reason)).toMatchObject({
      status: 'available',
      server_id: serverId,
      server_name: 'sb-vm',
      size: 2,
    });
    expect(b.volumes).toEqual([{ id: volumeId, name: 'sb-data', size: 1 }]);
    expect(api.driver.pausedForBackup.size).toBe(0);
    expect((await api.call('GET', `${B}/server-backups/${backupId}`, other.token)).status).toBe(404);
    // Cinder's list shows volume backups only.
    expect((await api.call('GET', '/volume/v3/backups/detail', member.token)).json.backups).toEqual([]);
    const bad = await api.call('POST', `${B}/servers/${serverId}/backups`, operator.token, {
      backup: { extra: 1 },
    });
    expect(bad.status).toBe(400);
  });

  it('restore is admin-only (audited); the admin restores to a new server with both disks', async () => {
    for (const who of [member.token, operator.token]) {
      const r = await api.call('POST', `${B}/server-backups/${backupId}/restore`, who, {
        recovery_key: rk.privateKeyPem,
      });
      expect(r.status).toBe(403);
    }
    const locked = await api.call('POST', `${B}/server-backups/${backupId}/restore`, admin, {});
    expect(locked.status).toBe(409);
    const r = await api.call('POST', `${B}/server-backups/${backupId}/restore`, admin, {
      recovery_key: rk.privateKeyPem,
      name: 'sb-back',
    });
    expect(r.status, JSON.stringify(r.json)).toBe(202);
    const newId = r.json.restore.server_id as string;
    await settle();
    expect(api.platform.backups.restoreErrorOf(backupId)).toBeNull();
    const s = (await api.call('GET', `${C}/servers/${newId}`, member.token)).json.server;
    expect(s).toMatchObject({ name: 'sb-back', status: 'ACTIVE' });
    expect(s.metadata).toMatchObject({ owner: 'team-a', restored_from: backupId });
    expect(
      (await read(() => api.driver.openRootDisk(newId, 'read'), 7 * 2 ** 20, pattern.length)).equals(pattern),
    ).toBe(true);
    const att = (await api.call('GET', `${C}/servers/${newId}/os-volume_attachments`, member.token)).json
      .volumeAttachments;
    expect(att).toHaveLength(1);
    expect(att[0].volumeId).not.toBe(volumeId);
    expect(
      (
        await read(() => api.driver.openVolumeData(att[0].volumeId, null, 'read'), 2 ** 20, pattern.length)
      ).equals(pattern),
    ).toBe(true);
    const denied = await api.store.db
      .selectFrom('audit_events')
      .select('user_name')
      .where('action', '=', 'server:backups:restore')
      .where('outcome', '=', 'denied')
      .execute();
    expect(denied.map((d) => d.user_name).sort()).toEqual(['sb-member', 'sb-operator']);
  });

  it('in place: held for a second admin; the requester cannot approve; approved, the disks are put back', async () => {
    const running = await api.call('POST', `${B}/server-backups/${backupId}/restore`, admin, {
      in_place: true,
      recovery_key: rk.privateKeyPem,
    });
    // Held first: the state is checked when it runs.
    expect(running.status).toBe(202);
    const first = running.json.approval as { id: string };
    await api.call('POST', `${B}/approvals/${first.id}/reject`, admin2.token, { reason: 'not now' });
    await api.call('POST', `${C}/servers/${serverId}/action`, member.token, { 'os-stop': null });
    await settle();
    await write(
      () => api.driver.openRootDisk(serverId, 'write'),
      7 * 2 ** 20,
      Buffer.alloc(pattern.length, 0x55),
    );
    const held = await api.call('POST', `${B}/server-backups/${backupId}/restore`, admin, {
      in_place: true,
      recovery_key: rk.privateKeyPem,
    });
    expect(held.status).toBe(202);
    expect(held.json.approval).toMatchObject({ kind: 'restore-in-place', status: 'pending' });
    await settle();
    expect(
      (await read(() => api.driver.openRootDisk(serverId, 'read'), 7 * 2 ** 20, 4)).equals(
        Buffer.alloc(4, 0x55),
      ),
    ).toBe(true);
    const self = await api.call('POST', `${B}/approvals/${held.json.approval.id}/approve`, admin, {
      reason: 'mine',
    });
    expect(self.status).toBe(403);
    // The key is not kept with the request: the approved restore needs the repository unlocked.
    const lockedRun = await api.call(
      'POST',
      `${B}/approvals/${held.json.approval.id}/approve`,
      admin2.token,
      { reason: 'ok' },
    );
    expect(lockedRun.json.approval).toMatchObject({ status: 'failed' });
    expect(lockedRun.json.approval.error).toMatch(/locked/);
    await api.call('POST', `${B}/backup-repository/unlock`, admin, {
      recovery_key: rk.privateKeyPem,
      seconds: 120,
    });
    const again = await api.call('POST', `${B}/server-backups/${backupId}/restore`, admin, {
      in_place: true,
    });
    const ok = await api.call('POST', `${B}/approvals/${again.json.approval.id}/approve`, admin2.token, {
      reason: 'ok',
    });
    expect(ok.json.approval, JSON.stringify(ok.json)).toMatchObject({ status: 'executed' });
    await settle();
    expect(api.platform.backups.restoreErrorOf(backupId)).toBeNull();
    expect(
      (await read(() => api.driver.openRootDisk(serverId, 'read'), 7 * 2 ** 20, pattern.length)).equals(
        pattern,
      ),
    ).toBe(true);
    await api.call('POST', `${B}/backup-repository/lock`, admin);
  });

  it('DR drill: targets are admin-set; the backed-up server passes in an isolated network, one without backup fails; all cleaned up', async () => {
    const t = await api.call('PUT', `${B}/dr/targets/${serverId}`, member.token, {
      target: { rpo_s: 60, rto_s: 60 },
    });
    expect(t.status).toBe(403);
    const set = await api.call('PUT', `${B}/dr/targets/${serverId}`, admin, {
      target: { rpo_s: 86400, rto_s: 3600, boot_marker: 'BULWARK-GUEST-READY' },
    });
    expect(set.status).toBe(200);
    const bare = await api.call('POST', `${C}/servers`, member.token, {
      server: { name: 'sb-bare', flavorRef: flavorId, imageRef: imageId, networks: 'none' },
    });
    await settle();
    await api.call('PUT', `${B}/dr/targets/${bare.json.server.id}`, admin, {
      target: { rpo_s: 60, rto_s: 60 },
    });
    expect((await api.call('GET', `${B}/dr/targets`, member.token)).json.targets).toHaveLength(2);
    expect((await api.call('POST', `${B}/dr/drills`, member.token, { drill: {} })).status).toBe(403);
    const nets = async () => (await api.call('GET', '/network/v2.0/networks', admin)).json.networks.length;
    const servers = async () =>
      (await api.call('GET', `${C}/servers?all_tenants=1`, admin)).json.servers.length;
    const before = { nets: await nets(), servers: await servers() };
    const run = await api.call('POST', `${B}/dr/drills`, admin, {
      drill: { recovery_key: rk.privateKeyPem },
    });
    expect(run.status).toBe(202);
    expect(run.json.run.drills).toHaveLength(2);
    await api.platform.dr.settled();
    const rows = (await api.call('GET', `${B}/dr/drills?run_id=${run.json.run.run_id}`, member.token)).json
      .drills;
    const pass = rows.find((r: { server_id: string }) => r.server_id === serverId);
    expect(pass, JSON.stringify(rows)).toMatchObject({
      status: 'done',
      verdict: 'pass',
      backup_id: backupId,
      rpo_target_s: 86400,
    });
    expect(pass.rpo_s).toBeGreaterThanOrEqual(0);
    expect(pass.rto_s).toBeGreaterThanOrEqual(0);
    const fail = rows.find((r: { server_id: string }) => r.server_id !== serverId);
    expect(fail).toMatchObject({ status: 'done', verdict: 'fail' });
    expect(fail.reason).toMatch(/no finished server backup/);
    expect({ nets: await nets(), servers: await servers() }).toEqual(before);
    const groups = (await api.call('GET', '/network/v2.0/security-groups', admin)).json.security_groups;
    expect(JSON.stringify(groups)).not.toMatch(/dr-drill-/);
    const audit = await api.store.db
      .selectFrom('audit_events')
      .select(['outcome'])
      .where('action', '=', 'dr:drill:done')
      .execute();
    expect(audit.map((a) => a.outcome).sort()).toEqual(['failure', 'success']);
    expect((await api.call('GET', `${B}/dr/drills/${pass.id}`, other.token)).status).toBe(404);
  });
});
