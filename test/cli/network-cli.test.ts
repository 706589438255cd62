import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ApiError } from '../../src/cli/client.js';
import { registerComputeCommands } from '../../src/cli/commands/compute.js';
import { registerNetworkCommands } from '../../src/cli/commands/network.js';
import { PASSWORD, startTestApi, type TestApi } from '../helpers/api.js';
import { startCliHarness } from '../helpers/cli.js';

type Obj = Record<string, any>;

describe('bulwark network|subnet|port|security group|router CLI (in-process, against a listening API on SQLite)', () => {
  let api: TestApi;
  let member: { token: string; projectId: string };
  let h: Awaited<ReturnType<typeof startCliHarness>>;

  beforeAll(async () => {
    api = await startTestApi('sqlite');
    member = await api.persona('netcli-p', 'netcli-member', 'member');
    h = await startCliHarness(api, registerComputeCommands, registerNetworkCommands);
  });
  afterAll(async () => {
    await h?.close();
    await api?.close();
  });

  const asAdmin = () => h.loginAs('admin', api.adminPassword, 'admin');
  const asMember = () => h.loginAs('netcli-member', PASSWORD, 'netcli-p');
  const cli = (...args: string[]) => h.cli(...args);
  const json = (...args: string[]) => h.json(...args);
  const failure = (...args: string[]) => h.failure(...args);

  it('creates, lists, shows, changes and deletes networks and subnets by name', async () => {
    asAdmin();
    const net = await json('network', 'create', 'web', '--description', 'web tier');
    expect(net).toMatchObject({
      name: 'web',
      description: 'web tier',
      zone: 'default',
      'router:external': false,
      port_security_enabled: true,
    });
    const open = await json('network', 'create', 'open', '--no-port-security');
    expect(open.port_security_enabled).toBe(false);
    const ext = await json('network', 'create', 'uplink', '--external');
    expect(ext['router:external']).toBe(true);

    const v4 = await json(
      'subnet',
      'create',
      'web-v4',
      '--network',
      'web',
      '--subnet-range',
      '10.31.0.0/24',
      '--gateway',
      '10.31.0.1',
      '--dns-nameserver',
      '10.31.0.2',
      '--dns-nameserver',
      '10.31.0.3',
      '--allocation-pool',
      'start=10.31.0.10,end=10.31.0.100',
    );
    expect(v4).toMatchObject({
      network_id: net.id,
      ip_version: 4,
      cidr: '10.31.0.0/24',
      gateway_ip: '10.31.0.1',
      enable_dhcp: true,
      dns_nameservers: ['10.31.0.2', '10.31.0.3'],
      allocation_pools: [{ start: '10.31.0.10', end: '10.31.0.100' }],
    });
    const v6 = await json(
      'subnet',
      'create',
      'web-v6',
      '--network',
      net.id,
      '--subnet-range',
      'fd00:31::/64',
      '--gateway',
      'none',
      '--no-dhcp',
    );
    expect(v6).toMatchObject({ ip_version: 6, gateway_ip: null, enable_dhcp: false });
    await cli('subnet', 'create', 'up-v4', '--network', 'uplink', '--subnet-range', '192.0.2.0/24');

    const nets = (await json('network', 'list')) as Obj[];
    expect(nets.map((n) => n.name)).toEqual(['web', 'open', 'uplink']);
    expect(nets[0]).toEqual({
      id: net.id,
      name: 'web',
      subnets: `${v4.id}, ${v6.id}`,
      zone: 'default',
      'router:external': false,
    });
    expect((await json('network', 'list', '--external')).map((n: Obj) => n.name)).toEqual(['uplink']);
    expect(await cli('network', 'list')).toMatch(
      /\| id +\| name +\| subnets +\| zone +\| router:external \|/,
    );
    expect(await cli('network', 'list', '-f', 'value')).toContain(`${net.id} web `);
    expect((await json('network', 'show', 'web')).subnets).toEqual([v4.id, v6.id]);
    expect((await json('network', 'show', net.id)).name).toBe('web');

    const subnets = (await json('subnet', 'list', '--network', 'web')) as Obj[];
    expect(subnets).toEqual([
      { id: v4.id, name: 'web-v4', network_id: net.id, cidr: '10.31.0.0/24' },
      { id: v6.id, name: 'web-v6', network_id: net.id, cidr: 'fd00:31::/64' },
    ]);
    expect(await json('subnet', 'list')).toHaveLength(3);
    expect((await json('subnet', 'show', 'web-v6')).id).toBe(v6.id);

    await cli('network', 'set', 'open', '--name', 'flat', '--description', 'no filtering');
    expect(await json('network', 'show', 'flat')).toMatchObject({ id: open.id, description: 'no filtering' });
    expect((await failure('network', 'set', 'flat')).message).toMatch(/Nothing to change/);

    await cli('subnet', 'delete', 'web-v6');
    expect((await json('network', 'show', 'web')).subnets).toEqual([v4.id]);
    await cli('network', 'delete', 'flat');
    expect((await failure('network', 'show', 'flat')).message).toBe(
      "No network with a name or ID of 'flat' exists.",
    );
  });

  it('resolves names, refuses an ambiguous one, and prefers the caller’s project', async () => {
    asAdmin();
    const a = await json('network', 'create', 'twin');
    const b = await json('network', 'create', 'twin');
    expect((await failure('network', 'show', 'twin')).message).toBe(
      "More than one network exists with the name 'twin'; use the ID.",
    );
    expect((await json('network', 'show', b.id)).id).toBe(b.id);
    await cli('network', 'delete', a.id, b.id);
    expect((await failure('subnet', 'show', 'nowhere')).message).toBe(
      "No subnet with a name or ID of 'nowhere' exists.",
    );

    // The admin sees every project's `default` group; `default` means its own.
    asMember();
    const memberDefault = (await json('security', 'group', 'show', 'default')) as Obj;
    expect(memberDefault.project_id).toBe(member.projectId);
    asAdmin();
    const groups = (await json('security', 'group', 'list')) as Obj[];
    expect(groups.filter((g) => g.name === 'default').length).toBeGreaterThanOrEqual(2);
    const adminDefault = (await json('security', 'group', 'show', 'default')) as Obj;
    expect(adminDefault.project_id).not.toBe(member.projectId);
    expect((await json('security', 'group', 'show', memberDefault.id)).id).toBe(memberDefault.id);
  });

  it('manages security groups and rules: port ranges, ICMP type and code, remote groups', async () => {
    asAdmin();
    const sg = await json('security', 'group', 'create', 'web-sg', '--description', 'web servers');
    expect(sg).toMatchObject({ name: 'web-sg', description: 'web servers', stateful: true });
    // Neutron's template: egress anywhere, IPv4 and IPv6.
    expect((sg.security_group_rules as Obj[]).map((r) => [r.direction, r.ethertype])).toEqual([
      ['egress', 'IPv4'],
      ['egress', 'IPv6'],
    ]);
    const stateless = await json('security', 'group', 'create', 'raw-sg', '--stateless');
    expect(stateless.stateful).toBe(false);

    const ranged = await json(
      'security',
      'group',
      'rule',
      'create',
      'web-sg',
      '--protocol',
      'tcp',
      '--dst-port',
      '8000-8090',
      '--remote-ip',
      '192.0.2.0/24',
    );
    expect(ranged).toMatchObject({
      direction: 'ingress',
      ethertype: 'IPv4',
      protocol: 'tcp',
      port_range_min: 8000,
      port_range_max: 8090,
      remote_ip_prefix: '192.0.2.0/24',
    });
    // 1-65535 is every port: Neutron stores it as no range.
    const all = await json(
      'security',
      'group',
      'rule',
      'create',
      'web-sg',
      '--protocol',
      'udp',
      '--dst-port',
      '1:65535',
    );
    expect(all).toMatchObject({ protocol: 'udp', port_range_min: null, port_range_max: null });
    const ping = await json(
      'security',
      'group',
      'rule',
      'create',
      'web-sg',
      '--protocol',
      'icmp',
      '--icmp-type',
      '8',
      '--icmp-code',
      '0',
    );
    expect(ping).toMatchObject({ protocol: 'icmp', ethertype: 'IPv4', port_range_min: 8, port_range_max: 0 });
    // The family follows the remote prefix; ICMP without --protocol is the family's ICMP.
    const ping6 = await json(
      'security',
      'group',
      'rule',
      'create',
      'web-sg',
      '--icmp-type',
      '128',
      '--remote-ip',
      'fd00::/8',
    );
    expect(ping6).toMatchObject({
      ethertype: 'IPv6',
      protocol: 'ipv6-icmp',
      port_range_min: 128,
      port_range_max: null,
    });
    const peers = await json(
      'security',
      'group',
      'rule',
      'create',
      'web-sg',
      '--egress',
      '--protocol',
      '6',
      '--dst-port',
      '5432',
      '--remote-group',
      'web-sg',
    );
    expect(peers).toMatchObject({
      direction: 'egress',
      protocol: 'tcp',
      port_range_min: 5432,
      port_range_max: 5432,
      remote_group_id: sg.id,
    });

    const rules = (await json('security', 'group', 'rule', 'list', 'web-sg')) as Obj[];
    expect(rules).toHaveLength(7);
    const byId = (id: string) => rules.find((r) => r.id === id);
    expect(byId(ranged.id)).toEqual({
      id: ranged.id,
      direction: 'ingress',
      ethertype: 'IPv4',
      protocol: 'tcp',
      port_range: '8000:8090',
      remote_ip_prefix: '192.0.2.0/24',
      remote_group_id: null,
    });
    expect(byId(ping.id)?.port_range).toBe('type=8 code=0');
    expect(byId(ping6.id)?.port_range).toBe('type=128');
    expect(byId(all.id)?.port_range).toBe('');
    expect((await json('security', 'group', 'rule', 'list')).length).toBeGreaterThan(7);
    expect((await json('security', 'group', 'rule', 'show', peers.id)).remote_group_id).toBe(sg.id);
    expect((await json('security', 'group', 'show', 'web-sg')).security_group_rules).toHaveLength(7);

    // Mistakes caught before any request, and the API's own refusals.
    expect(
      (await failure('security', 'group', 'rule', 'create', 'web-sg', '--dst-port', 'web')).message,
    ).toMatch(/PORT or MIN:MAX/);
    expect(
      (
        await failure(
          'security',
          'group',
          'rule',
          'create',
          'web-sg',
          '--protocol',
          'icmp',
          '--dst-port',
          '22',
        )
      ).message,
    ).toMatch(/ICMP has no ports/);
    expect(
      (
        await failure(
          'security',
          'group',
          'rule',
          'create',
          'web-sg',
          '--icmp-type',
          '8',
          '--protocol',
          'tcp',
        )
      ).message,
    ).toMatch(/need --protocol icmp/);
    expect(
      (
        await failure(
          'security',
          'group',
          'rule',
          'create',
          'web-sg',
          '--remote-ip',
          '10.0.0.0/8',
          '--remote-group',
          'web-sg',
        )
      ).message,
    ).toMatch(/only one of --remote-ip and --remote-group/);
    const noProto = await failure('security', 'group', 'rule', 'create', 'web-sg', '--dst-port', '22');
    expect(noProto).toBeInstanceOf(ApiError);
    expect(noProto.message).toBe('Port ranges need protocol tcp, udp, sctp, dccp or udplite.');
    const dup = await failure('security', 'group', 'rule', 'create', 'web-sg', '--protocol', 'udp');
    expect((dup as ApiError).status).toBe(409);
    expect(dup.message).toMatch(/already exists/);

    await cli('security', 'group', 'set', 'raw-sg', '--name', 'raw', '--description', 'stateless');
    expect(await json('security', 'group', 'show', 'raw')).toMatchObject({
      id: stateless.id,
      description: 'stateless',
    });
    await cli('security', 'group', 'rule', 'delete', ranged.id, ping.id);
    expect(await json('security', 'group', 'rule', 'list', 'web-sg')).toHaveLength(5);
    await cli('security', 'group', 'delete', 'raw');
    expect((await failure('security', 'group', 'show', 'raw')).message).toMatch(/No security group/);
  });

  it('creates ports with fixed IPs, groups and allowed addresses, changes and deletes them', async () => {
    asAdmin();
    const p = await json(
      'port',
      'create',
      'p1',
      '--network',
      'web',
      '--fixed-ip',
      'subnet=web-v4,ip-address=10.31.0.50',
      '--security-group',
      'web-sg',
      '--allowed-address',
      'ip-address=10.31.0.200',
      '--allowed-address',
      'ip-address=10.31.0.201,mac-address=fa:16:3e:00:00:09',
    );
    const web = await json('network', 'show', 'web');
    const sg = await json('security', 'group', 'show', 'web-sg');
    const v4 = await json('subnet', 'show', 'web-v4');
    expect(p).toMatchObject({
      name: 'p1',
      network_id: web.id,
      fixed_ips: [{ subnet_id: v4.id, ip_address: '10.31.0.50' }],
      security_groups: [sg.id],
      port_security_enabled: true,
      allowed_address_pairs: [
        { ip_address: '10.31.0.200' },
        { ip_address: '10.31.0.201', mac_address: 'fa:16:3e:00:00:09' },
      ],
    });
    const bare = await json('port', 'create', 'p2', '--network', 'web', '--no-security-group');
    expect(bare.security_groups).toEqual([]);
    const unfiltered = await json('port', 'create', 'p3', '--network', 'web', '--disable-port-security');
    expect(unfiltered).toMatchObject({ port_security_enabled: false, security_groups: [] });

    const ports = (await json('port', 'list', '--network', 'web')) as Obj[];
    expect(ports.map((x) => x.name)).toEqual(['p1', 'p2', 'p3']);
    expect(ports[0]).toEqual({
      id: p.id,
      name: 'p1',
      mac_address: p.mac_address,
      fixed_ips: `ip_address='10.31.0.50', subnet_id='${v4.id}'`,
      status: 'DOWN',
    });
    expect((await json('port', 'show', 'p1')).id).toBe(p.id);

    // --security-group adds; --no-security-group first clears.
    await cli('port', 'set', 'p2', '--security-group', 'web-sg', '--name', 'p2b');
    expect((await json('port', 'show', 'p2b')).security_groups).toEqual([sg.id]);
    await cli('port', 'set', 'p1', '--no-security-group', '--no-allowed-address', '--disable-port-security');
    expect(await json('port', 'show', 'p1')).toMatchObject({
      security_groups: [],
      allowed_address_pairs: [],
      port_security_enabled: false,
    });
    expect((await failure('port', 'set', 'p1')).message).toMatch(/Nothing to change/);
    // The API's reason for a bad address comes through as is.
    expect(
      (await failure('port', 'create', 'p4', '--network', 'web', '--fixed-ip', 'ip-address=10.99.0.5'))
        .message,
    ).toMatch(/10\.99\.0\.5/);
    expect(
      (await failure('port', 'create', 'p4', '--network', 'web', '--fixed-ip', 'addr=1')).message,
    ).toMatch(/expected subnet=\.\.\.,ip-address=\.\.\./);

    await cli('port', 'delete', 'p1', 'p2b', unfiltered.id);
    expect(await json('port', 'list', '--network', 'web')).toEqual([]);
  });

  it('connects subnets with a router and sets and clears its uplink', async () => {
    asAdmin();
    const r = await json('router', 'create', 'r1', '--description', 'edge');
    expect(r).toMatchObject({ name: 'r1', description: 'edge', external_gateway_info: null });
    await cli('router', 'add', 'subnet', 'r1', 'web-v4');
    await cli('router', 'set', '--external-gateway', 'uplink', 'r1');
    const uplink = await json('network', 'show', 'uplink');
    expect((await json('router', 'show', 'r1')).external_gateway_info).toMatchObject({
      network_id: uplink.id,
      enable_snat: true,
    });
    expect(await json('router', 'list')).toEqual([
      { id: r.id, name: 'r1', status: 'ACTIVE', external_gateway: uplink.id, project_id: r.project_id },
    ]);
    await cli('router', 'unset', '--external-gateway', 'r1');
    expect((await json('router', 'show', r.id)).external_gateway_info).toBeNull();
    await cli('router', 'remove', 'subnet', 'r1', 'web-v4');
    const r2 = await json('router', 'create', 'r2', '--external-gateway', 'uplink');
    expect(r2.external_gateway_info.network_id).toBe(uplink.id);
    await cli('router', 'delete', 'r1', 'r2');
    expect(await json('router', 'list')).toEqual([]);
  });

  it('adds and removes a security group on every port of a server', async () => {
    asMember();
    const { flavorId, imageId } = await api.bootable(member.token, 'netcli');
    const net = await json('network', 'create', 'app-net');
    await cli('subnet', 'create', 'app-v4', '--network', 'app-net', '--subnet-range', '10.32.0.0/24');
    const app1 = await json('security', 'group', 'create', 'app');
    const created = await api.call('POST', '/compute/v2.1/servers', member.token, {
      server: { name: 'appvm', imageRef: imageId, flavorRef: flavorId, networks: [{ uuid: net.id }] },
    });
    expect(created.status).toBe(202);
    const id = created.json.server.id as string;
    await api.platform.compute.servers.settled(id);

    /** The security groups of the server's one port, found with `port list --server`. */
    const groupsOfPorts = async () => {
      const ports = (await json('port', 'list', '--server', 'appvm')) as Obj[];
      expect(ports).toHaveLength(1);
      return (await json('port', 'show', ports[0]?.id)).security_groups;
    };
    const def = await json('security', 'group', 'show', 'default');
    expect(await groupsOfPorts()).toEqual([def.id]);
    await cli('server', 'add', 'security', 'group', 'appvm', 'app');
    expect(await groupsOfPorts()).toEqual(expect.arrayContaining([def.id, app1.id]));
    await cli('server', 'remove', 'security', 'group', 'appvm', 'default');
    expect(await groupsOfPorts()).toEqual([app1.id]);
    expect((await failure('server', 'add', 'security', 'group', 'appvm', 'nope')).message).toBe(
      "No security group with a name or ID of 'nope' exists.",
    );
    await api.call('DELETE', `/compute/v2.1/servers/${id}`, member.token);
    await api.platform.compute.servers.settled(id);
  });

  it('passes on the API’s refusals and reasons: 403 for a member’s external network, 400 for a bad CIDR', async () => {
    asMember();
    const before = await api.store.db.selectFrom('networks').select('id').execute();
    const refused = await failure('network', 'create', 'sneaky', '--external');
    expect(refused).toBeInstanceOf(ApiError);
    expect((refused as ApiError).status).toBe(403);
    expect(refused.message).toBe('Only administrators can create external networks (router:external).');
    expect(await api.store.db.selectFrom('networks').select('id').execute()).toEqual(before);
    // And the real entry point (bin/bulwark.js → main.ts) prints it and exits non-zero.
    const argv = process.argv;
    const codes: unknown[] = [];
    const exit = vi
      .spyOn(process, 'exit')
      .mockImplementation(((code?: number) => void codes.push(code)) as never);
    const errors: string[] = [];
    const err = vi
      .spyOn(console, 'error')
      .mockImplementation((...a: unknown[]) => void errors.push(a.join(' ')));
    try {
      process.argv = ['node', 'bulwark', 'network', 'create', 'sneaky', '--external'];
      await import('../../src/cli/main.js');
      await vi.waitFor(() => expect(codes).not.toEqual([]), { timeout: 20_000 });
    } finally {
      process.argv = argv;
      exit.mockRestore();
      err.mockRestore();
    }
    expect(codes).toEqual([1]);
    expect(errors).toEqual([
      'bulwark: Only administrators can create external networks (router:external). (HTTP 403)',
    ]);
    expect(await api.store.db.selectFrom('networks').select('id').execute()).toEqual(before);
    const zoned = await failure('network', 'create', 'zoned', '--zone', 'dmz');
    expect((zoned as ApiError).status).toBe(403);

    const own = await json('network', 'create', 'mine');
    const bad = await failure(
      'subnet',
      'create',
      's',
      '--network',
      'mine',
      '--subnet-range',
      '10.0.0.300/24',
    );
    expect((bad as ApiError).status).toBe(400);
    expect(bad.message).toBe("'10.0.0.300/24' is not a valid CIDR, e.g. 10.0.0.0/24 or fd00::/64.");
    const hostBits = await failure(
      'subnet',
      'create',
      's',
      '--network',
      own.id,
      '--subnet-range',
      '10.0.0.5/24',
    );
    expect(hostBits.message).toBe("'10.0.0.5/24' has host bits set; did you mean 10.0.0.0/24?");
    expect(
      (
        await failure(
          'subnet',
          'create',
          's',
          '--network',
          'mine',
          '--subnet-range',
          '10.0.0.0/24',
          '--ip-version',
          '5',
        )
      ).message,
    ).toMatch(/not 4 or 6/);
    // A member cannot see, let alone delete, another project's network.
    expect((await failure('network', 'delete', 'web')).message).toBe(
      "No network with a name or ID of 'web' exists.",
    );
  });
});
