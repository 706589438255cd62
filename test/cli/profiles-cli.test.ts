import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerComputeCommands } from '../../src/cli/commands/compute.js';
import { registerProfileCommands } from '../../src/cli/commands/profiles.js';
import { PASSWORD, startTestApi, type TestApi, testPlatformOptions } from '../helpers/api.js';
import { startCliHarness } from '../helpers/cli.js';

/** `bulwark profile import|export` (docs/profiles.md), in-process against a listening API. */
describe('bulwark profile CLI (SQLite)', () => {
  let api: TestApi;
  let h: Awaited<ReturnType<typeof startCliHarness>>;
  let dir: string;
  const profile = {
    name: 'cli-web',
    cpus: 1,
    memory: 256,
    disks: [{ name: 'root', size_gb: 1, image: 'pcli-image' }],
    network: { zone: 'pcli-zone', name: 'pcli-net' },
    limits: { cpu_quota_percent: 80, memory_max_mb: 520, io_bandwidth_mb: 20 },
    firmware: { type: 'bios', secure_boot: false },
    cpu_features: { aes: true },
  };
  const file = (name: string, data: unknown) => {
    const f = join(dir, name);
    writeFileSync(f, typeof data === 'string' ? data : JSON.stringify(data));
    return f;
  };
  const servers = async () => (await api.store.db.selectFrom('servers').select('id').execute()).length;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'bw-pcli-'));
    const base = testPlatformOptions('');
    api = await startTestApi('sqlite', { capabilities: { ...base.capabilities, cpuFlags: ['aes'] } });
    const admin = await api.login('admin', api.adminPassword, 'admin');
    const m = await api.persona('pcli-p', 'pcli-member', 'member');
    await api.persona('pcli-q', 'pcli-other', 'member');
    await api.bootable(m.token, 'pcli');
    await api.platform.network.zones.create({ name: 'pcli-zone' });
    const net = await api.platform.network.networks.createNetwork(api.authOf(admin), {
      name: 'pcli-net',
      zone: 'pcli-zone',
      projectId: m.projectId,
    });
    await api.platform.network.networks.createSubnet(api.authOf(m.token), {
      name: 'pcli-sub',
      networkId: net.id,
      ipVersion: 4,
      cidr: '10.78.0.0/24',
    });
    h = await startCliHarness(api, registerComputeCommands, registerProfileCommands);
  });
  afterAll(async () => {
    await h?.close();
    await api?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('a member imports a profile (dry run first), exports it unchanged, and imports the export again', async () => {
    const f = file('web.json', profile);
    // No flavor yet: the member is told the exact command an administrator runs.
    h.loginAs('pcli-member', PASSWORD, 'pcli-p');
    expect((await h.failure('profile', 'import', f)).message).toMatch(
      /No flavor has this profile's size and limits.*openstack flavor create --vcpus 1 --ram 256 --disk 1 --property hw:cpu_features=\+aes --property quota:cpu_quota_percent=80 --property quota:disk_total_bytes_sec=20971520 --property quota:memory_max_mb=520 profile-cli-web/,
    );
    h.loginAs('admin', api.adminPassword, 'admin');
    await h.cli('flavor', 'create', 'pcli-limited', '--vcpus', '1', '--ram', '256', '--disk', '1');
    await h.cli(
      'flavor',
      'set',
      'pcli-limited',
      '--property',
      'hw:cpu_features=+aes',
      '--property',
      'quota:cpu_quota_percent=80',
      '--property',
      'quota:disk_total_bytes_sec=20971520',
      '--property',
      'quota:memory_max_mb=520',
    );

    h.loginAs('pcli-member', PASSWORD, 'pcli-p');
    const before = await servers();
    expect(await h.json('profile', 'import', f, '--dry-run')).toMatchObject({
      dry_run: true,
      flavor: 'pcli-limited',
      image: 'pcli-image',
      network: 'pcli-net (zone pcli-zone)',
      server_id: null,
    });
    expect(await servers()).toBe(before);
    const made = await h.json('profile', 'import', f, '--wait');
    expect(made).toMatchObject({ dry_run: false, flavor: 'pcli-limited', status: 'ACTIVE' });
    expect(JSON.parse(await h.cli('profile', 'export', 'cli-web'))).toEqual(profile);

    const out = join(dir, 'exported.json');
    await h.cli('profile', 'export', made.server_id, '--output', out);
    expect(JSON.parse(readFileSync(out, 'utf8'))).toEqual(profile);
    writeFileSync(out, JSON.stringify({ ...JSON.parse(readFileSync(out, 'utf8')), name: 'cli-web-2' }));
    expect(await h.json('profile', 'import', out)).toMatchObject({
      flavor: 'pcli-limited',
      status: expect.stringMatching(/^(BUILD|ACTIVE)$/),
    });
    expect(await servers()).toBe(before + 2);

    // Another project cannot export it.
    h.loginAs('pcli-other', PASSWORD, 'pcli-q');
    expect((await h.failure('profile', 'export', made.server_id)).message).toMatch(
      /could not be found|No server/,
    );
  });

  it('refuses unknown and unsafe fields and files that are not JSON, creating nothing', async () => {
    h.loginAs('pcli-member', PASSWORD, 'pcli-p');
    const before = await servers();
    const cases: [unknown, RegExp][] = [
      [{ ...profile, gpu: 'all' }, /unknown field \/gpu/],
      [{ ...profile, cpu_features: { vmx: true } }, /\/cpu_features\/vmx is refused: nested virtualisation/],
      [{ ...profile, limits: { memory_max_mb: 300 } }, /memory_max_mb is refused: 300 MiB is below/],
      ['{"name": "x",', /is not JSON/],
    ];
    for (const [i, [data, message]] of cases.entries())
      expect(
        (await h.failure('profile', 'import', file(`bad-${i}.json`, data), '--dry-run')).message,
      ).toMatch(message);
    expect((await h.failure('profile', 'import', join(dir, 'missing.json'))).message).toMatch(
      /Cannot read profile/,
    );
    expect(await servers()).toBe(before);
  });
});
