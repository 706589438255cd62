import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SecurityGroupService } from '../../src/network/security-groups.js';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { dialects } from '../helpers/store.js';

describe.each(dialects())('network and security group API on %s', (dialect) => {
  let api: TestApi;
  let a: { token: string; projectId: string };
  let b: { token: string; projectId: string };
  let netId: string;
  let subnetId: string;

  beforeAll(async () => {
    api = await startTestApi(dialect);
    a = await api.persona('net-a', 'net-member-a', 'member');
    b = await api.persona('net-b', 'net-member-b', 'member');
  });
  afterAll(async () => api?.close());

  const N = '/network/v2.0';

  describe('networks, subnets and ports', () => {
    it('creates a network with IPv4 and IPv6 subnets and allocates addresses in order', async () => {
      const n = await api.call('POST', `${N}/networks`, a.token, { network: { name: 'private-net' } });
      expect(n.status).toBe(201);
      netId = n.json.network.id;
      const s4 = await api.call('POST', `${N}/subnets`, a.token, {
        subnet: { name: 'v4', network_id: netId, ip_version: 4, cidr: '10.20.0.0/24' },
      });
      expect(s4.json.subnet).toMatchObject({
        gateway_ip: '10.20.0.1',
        allocation_pools: [{ start: '10.20.0.2', end: '10.20.0.254' }],
      });
      subnetId = s4.json.subnet.id;
      const s6 = await api.call('POST', `${N}/subnets`, a.token, {
        subnet: { name: 'v6', network_id: netId, ip_version: 6, cidr: 'fd00:20::/64' },
      });
      expect(s6.status).toBe(201);
      const p1 = await api.call('POST', `${N}/ports`, a.token, { port: { network_id: netId } });
      const p2 = await api.call('POST', `${N}/ports`, a.token, { port: { network_id: netId } });
      expect(p1.json.port.fixed_ips.map((f: { ip_address: string }) => f.ip_address)).toEqual([
        '10.20.0.2',
        'fd00:20::2',
      ]);
      expect(p2.json.port.fixed_ips[0].ip_address).toBe('10.20.0.3');
      expect(p1.json.port.mac_address).toMatch(/^fa:16:3e(:[0-9a-f]{2}){3}$/);
      expect(p1.json.port.port_security_enabled).toBe(true);
      expect(p1.json.port.security_groups).toHaveLength(1);
    });

    it('never hands out one address twice, even to concurrent requests', async () => {
      const results = await Promise.all(
        Array.from({ length: 8 }, () =>
          api.call('POST', `${N}/ports`, a.token, { port: { network_id: netId } }),
        ),
      );
      expect(results.every((r) => r.status === 201)).toBe(true);
      const ips = results.map((r) => r.json.port.fixed_ips[0].ip_address);
      expect(new Set(ips).size).toBe(ips.length);
    });

    it.each([
      ['host bits set', { cidr: '10.30.0.5/24', ip_version: 4 }, /did you mean 10.30.0.0\/24/],
      ['a family mismatch', { cidr: '10.30.0.0/24', ip_version: 6 }, /IPv4/],
      ['an overlap', { cidr: '10.20.0.128/25', ip_version: 4 }, /overlaps/],
      ['a gateway outside', { cidr: '10.31.0.0/24', ip_version: 4, gateway_ip: '10.99.0.1' }, /outside/],
      ['garbage', { cidr: 'ten-dot-something', ip_version: 4 }, /not a valid CIDR/],
    ])('refuses a subnet with %s', async (_n, extra, msg) => {
      const r = await api.call('POST', `${N}/subnets`, a.token, { subnet: { network_id: netId, ...extra } });
      expect(r.status).toBe(400);
      expect(r.json.NeutronError.message).toMatch(msg);
    });

    it('keeps projects apart', async () => {
      expect((await api.call('GET', `${N}/networks/${netId}`, b.token)).status).toBe(404);
      expect((await api.call('GET', `${N}/networks`, b.token)).json.networks).toEqual([]);
      expect((await api.call('POST', `${N}/ports`, b.token, { port: { network_id: netId } })).status).toBe(
        404,
      );
      expect(
        (
          await api.call('POST', `${N}/subnets`, b.token, {
            subnet: { network_id: netId, ip_version: 4, cidr: '10.40.0.0/24' },
          })
        ).status,
      ).toBe(404);
      expect(
        (await api.call('POST', `${N}/networks`, a.token, { network: { name: 'x', shared: true } })).status,
      ).toBe(403);
      expect(
        (await api.call('POST', `${N}/networks`, a.token, { network: { name: 'x', zone: 'dmz' } })).status,
      ).toBe(403);
    });

    it('refuses to delete a network or subnet still in use', async () => {
      expect((await api.call('DELETE', `${N}/subnets/${subnetId}`, a.token)).status).toBe(409);
    });
  });

  describe('security groups', () => {
    let web: string;

    it("with the option on, default also admits its own members (Neutron's rule), nothing else", async () => {
      const svc = new SecurityGroupService(
        api.store,
        { sync: async () => {} },
        { defaultAllowsSameGroup: true },
      );
      const c = await api.persona('net-c', 'net-member-c', 'member');
      const [g] = await svc.list(api.authOf(c.token), {});
      const rules = await svc.rules([g?.id ?? '']);
      expect(rules.map((r) => [r.direction, r.ethertype, r.remote_group_id, r.remote_ip_prefix])).toEqual([
        ['egress', 'IPv4', null, null],
        ['egress', 'IPv6', null, null],
        ['ingress', 'IPv4', g?.id, null],
        ['ingress', 'IPv6', g?.id, null],
      ]);
    });

    it('gives each project one default group: all egress, no ingress', async () => {
      const [l1, l2] = await Promise.all([
        api.call('GET', `${N}/security-groups`, b.token),
        api.call('GET', `${N}/security-groups`, b.token),
      ]);
      expect(l1.json.security_groups).toHaveLength(1);
      expect(l2.json.security_groups[0].id).toBe(l1.json.security_groups[0].id);
      const rules = l1.json.security_groups[0].security_group_rules;
      expect(
        rules.map((r: { direction: string; ethertype: string; remote_ip_prefix: null }) => [
          r.direction,
          r.ethertype,
          r.remote_ip_prefix,
        ]),
      ).toEqual([
        ['egress', 'IPv4', null],
        ['egress', 'IPv6', null],
      ]);
      expect(
        (await api.call('POST', `${N}/security-groups`, b.token, { security_group: { name: 'default' } }))
          .status,
      ).toBe(409);
    });

    it('creates the spec’s web-servers group with its HTTPS and SSH rules', async () => {
      const g = await api.call('POST', `${N}/security-groups`, a.token, {
        security_group: { name: 'web-servers', description: 'Inbound HTTPS from internal network' },
      });
      expect(g.status).toBe(201);
      web = g.json.security_group.id;
      const https = await api.call('POST', `${N}/security-group-rules`, a.token, {
        security_group_rule: {
          security_group_id: web,
          direction: 'ingress',
          protocol: 'tcp',
          port_range_min: 443,
          port_range_max: 443,
          remote_ip_prefix: '10.0.0.0/8',
          ethertype: 'IPv4',
        },
      });
      expect(https.status).toBe(201);
      expect(https.json.security_group_rule).toMatchObject({
        protocol: 'tcp',
        port_range_min: 443,
        remote_ip_prefix: '10.0.0.0/8',
      });
      const dup = await api.call('POST', `${N}/security-group-rules`, a.token, {
        security_group_rule: {
          security_group_id: web,
          direction: 'ingress',
          protocol: 'tcp',
          port_range_min: 443,
          port_range_max: 443,
          remote_ip_prefix: '10.0.0.0/8',
          ethertype: 'IPv4',
        },
      });
      expect(dup.status).toBe(409);
    });

    it.each([
      ['a port range on ICMP type 300', { protocol: 'icmp', port_range_min: 300 }],
      ['min above max', { protocol: 'tcp', port_range_min: 90, port_range_max: 80 }],
      ['port 0', { protocol: 'tcp', port_range_min: 0, port_range_max: 0 }],
      ['a prefix of the wrong family', { protocol: 'tcp', remote_ip_prefix: 'fd00::/8', ethertype: 'IPv4' }],
      [
        'both remote kinds',
        { remote_ip_prefix: '10.0.0.0/8', remote_group_id: '00000000-0000-0000-0000-000000000000' },
      ],
      ['an unknown protocol', { protocol: 'carrier-pigeon' }],
      ['a bad direction', { direction: 'sideways' }],
    ])('refuses a rule with %s', async (_n, extra) => {
      const r = await api.call('POST', `${N}/security-group-rules`, a.token, {
        security_group_rule: { security_group_id: web, direction: 'ingress', ...extra },
      });
      expect(r.status).toBe(400);
    });

    it('does not let a rule name another project’s group as its remote group', async () => {
      const bDefault = (await api.call('GET', `${N}/security-groups`, b.token)).json.security_groups[0].id;
      const r = await api.call('POST', `${N}/security-group-rules`, a.token, {
        security_group_rule: { security_group_id: web, direction: 'ingress', remote_group_id: bDefault },
      });
      expect(r.status).toBe(404);
      expect((await api.call('DELETE', `${N}/security-groups/${web}`, b.token)).status).toBe(404);
    });

    it('refuses to mix stateful and stateless groups on a port, and port security off with groups', async () => {
      const sl = await api.call('POST', `${N}/security-groups`, a.token, {
        security_group: { name: 'stateless', stateful: false },
      });
      const mix = await api.call('POST', `${N}/ports`, a.token, {
        port: { network_id: netId, security_groups: [web, sl.json.security_group.id] },
      });
      expect(mix.status).toBe(409);
      const p = await api.call('POST', `${N}/ports`, a.token, {
        port: { network_id: netId, security_groups: [web] },
      });
      expect(
        (
          await api.call('PUT', `${N}/ports/${p.json.port.id}`, a.token, {
            port: { port_security_enabled: false },
          })
        ).status,
      ).toBe(409);
      expect(
        (
          await api.call('PUT', `${N}/ports/${p.json.port.id}`, a.token, {
            port: { security_groups: [], port_security_enabled: false },
          })
        ).status,
      ).toBe(200);
      expect((await api.call('DELETE', `${N}/security-groups/${web}`, a.token)).status).toBe(204);
    });
  });

  describe('servers on networks', () => {
    it('creates a port per NIC, shows addresses and groups, edits groups, and cleans up on delete', async () => {
      const { flavorId, imageId } = await api.bootable(a.token, 'net');
      const grp = await api.call('POST', `${N}/security-groups`, a.token, {
        security_group: { name: 'app' },
      });
      const r = await api.call('POST', '/compute/v2.1/servers', a.token, {
        server: { name: 'netvm', imageRef: imageId, flavorRef: flavorId, networks: [{ uuid: netId }] },
      });
      expect(r.status).toBe(202);
      const id = r.json.server.id;
      await api.platform.compute.servers.settled(id);
      const s = (await api.call('GET', `/compute/v2.1/servers/${id}`, a.token)).json.server;
      expect(s.addresses['private-net'].map((x: { version: number }) => x.version)).toEqual([4, 6]);
      expect(s.security_groups).toEqual([{ name: 'default' }]);
      expect(api.driver.guests.get(id)?.spec.nics).toHaveLength(1);
      expect(
        (
          await api.call('POST', `/compute/v2.1/servers/${id}/action`, a.token, {
            addSecurityGroup: { name: 'app' },
          })
        ).status,
      ).toBe(202);
      expect(
        (
          await api.call('POST', `/compute/v2.1/servers/${id}/action`, a.token, {
            removeSecurityGroup: { name: 'default' },
          })
        ).status,
      ).toBe(202);
      expect(
        (await api.call('GET', `/compute/v2.1/servers/${id}`, a.token)).json.server.security_groups,
      ).toEqual([{ name: 'app' }]);
      const ports = (await api.call('GET', `${N}/ports?device_id=${id}`, a.token)).json.ports;
      expect(ports).toHaveLength(1);
      expect((await api.call('DELETE', `${N}/ports/${ports[0].id}`, a.token)).status).toBe(409);
      expect(
        (await api.call('DELETE', `${N}/security-groups/${grp.json.security_group.id}`, a.token)).status,
      ).toBe(409);
      expect((await api.call('DELETE', `/compute/v2.1/servers/${id}`, a.token)).status).toBe(204);
      await api.platform.compute.servers.settled(id);
      expect((await api.call('GET', `${N}/ports?device_id=${id}`, a.token)).json.ports).toEqual([]);
    });

    it('refuses a server on a network it cannot see, and leaves nothing behind', async () => {
      const before = (await api.call('GET', `${N}/ports`, b.token)).json.ports.length;
      const r = await api.call('POST', '/compute/v2.1/servers', b.token, {
        server: {
          name: 'sneaky',
          imageRef: '00000000-0000-0000-0000-000000000000',
          flavorRef: 'x',
          networks: [{ uuid: netId }],
        },
      });
      expect(r.status).toBe(400);
      expect((await api.call('GET', `${N}/ports`, b.token)).json.ports.length).toBe(before);
    });
  });
});
