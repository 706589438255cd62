import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerApprovalCommands } from '../../src/cli/commands/approvals.js';
import { registerComputeCommands } from '../../src/cli/commands/compute.js';
import { registerSnapshotCommands } from '../../src/cli/commands/snapshots.js';
import { registerTemplateCommands } from '../../src/cli/commands/templates.js';
import { PASSWORD, startTestApi, type TestApi } from '../helpers/api.js';
import { startCliHarness } from '../helpers/cli.js';

/** `bulwark template ...` and `bulwark snapshot ... --server`, in-process against a listening API. */
describe('bulwark template and server snapshot CLI (SQLite)', () => {
  let api: TestApi;
  let h: Awaited<ReturnType<typeof startCliHarness>>;

  beforeAll(async () => {
    api = await startTestApi('sqlite');
    await api.persona('admin', 'tcli-admin2', 'admin');
    await api.persona('tcli-p', 'tcli-member', 'member');
    const admin = await api.login('admin', api.adminPassword, 'admin');
    await api.bootable(admin, 'tcli');
    h = await startCliHarness(
      api,
      registerComputeCommands,
      registerApprovalCommands,
      registerTemplateCommands,
      registerSnapshotCommands,
    );
  });
  afterAll(async () => {
    await h?.close();
    await api?.close();
  });

  it('an admin makes v1; the creator cannot approve it; a second admin does; members boot from it', async () => {
    h.loginAs('tcli-member', PASSWORD, 'tcli-p');
    expect((await h.failure('template', 'create', 'golden', '--image', 'tcli-image')).message).toMatch(
      /No image|not authorized/,
    );
    h.loginAs('admin', api.adminPassword, 'admin');
    const t = await h.json('template', 'create', 'golden', '--image', 'tcli-image', '--description', 'base');
    expect(t).toMatchObject({ name: 'golden', version: 1, status: 'pending' });
    expect((await h.failure('approval', 'approve', t.approval_id, '--reason', 'mine')).message).toMatch(
      /two-person rule needs another administrator/,
    );
    h.loginAs('tcli-admin2', PASSWORD, 'admin');
    expect((await h.json('approval', 'approve', t.approval_id, '--reason', 'ok')).status).toBe('executed');
    h.loginAs('tcli-member', PASSWORD, 'tcli-p');
    expect(await h.json('template', 'list')).toEqual([
      expect.objectContaining({ name: 'golden', version: 1, status: 'approved', approved_by: 'tcli-admin2' }),
    ]);
    await h.cli('server', 'create', 'web', '--flavor', 'tcli-flavor', '--image', 'tcli-image');
    await api.platform.compute.servers.settled();
  });

  it('server snapshots need --description; the name carries purpose and time; policy set/show', async () => {
    h.loginAs('tcli-member', PASSWORD, 'tcli-p');
    expect((await h.failure('snapshot', 'create', 'pre-patch', '--server', 'web')).message).toMatch(
      /--description/,
    );
    const s = await h.json(
      'snapshot',
      'create',
      'pre-patch',
      '--server',
      'web',
      '--description',
      'before patching',
    );
    expect(s.name).toMatch(/^pre-patch-\d{8}T\d{6}Z$/);
    await api.platform.snapshots.snapshots.settled();
    expect(await h.json('snapshot', 'list', '--server', 'web')).toEqual([
      expect.objectContaining({ id: s.id, kind: 'server', status: 'available' }),
    ]);
    expect((await h.failure('snapshot', 'policy', 'set', '--max-count', '1')).message).toMatch(
      /not authorized/,
    );
    const own = await h.json('snapshot', 'policy', 'set', '--server', 'web', '--max-count', '1');
    expect(own.effective).toEqual({ max_count: 1, max_age_days: null, prune_oldest: false });
    expect(
      (await h.failure('snapshot', 'create', 'again', '--server', 'web', '--description', 'x')).message,
    ).toMatch(/allows 1/);
    await h.cli('snapshot', 'delete', s.id);
    await api.platform.snapshots.snapshots.settled();
    expect(await h.json('snapshot', 'list')).toEqual([]);
  });
});
