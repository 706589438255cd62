import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { memoryLimitBytes } from '../../src/host/cgroups.js';
import { lastAuditEvent, startTestApi, type TestApi, testPlatformOptions } from '../helpers/api.js';
import { dialects } from '../helpers/store.js';

const P = '/bulwark/v1/profiles';
const MiB = 1024 * 1024;

/** VM profiles (docs/profiles.md): import onto flavors, images and zones; export back; refusals change nothing. */
describe.each(dialects())('VM profiles on %s', (dialect) => {
  let api: TestApi;
  let admin: string;
  let member: string;
  let other: string;
  let imageId: string;
  let netId: string;

  /** A full profile, as in the guide's examples. */
  const full = (name: string): Record<string, any> => ({
    name,
    cpus: 2,
    memory: 256,
    disks: [{ name: 'root', size_gb: 1, image: 'prof-image' }],
    network: { zone: 'dmz', name: 'prof-dmz' },
    limits: { cpu_quota_percent: 150, memory_max_mb: 600, io_bandwidth_mb: 100 },
    firmware: { type: 'uefi', secure_boot: true },
    tpm: { version: '2.0', model: 'tpm-crb' },
    cpu_features: { aes: true, avx: false },
    metadata: { environment: 'production', ticket: 'JIRA-1234', owner: 'alice' },
  });

  /** What an import could leave behind: servers, flavors, ports. */
  const counts = async () => ({
    servers: (await api.store.db.selectFrom('servers').select('id').execute()).length,
    flavors: (await api.store.db.selectFrom('flavors').select('id').execute()).length,
    ports: (await api.store.db.selectFrom('ports').select('id').execute()).length,
  });

  beforeAll(async () => {
    const base = testPlatformOptions('');
    api = await startTestApi(dialect, { capabilities: { ...base.capabilities, cpuFlags: ['aes', 'avx'] } });
    admin = await api.login('admin', api.adminPassword, 'admin');
    member = (await api.persona('prof-a', 'prof-member', 'member')).token;
    other = (await api.persona('prof-b', 'prof-other', 'member')).token;
    imageId = (await api.bootable(member, 'prof')).imageId;
    expect(
      (await api.call('POST', '/network/v2.0/bulwark-zones', admin, { bulwark_zone: { name: 'dmz' } }))
        .status,
    ).toBe(201);
    const auth = api.authOf(member);
    const { networks } = api.platform.network;
    const net = await networks.createNetwork(api.authOf(admin), {
      name: 'prof-dmz',
      zone: 'dmz',
      projectId: auth.projectId as string,
    });
    netId = net.id;
    await networks.createSubnet(auth, {
      name: 'prof-sub',
      networkId: net.id,
      ipVersion: 4,
      cidr: '10.77.0.0/24',
    });
  });
  afterAll(async () => api?.close());

  it('an admin-made flavor is matched; the import makes a server with its limits; export round-trips', async () => {
    const profile = full('web-01');
    // A member cannot make flavors: the refusal names the exact flavor to create, and nothing is made.
    const before = await counts();
    const refused = await api.call('POST', P, member, { profile });
    expect(refused.status).toBe(409);
    expect(refused.json.error.message).toContain(
      'openstack flavor create --vcpus 2 --ram 256 --disk 1 --property hw:cpu_features=+aes,-avx --property hw:firmware_type=uefi',
    );
    expect(await counts()).toEqual(before);
    expect((await api.call('POST', P, member, { profile, create_flavor: true })).status).toBe(403);

    // The admin makes the flavor the message names.
    const f = await api.call('POST', '/compute/v2.1/flavors', admin, {
      flavor: { name: 'web-profile', vcpus: 2, ram: 256, disk: 1 },
    });
    const specs = {
      'quota:cpu_quota_percent': '150',
      'quota:memory_max_mb': '600',
      'quota:disk_total_bytes_sec': String(100 * MiB),
      'hw:firmware_type': 'uefi',
      'os:secure_boot': 'required',
      'hw:machine_type': 'q35',
      'hw:tpm_version': '2.0',
      'hw:tpm_model': 'tpm-crb',
      'hw:cpu_features': '+aes,-avx',
    };
    expect(
      (
        await api.call('POST', `/compute/v2.1/flavors/${f.json.flavor.id}/os-extra_specs`, admin, {
          extra_specs: specs,
        })
      ).status,
    ).toBe(200);

    const withFlavor = await counts();
    const dry = await api.call('POST', P, member, { profile, dry_run: true });
    expect(dry.status).toBe(200);
    expect(dry.json.import).toMatchObject({
      dry_run: true,
      server: null,
      flavor: { id: f.json.flavor.id, name: 'web-profile', created: false },
      image: { id: imageId, name: 'prof-image' },
      network: { id: netId, name: 'prof-dmz', zone: 'dmz' },
    });
    expect(await counts()).toEqual(withFlavor);

    const res = await api.call('POST', P, member, { profile });
    expect(res.status).toBe(202);
    const id = res.json.import.server.id as string;
    await api.platform.compute.servers.settled();
    expect(await lastAuditEvent(api, 'profile:import')).toMatchObject({ outcome: 'success', target_id: id });

    // What the driver is told: the limits, firmware, TPM and CPU features the host then applies.
    const spec = api.driver.guests.get(id)?.spec;
    expect(spec).toMatchObject({
      vcpus: 2,
      memoryMiB: 256,
      memoryMaxMiB: 600,
      machine: 'q35',
      firmware: { type: 'uefi', secureBoot: true },
      cpu: { quotaPercent: 150, features: ['+aes', '-avx'] },
      io: { totalBytesSec: 100 * MiB },
      tpm: { version: '2.0', model: 'tpm-crb' },
      nics: [expect.objectContaining({ ips: [expect.stringMatching(/^10\.77\.0\./)] })],
    });
    const show = await api.call('GET', `/compute/v2.1/servers/${id}`, member);
    expect(show.json.server.metadata).toMatchObject({ ticket: 'JIRA-1234', created_by: 'prof-member' });

    const exported = await api.call('GET', `${P}/${id}`, member);
    expect(exported.status).toBe(200);
    expect(exported.json.profile).toEqual(profile);
    expect(await lastAuditEvent(api, 'profile:export')).toMatchObject({ outcome: 'success', target_id: id });

    // Tenants are isolated: another project's member gets 404, and the refusal is audited.
    const theirs = await api.call('GET', `${P}/${id}`, other);
    expect(theirs.status).toBe(404);
    expect(await lastAuditEvent(api, 'profile:export')).toMatchObject({ outcome: 'failure', status: 404 });

    // Export -> import again (a new name) gives the same server shape on the same flavor.
    const again = await api.call('POST', P, member, {
      profile: { ...exported.json.profile, name: 'web-02' },
    });
    expect(again.status).toBe(202);
    expect(again.json.import.flavor).toMatchObject({ id: f.json.flavor.id, created: false });
    await api.platform.compute.servers.settled();
    const exported2 = await api.call('GET', `${P}/${again.json.import.server.id}`, member);
    expect(exported2.json.profile).toEqual({ ...profile, name: 'web-02' });
  });

  it('an admin may let the import create a private flavor; a refused server takes it back', async () => {
    const profile = {
      name: 'small',
      cpus: 1,
      memory: 256,
      disks: [{ name: 'root', size_gb: 1, image: imageId }],
    };
    const before = await counts();
    // An image that does not exist: refused before anything is made.
    const missing = { ...profile, disks: [{ name: 'root', size_gb: 1, image: 'no-such-image' }] };
    const refused = await api.call('POST', P, admin, { profile: missing, create_flavor: true });
    expect(refused.status).toBe(400);
    expect(refused.json.error.message).toMatch(/\/disks\/0\/image/);
    expect(await counts()).toEqual(before);

    const adminImage = (await api.bootable(admin, 'prof-admin')).imageId;
    const mine = { ...profile, cpus: 3, disks: [{ name: 'root', size_gb: 1, image: adminImage }] };
    // A server the quota refuses: the flavor made for it goes too.
    const adminProject = api.authOf(admin).projectId as string;
    await api.platform.quotas.set(adminProject, { instances: 0 });
    const over = await api.call('POST', P, admin, { profile: mine, create_flavor: true });
    expect(over.status).toBe(403);
    expect(await counts()).toEqual({ ...before, flavors: before.flavors + 1 }); // only bootable()'s flavor
    await api.platform.quotas.set(adminProject, { instances: -1 });

    const ok = await api.call('POST', P, admin, { profile: mine, create_flavor: true });
    expect(ok.status).toBe(202);
    expect(ok.json.import.flavor).toMatchObject({ name: 'profile-small', created: true });
    const f = await api.platform.compute.flavors.get(ok.json.import.flavor.id);
    expect(f).toMatchObject({ vcpus: 3, ram: 256, disk: 1, is_public: 0, extra_specs: '{}' });
    await api.platform.compute.servers.settled();
    expect((await api.call('GET', `${P}/${ok.json.import.server.id}`, admin)).json.profile).toEqual({
      ...mine,
      disks: [{ name: 'root', size_gb: 1, image: 'prof-admin-image' }],
      firmware: { type: 'bios', secure_boot: false },
    });
  });

  it('an import held for approval keeps the flavor it made; the approved create boots on it', async () => {
    const second = (await api.persona('admin', 'prof-admin2', 'admin')).token;
    const adminImage = (await api.bootable(admin, 'prof-big')).imageId;
    // 17 vCPUs is above the flavor-size trigger's 16 (docs/approvals.md).
    const big = {
      name: 'big',
      cpus: 17,
      memory: 256,
      disks: [{ name: 'root', size_gb: 1, image: adminImage }],
    };
    const before = await counts();
    const held = await api.call('POST', P, admin, { profile: big, create_flavor: true });
    expect(held.status).toBe(202);
    expect(held.json.approval).toMatchObject({ kind: 'server-create', status: 'pending' });
    expect(await counts()).toEqual({ ...before, flavors: before.flavors + 1 });
    const approved = await api.call(
      'POST',
      `/bulwark/v1/approvals/${held.json.approval.id}/approve`,
      second,
      {
        reason: 'capacity planned',
      },
    );
    expect(approved.status).toBe(200);
    await api.platform.compute.servers.settled();
    expect(await counts()).toEqual({ ...before, flavors: before.flavors + 1, servers: before.servers + 1 });
    const server = api.driver.guests.get(approved.json.approval.result.server.id)?.spec;
    expect(server).toMatchObject({ name: 'big', vcpus: 17 });
  });

  /** Each refused profile, the status and what the message must say. */
  const refusals: [string, (p: Record<string, any>) => unknown, number, RegExp][] = [
    ['an unknown top-level field', (p) => ({ ...p, sneaky: 1 }), 400, /unknown field \/sneaky/],
    [
      'an unknown limit',
      (p) => ({ ...p, limits: { cpu_shares: 5 } }),
      400,
      /unknown field \/limits\/cpu_shares/,
    ],
    [
      'memory_options (SEV memory)',
      (p) => ({ ...p, memory_options: { guest_memfd: true } }),
      400,
      /\/memory_options is refused: .*SEV/,
    ],
    [
      'enrolled_keys (a host path)',
      (p) => ({
        ...p,
        firmware: { secure_boot: true, enrolled_keys: '/var/lib/hypervisor/secureboot/keys/' },
      }),
      400,
      /\/firmware\/enrolled_keys is refused: host paths/,
    ],
    [
      'a host bridge',
      (p) => ({ ...p, network: { zone: 'dmz', bridge: 'br-vpn' } }),
      400,
      /\/network\/bridge is refused/,
    ],
    [
      'a disk path',
      (p) => ({ ...p, disks: [{ name: 'root', size_gb: 1, image: 'prof-image', path: '/etc/shadow' }] }),
      400,
      /\/disks\/0\/path is refused: host paths/,
    ],
    [
      'path traversal in a disk name',
      (p) => ({ ...p, disks: [{ name: '../../etc/passwd', size_gb: 1, image: 'prof-image' }] }),
      400,
      /\/disks\/0\/name is refused: '..\/..\/etc\/passwd' is a path/,
    ],
    ['zero cpus', (p) => ({ ...p, cpus: 0 }), 400, /\/cpus/],
    ['too many cpus', (p) => ({ ...p, cpus: 65 }), 400, /\/cpus/],
    ['too little memory', (p) => ({ ...p, memory: 16 }), 400, /\/memory/],
    ['cpus as a string', (p) => ({ ...p, cpus: '2' }), 400, /\/cpus/],
    [
      'a CPU quota above what the vCPUs can use',
      (p) => ({ ...p, limits: { cpu_quota_percent: 201 } }),
      400,
      /\/limits\/cpu_quota_percent is refused: 201% is more than 2 vCPU\(s\) can use \(at most 200\)/,
    ],
    [
      'memory_max_mb below the guest RAM',
      (p) => ({ ...p, limits: { memory_max_mb: 256 } }),
      400,
      new RegExp(`memory_max_mb is refused: 256 MiB is below .* at least ${memoryLimitBytes(256) / MiB}`),
    ],
    [
      'Secure Boot on BIOS',
      (p) => ({ ...p, firmware: { type: 'bios', secure_boot: true } }),
      400,
      /\/firmware\/secure_boot is refused: Secure Boot needs UEFI/,
    ],
    [
      'tpm-crb on TPM 1.2',
      (p) => ({ ...p, tpm: { version: '1.2', model: 'tpm-crb' } }),
      400,
      /\/tpm\/model is refused/,
    ],
    [
      'nested virtualisation',
      (p) => ({ ...p, cpu_features: { vmx: true } }),
      400,
      /\/cpu_features\/vmx is refused: nested/,
    ],
    [
      'SEV',
      (p) => ({ ...p, cpu_features: { sev: true, sev_es: true } }),
      400,
      /\/cpu_features\/sev is refused: AMD SEV/,
    ],
    [
      'a mitigation turned off',
      (p) => ({ ...p, cpu_features: { md_clear: false } }),
      400,
      /\/cpu_features\/md_clear is refused: .*weakens isolation/,
    ],
    [
      'a feature not allow-listed',
      (p) => ({ ...p, cpu_features: { pdpe1gb: true } }),
      400,
      /pdpe1gb is refused: .*allow-list/,
    ],
    [
      'a feature the host lacks',
      (p) => ({ ...p, cpu_features: { sha_ni: true } }),
      400,
      /CPU feature sha_ni is refused: this host's CPU does not have it/,
    ],
    ['an unknown zone', (p) => ({ ...p, network: { zone: 'nowhere' } }), 400, /no security zone 'nowhere'/],
    [
      'a zone without a network',
      (p) => ({ ...p, network: { zone: 'default' } }),
      400,
      /no network in zone 'default'/,
    ],
    [
      'an unknown image',
      (p) => ({ ...p, disks: [{ name: 'root', size_gb: 1, image: 'nope' }] }),
      400,
      /no image 'nope'/,
    ],
    ['two disks', (p) => ({ ...p, disks: [...p.disks, ...p.disks] }), 400, /\/disks/],
    [
      'a platform metadata key',
      (p) => ({ ...p, metadata: { created_by: 'mallory' } }),
      400,
      /\/metadata\/created_by is refused/,
    ],
    ['a bad name', (p) => ({ ...p, name: '../x' }), 400, /\/name/],
  ];

  it.each(refusals)(
    'refuses %s, naming the field, and changes nothing',
    async (_what, mutate, status, message) => {
      const before = await counts();
      const audits = (await api.store.db.selectFrom('audit_events').select('seq').execute()).length;
      const res = await api.call('POST', P, member, { profile: mutate(full('refused')) });
      expect(res.status).toBe(status);
      expect(JSON.stringify(res.json)).toMatch(message);
      expect(await counts()).toEqual(before);
      // The refusal itself is audited.
      expect((await api.store.db.selectFrom('audit_events').select('seq').execute()).length).toBe(audits + 1);
      expect(await lastAuditEvent(api, 'profile:import')).toMatchObject({ outcome: 'failure', status });
    },
  );

  it('a body that is not a profile is refused, and the flavor check sees the host', async () => {
    expect((await api.call('POST', P, member, { profile: [] })).status).toBe(400);
    expect((await api.call('POST', P, member, { profile: full('x'), extra: 1 })).status).toBe(400);
    // The guide's example: Secure Boot without a type means UEFI.
    const guide = { ...full('g'), firmware: { secure_boot: true } };
    const dry = await api.call('POST', P, member, { profile: guide, dry_run: true });
    expect(dry.status).toBe(200);
    expect(dry.json.import.flavor.name).toBe('web-profile');
  });
});
