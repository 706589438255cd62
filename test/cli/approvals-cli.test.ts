import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerApprovalCommands } from '../../src/cli/commands/approvals.js';
import { registerComputeCommands } from '../../src/cli/commands/compute.js';
import { registerMetadataRuleCommands } from '../../src/cli/commands/metadata-rules.js';
import { PASSWORD, startTestApi, type TestApi } from '../helpers/api.js';
import { startCliHarness } from '../helpers/cli.js';
import { fakeSysfs, TYPICAL_ALLOW } from '../helpers/fake-sysfs.js';

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

/** `bulwark metadata-rule`, `server history` and `server host-device-add` (fake sysfs), in-process. */
describe('bulwark metadata-rule, server history and host-device CLI (SQLite)', () => {
  let api: TestApi;
  let sys: Awaited<ReturnType<typeof fakeSysfs>>;
  let h: Awaited<ReturnType<typeof startCliHarness>>;

  beforeAll(async () => {
    sys = await fakeSysfs();
    await sys.typicalHost();
    api = await startTestApi('sqlite', { passthrough: TYPICAL_ALLOW, sysfsRoot: sys.root });
    await api.persona('admin', 'mdcli-admin2', 'admin');
    const alice = await api.persona('mdcli-p', 'mdcli-alice', 'member');
    await api.bootable(alice.token, 'mdcli');
    h = await startCliHarness(api, registerComputeCommands, registerMetadataRuleCommands);
  });
  afterAll(async () => {
    await h?.close();
    await api?.close();
    await sys?.remove();
  });

  it('manages rules, which then hold for server create; history shows who changed what', async () => {
    h.loginAs('admin', api.adminPassword, 'admin');
    const rule = await h.json(
      'metadata-rule',
      'create',
      'pci-owner',
      '--when',
      'compliance_level=pci-dss',
      '--require',
      'cost_center',
    );
    expect(rule).toMatchObject({ id: 'pci-owner', requires: ['cost_center'], created_by: 'admin' });
    expect((await h.json('metadata-rule', 'list')).map((r: { id: string }) => r.id)).toEqual([
      'pci-owner',
      'production-needs-ticket',
    ]);
    h.loginAs('mdcli-alice', PASSWORD, 'mdcli-p');
    expect((await h.failure('metadata-rule', 'delete', 'pci-owner')).message).toMatch(/not authorized/);
    const card = ['server', 'create', 'card', '--flavor', 'mdcli-flavor', '--image', 'mdcli-image'];
    const refused = await h.failure(...card, '--property', 'compliance_level=pci-dss');
    expect(refused.message).toMatch(
      /compliance_level=pci-dss require cost_center \(metadata rule pci-owner\)/,
    );
    await h.cli(...card, '--property', 'compliance_level=pci-dss', '--property', 'cost_center=Payments');
    await api.platform.compute.servers.settled();
    const history = await h.json('server', 'history', 'card');
    expect(history).toEqual([expect.objectContaining({ user_name: 'mdcli-alice', change: 'create' })]);
    expect(history[0].diff['metadata.cost_center']).toEqual({ from: null, to: 'Payments' });
    h.loginAs('admin', api.adminPassword, 'admin');
    await h.cli('metadata-rule', 'delete', 'pci-owner');
    expect((await h.json('metadata-rule', 'list')).map((r: { id: string }) => r.id)).toEqual([
      'production-needs-ticket',
    ]);
  });

  it('host-device-add is held for another admin and prints the approval', async () => {
    h.loginAs('mdcli-alice', PASSWORD, 'mdcli-p');
    await h.cli('server', 'stop', 'card');
    await api.platform.compute.servers.settled();
    expect((await h.failure('server', 'host-device-add', 'card', '--pci', '0000:03:00.0')).message).toMatch(
      /not authorized/,
    );
    // The admin names another project's server by id.
    const card = (await h.json('server', 'show', 'card')).id as string;
    h.loginAs('admin', api.adminPassword, 'admin');
    expect((await h.failure('server', 'host-device-add', card, '--usb', '046d')).message).toMatch(
      /vendor:product/,
    );
    const held = await h.json(
      'server',
      'host-device-add',
      card,
      '--pci',
      '0000:03:00.0',
      '--pci',
      '0000:03:00.1',
    );
    expect(held).toMatchObject({ kind: 'device-passthrough', status: 'pending' });
    expect(held.summary).toMatch(/pci 0000:03:00\.0 10de:1eb8 group 14/);
  });
});
