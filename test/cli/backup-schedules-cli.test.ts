import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateRecoveryKey } from '../../src/backups/crypto.js';
import { registerBackupCommands } from '../../src/cli/commands/backups.js';
import { registerComputeCommands } from '../../src/cli/commands/compute.js';
import { PASSWORD, startTestApi, type TestApi } from '../helpers/api.js';
import { startCliHarness } from '../helpers/cli.js';

/** `bulwark server backup schedule ...` and `bulwark backup schedule ...`, in-process against a listening API. */
describe('bulwark backup schedule CLI, servers and volumes (SQLite)', () => {
  let api: TestApi;
  let h: Awaited<ReturnType<typeof startCliHarness>>;

  beforeAll(async () => {
    api = await startTestApi('sqlite');
    const member = await api.persona('bscli-p', 'bscli-member', 'member');
    const admin = await api.login('admin', api.adminPassword, 'admin');
    await api.platform.backups.initRepository(api.authOf(admin), generateRecoveryKey().publicKey);
    const { flavorId, imageId } = await api.bootable(member.token, 'bscli', 128);
    await api.call('POST', '/compute/v2.1/servers', member.token, {
      server: { name: 'db-1', flavorRef: flavorId, imageRef: imageId, networks: 'none' },
    });
    await api.call('POST', '/volume/v3/volumes', member.token, { volume: { size: 1, name: 'db-data' } });
    await api.platform.compute.servers.settled();
    await api.platform.volume.volumes.settled();
    h = await startCliHarness(api, registerComputeCommands, registerBackupCommands);
  });
  afterAll(async () => {
    await h?.close();
    await api?.close();
  });

  it('the admin schedules a server; the project lists it; a member may not set one', async () => {
    h.loginAs('bscli-member', PASSWORD, 'bscli-p');
    expect(
      (await h.failure('server', 'backup', 'schedule', 'create', 'db-1', '--every', '60')).message,
    ).toMatch(/403|not authorized|Policy/i);
    h.loginAs('admin', api.adminPassword, 'admin');
    // The admin names the member's server by id (names are looked up in the caller's project).
    const [server] = await api.store.db
      .selectFrom('servers')
      .select('id')
      .where('name', '=', 'db-1')
      .execute();
    const s = await h.json(
      ...['server', 'backup', 'schedule', 'create', String(server?.id), '--every', '1440'],
      ...['--name', 'nightly', '--keep-last', '3', '--keep-weekly', '2'],
    );
    expect(s).toMatchObject({ server_id: server?.id, name: 'nightly', keep_last: 3, keep_weekly: 2 });
    h.loginAs('bscli-member', PASSWORD, 'bscli-p');
    expect(await h.json('server', 'backup', 'schedule', 'list')).toEqual([
      expect.objectContaining({ id: s.id, server_id: server?.id, interval_minutes: 1440 }),
    ]);
    // Volume schedules are their own list.
    expect(await h.json('backup', 'schedule', 'list')).toEqual([]);
    h.loginAs('admin', api.adminPassword, 'admin');
    expect((await h.failure('backup', 'schedule', 'delete', s.id)).message).toMatch(
      /Could not find backup schedule/,
    );
    await h.cli('server', 'backup', 'schedule', 'delete', s.id);
    expect(await h.json('server', 'backup', 'schedule', 'list', '--all-projects')).toEqual([]);
  });

  it('volume schedules go through the same commands', async () => {
    const [volume] = await api.store.db
      .selectFrom('volumes')
      .select('id')
      .where('name', '=', 'db-data')
      .execute();
    const v = await h.json('backup', 'schedule', 'create', String(volume?.id), '--every', '60');
    expect(v).toMatchObject({ volume_id: volume?.id, interval_minutes: 60, keep_last: 7 });
    expect(await h.json('backup', 'schedule', 'list', '--all-projects')).toEqual([
      expect.objectContaining({ id: v.id, volume_id: volume?.id }),
    ]);
    await h.cli('backup', 'schedule', 'delete', v.id);
  });
});
