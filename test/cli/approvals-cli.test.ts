import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerApprovalCommands } from '../../src/cli/commands/approvals.js';
import { registerComputeCommands } from '../../src/cli/commands/compute.js';
import { PASSWORD, startTestApi, type TestApi } from '../helpers/api.js';
import { startCliHarness } from '../helpers/cli.js';

/** `bulwark approval list|show|approve|reject` and `approval trigger list|set`, in-process against a listening API. */
describe('bulwark approval CLI (SQLite)', () => {
  let api: TestApi;
  let h: Awaited<ReturnType<typeof startCliHarness>>;

  beforeAll(async () => {
    api = await startTestApi('sqlite');
    const alice = await api.persona('apcli-p', 'apcli-alice', 'member');
    await api.persona('admin', 'apcli-admin2', 'admin');
    await api.bootable(alice.token, 'apcli');
    await api.platform.quotas.set(alice.projectId, { ram: -1 });
    await api.platform.compute.flavors.create({ name: 'apcli-huge', vcpus: 1, ram: 131072, disk: 1 });
    h = await startCliHarness(api, registerComputeCommands, registerApprovalCommands);
  });
  afterAll(async () => {
    await h?.close();
    await api?.close();
  });

  it('holds a large server, shows it pending, refuses the requester, runs it once another admin approves', async () => {
    h.loginAs('apcli-alice', PASSWORD, 'apcli-p');
    const held = await h.json('server', 'create', 'big', '--flavor', 'apcli-huge', '--image', 'apcli-image');
    expect(held).toMatchObject({ kind: 'server-create', status: 'pending' });
    expect(held.summary).toMatch(/131072 MiB RAM, above 65536/);
    expect(held.approve_with).toBe(`bulwark approval approve ${held.id} --reason TEXT`);
    const mine = await h.json('approval', 'list', '--status', 'pending');
    expect(mine.map((a: { id: string }) => a.id)).toEqual([held.id]);
    expect((await h.failure('approval', 'approve', held.id, '--reason', 'mine')).message).toMatch(
      /not authorized/,
    );

    h.loginAs('admin', api.adminPassword, 'admin');
    expect((await h.failure('approval', 'approve', held.id)).message).toMatch(/--reason/);
    const done = await h.json('approval', 'approve', held.id, '--reason', 'capacity reserved');
    expect(done).toMatchObject({
      status: 'executed',
      decided_by_name: 'admin',
      decision_reason: 'capacity reserved',
    });
    expect(done.result.server.name).toBe('big');
    expect((await h.failure('approval', 'reject', held.id, '--reason', 'late')).message).toMatch(
      /already executed/,
    );
    expect((await h.json('approval', 'show', held.id)).status).toBe('executed');
  });

  it('lists and sets triggers', async () => {
    h.loginAs('admin', api.adminPassword, 'admin');
    const list = await h.json('approval', 'trigger', 'list');
    expect(list.find((t: { kind: string }) => t.kind === 'flavor-size')).toMatchObject({
      enabled: true,
      params: { vcpus: 16, ram: 65536 },
    });
    const set = await h.json('approval', 'trigger', 'set', 'flavor-size', '--param', 'ram=200000');
    expect(set).toMatchObject({ enabled: true, params: { vcpus: 16, ram: 200000 }, updated_by: 'admin' });
    expect((await h.failure('approval', 'trigger', 'set', 'flavor-size', '--param', 'ram')).message).toMatch(
      /name=whole-number/,
    );
    h.loginAs('apcli-alice', PASSWORD, 'apcli-p');
    expect((await h.failure('approval', 'trigger', 'set', 'flavor-size', '--disable')).message).toMatch(
      /not authorized/,
    );
    const s = await h.json('server', 'create', 'big2', '--flavor', 'apcli-huge', '--image', 'apcli-image');
    expect(s.name).toBe('big2');
  });
});
