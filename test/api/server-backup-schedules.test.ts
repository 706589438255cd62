import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateRecoveryKey } from '../../src/backups/crypto.js';
import { auditedEvents, startTestApi, type TestApi } from '../helpers/api.js';
import { clockedBackups } from '../helpers/backups.js';
import { dialects } from '../helpers/store.js';

/**
 * Whole-server backup schedules (issue 6, docs/backups.md): who may set and
 * read them, that each kind's routes see only their own schedules, and a
 * run of nightly ticks as the bulwark-backup identity pruned to the
 * retention policy; a run that cannot back up is the schedule's last_error.
 * The fake hypervisor holds the disks; the backup itself is the one
 * test/api/server-backups.test.ts and the real-guest e2e cover.
 */
describe.each(dialects())('server backup schedules on %s', (dialect) => {
  let api: TestApi;
  let admin: string;
  let member: { token: string; projectId: string };
  let operator: { token: string };
  let other: { token: string };
  const B = '/bulwark/v1';
  let serverId = '';
  const settle = async () => {
    await api.platform.backups.settled();
    await api.platform.compute.servers.settled();
  };
  const audited = (action: string, outcome: string) => auditedEvents(api, action, outcome);

  beforeAll(async () => {
    api = await startTestApi(dialect);
    admin = await api.login('admin', api.adminPassword, 'admin');
    member = await api.persona('sbs-a', 'sbs-member', 'member');
    operator = await api.persona('sbs-a', 'sbs-operator', 'backup-operator');
    other = await api.persona('sbs-b', 'sbs-other', 'member');
    await api.platform.backups.initRepository(api.authOf(admin), generateRecoveryKey().publicKey);
    const { flavorId, imageId } = await api.bootable(member.token, 'sbs', 128);
    const s = await api.call('POST', '/compute/v2.1/servers', member.token, {
      server: { name: 'sbs-vm', flavorRef: flavorId, imageRef: imageId, networks: 'none' },
    });
    expect(s.status, JSON.stringify(s.json)).toBe(202);
    serverId = s.json.server.id;
    await settle();
  });
  afterAll(async () => {
    await settle();
    await api?.close();
  });

  it('only the cloud admin sets one; the project reads its own; each kind sees only its own', async () => {
    const body = { schedule: { server_id: serverId, name: 'nightly', interval_minutes: 1440, keep_last: 2 } };
    expect((await api.call('POST', `${B}/server-backup-schedules`, member.token, body)).status).toBe(403);
    expect((await api.call('POST', `${B}/server-backup-schedules`, operator.token, body)).status).toBe(403);
    const none = {
      schedule: { ...body.schedule, keep_last: 0, keep_daily: 0, keep_weekly: 0, keep_monthly: 0 },
    };
    expect((await api.call('POST', `${B}/server-backup-schedules`, admin, none)).status).toBe(400);
    // The volume route wants a volume_id; a server_id there is a schema error, not a volume schedule.
    expect((await api.call('POST', `${B}/backup-schedules`, admin, body)).status).toBe(400);
    const missing = { schedule: { ...body.schedule, server_id: 'no-such-server' } };
    expect((await api.call('POST', `${B}/server-backup-schedules`, admin, missing)).status).toBe(404);
    const before = await api.store.db.selectFrom('backup_schedules').select('id').execute();
    expect(before).toHaveLength(0);

    const made = await api.call('POST', `${B}/server-backup-schedules`, admin, body);
    expect(made.status, JSON.stringify(made.json)).toBe(201);
    expect(made.json.schedule).toMatchObject({ server_id: serverId, name: 'nightly', keep_last: 2 });
    expect(made.json.schedule).not.toHaveProperty('volume_id');
    const id = made.json.schedule.id as string;
    const mine = (await api.call('GET', `${B}/server-backup-schedules`, member.token)).json.schedules;
    expect(mine.map((x: { id: string }) => x.id)).toEqual([id]);
    expect((await api.call('GET', `${B}/server-backup-schedules`, other.token)).json.schedules).toEqual([]);
    expect((await api.call('GET', `${B}/backup-schedules`, member.token)).json.schedules).toEqual([]);
    // Another kind's route, or a member, cannot delete it.
    expect((await api.call('DELETE', `${B}/backup-schedules/${id}`, admin)).status).toBe(404);
    expect((await api.call('DELETE', `${B}/server-backup-schedules/${id}`, member.token)).status).toBe(403);
    const create = await audited('server:backups:schedules:create', 'success');
    expect(create.map((a) => a.user_name)).toEqual(['admin']);
    expect(await audited('server:backups:schedules:create', 'failure')).not.toHaveLength(0);
    expect((await api.call('DELETE', `${B}/server-backup-schedules/${id}`, admin)).status).toBe(204);
    expect((await api.call('GET', `${B}/server-backup-schedules`, admin)).json.schedules).toEqual([]);
  });

  it('nightly runs back the server up as bulwark-backup and prune to keep-last and keep-weekly', {
    timeout: 600_000,
  }, async () => {
    const made = await api.call('POST', `${B}/server-backup-schedules`, admin, {
      schedule: {
        server_id: serverId,
        name: 'nightly',
        interval_minutes: 1440,
        keep_last: 2,
        keep_daily: 0,
        keep_weekly: 2,
        keep_monthly: 0,
      },
    });
    expect(made.status).toBe(201);
    const scheduleId = made.json.schedule.id as string;
    // A clock the scheduler and the service share: 8 nightly runs from Sunday 2026-03-01.
    let clock = Date.UTC(2026, 2, 1);
    const now = () => clock;
    const { scheduler } = clockedBackups(api, now);
    await api.store.db
      .updateTable('backup_schedules')
      .set({ next_run_at: new Date(clock).toISOString() })
      .where('id', '=', scheduleId)
      .execute();
    for (let day = 0; day < 8; day++) {
      await scheduler.tick();
      await scheduler.tick(); // not due again the same day
      clock += 86_400_000;
    }
    const after = (await api.call('GET', `${B}/server-backup-schedules`, member.token)).json.schedules[0];
    expect(after).toMatchObject({
      id: scheduleId,
      last_error: null,
      next_run_at: '2026-03-09T00:00:00.000Z',
    });
    const kept = (await api.call('GET', `${B}/server-backups?server_id=${serverId}`, member.token)).json
      .backups as { name: string; status: string }[];
    // Last 2 (Mar 8, Mar 7) and the newest of the last two ISO weeks (W10: Sunday Mar 8; W09: Sunday Mar 1).
    expect(kept.map((b) => b.name.slice('nightly-'.length, 'nightly-'.length + 10)).sort()).toEqual([
      '2026-03-01',
      '2026-03-07',
      '2026-03-08',
    ]);
    expect(kept.every((b) => b.status === 'available')).toBe(true);
    const by = await api.store.db
      .selectFrom('backups')
      .select(['user_id', 'schedule_id'])
      .where('source_id', '=', serverId)
      .execute();
    expect(new Set(by.map((r) => r.user_id))).toEqual(new Set([await scheduler.identityUser()]));
    expect(new Set(by.map((r) => r.schedule_id))).toEqual(new Set([scheduleId]));
    const done = await audited('server:backups:create:done', 'success');
    expect(done.filter((a) => a.user_name === 'bulwark-backup')).toHaveLength(8);
    const pruned = await audited('volume:backups:delete', 'success');
    expect(pruned.filter((a) => a.user_name === 'bulwark-backup' && a.reason === 'retention')).toHaveLength(
      5,
    );

    // A run that cannot back up (the server is busy) leaves its reason on the schedule and prunes nothing.
    await api.store.db
      .updateTable('servers')
      .set({ task_state: 'rebooting' })
      .where('id', '=', serverId)
      .execute();
    await scheduler.tick();
    await api.store.db.updateTable('servers').set({ task_state: null }).where('id', '=', serverId).execute();
    const failed = (await api.call('GET', `${B}/server-backup-schedules?all_tenants=1`, admin)).json
      .schedules[0];
    expect(failed.last_error).toMatch(/it can be backed up when active, paused or stopped/);
    expect(
      (await api.call('GET', `${B}/server-backups?server_id=${serverId}`, member.token)).json.backups,
    ).toHaveLength(3);
    // The next good run clears it.
    clock += 86_400_000;
    await scheduler.tick();
    const cleared = (await api.call('GET', `${B}/server-backup-schedules`, member.token)).json.schedules[0];
    expect(cleared.last_error).toBeNull();
  });
});
