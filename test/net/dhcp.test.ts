import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DhcpNetwork, DnsmasqDhcp, findDnsmasq } from '../../src/host/net/dhcp.js';
import { runNet } from '../../src/host/net/exec.js';
import { applyRuleset } from '../../src/host/net/nft.js';
import { compileRuleset, type GroupState, type PortState } from '../../src/network/compile.js';
import { loadDhcpState } from '../../src/network/dataplane-state.js';
import { normaliseRule, tapName } from '../../src/network/model.js';
import { startTestApi } from '../helpers/api.js';
import { type Guest, guestPort, hasTools, isRoot, Topology } from './topology.js';

/**
 * DHCP with a real dnsmasq on the routed "hypervisor" namespace and busybox
 * udhcpc in the guests, through the compiled nftables ruleset: a port's MAC
 * gets exactly its fixed IP, an unknown MAC gets nothing, and the process is
 * gone when its network's last DHCP subnet is.
 */

const SCRIPT = fileURLToPath(new URL('../../guests/udhcpc.script', import.meta.url));
const hasDhcpTools = () => {
  try {
    execFileSync('dnsmasq', ['--version'], { stdio: 'ignore' });
    execFileSync('busybox', ['udhcpc', '--help'], { stdio: 'ignore' });
    return true;
  } catch (err) {
    // busybox applets print help to stderr and exit 1; only a missing binary counts.
    return (err as { code?: string }).code !== 'ENOENT';
  }
};
const canRun = isRoot() && hasTools() && hasDhcpTools();
const NET = 'dddddddd-0000-4000-8000-00000000d0c1';
const OPEN: GroupState = {
  id: 'open',
  stateful: true,
  rules: [{ direction: 'egress' as const }, { direction: 'ingress' as const }].map(normaliseRule),
};

describe.skipIf(!canRun)('DHCP with dnsmasq and a real client (netns)', () => {
  let topo: Topology;
  let known: Guest;
  let stranger: Guest;
  let dir: string;
  let script: string;
  let dhcp: DnsmasqDhcp;
  let desired: DhcpNetwork[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'bwt-dhcp-'));
    // The guests' event script (not executable in the checkout): a private executable copy.
    script = join(dir, 'udhcpc.script');
    copyFileSync(SCRIPT, script);
    chmodSync(script, 0o755);
    topo = await Topology.create(['10.66.0.1']);
    // The guests start with their address removed: they must get it from DHCP.
    known = await topo.addGuest('dk', {
      ip: '10.66.0.21',
      prefixLen: 24,
      gateway: '10.66.0.1',
      mac: 'fa:16:3e:66:00:21',
    });
    stranger = await topo.addGuest('ds', {
      ip: '10.66.0.22',
      prefixLen: 24,
      gateway: '10.66.0.1',
      mac: 'fa:16:3e:66:00:22',
    });
    for (const g of [known, stranger]) await topo.exec(g.netns, 'ip', ['-4', 'addr', 'flush', 'dev', 'eth0']);
    const port = (g: Guest): PortState => guestPort(g, { groupIds: ['open'], network: NET });
    await applyRuleset(
      compileRuleset({ table: 'bulwark', ports: [port(known), port(stranger)], groups: [OPEN] }),
      {
        netns: topo.hv,
      },
    );
    dhcp = new DnsmasqDhcp({ dir, netns: topo.hv, load: async () => desired });
  });

  afterAll(async () => {
    await dhcp?.stopAll().catch(() => {});
    // Whatever happened, no dnsmasq of this test outlives it.
    for (const pid of existsSync(dir) ? findDnsmasq(dir).values() : []) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {}
    }
    await topo?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  const udhcpc = async (g: Guest): Promise<string | null> => {
    try {
      await topo.exec(
        g.netns,
        'busybox',
        ['udhcpc', '-i', 'eth0', '-n', '-q', '-t', '3', '-T', '1', '-s', script],
        15_000,
      );
    } catch {
      return null;
    }
    const out = await topo.exec(g.netns, 'ip', ['-4', '-o', 'addr', 'show', 'dev', 'eth0']);
    return /inet (\S+)/.exec(out)?.[1] ?? null;
  };

  it('gives a port exactly its fixed IP, with the gateway as router, and nothing to an unknown MAC', async () => {
    desired = [
      {
        id: NET,
        mtu: 1450,
        subnets: [{ cidr: '10.66.0.0/24', gateway: '10.66.0.1', dns: [] }],
        // The stranger's device is a tap of this network, but its MAC is no port's.
        hosts: [{ mac: known.mac, ip: known.ip }],
        devices: [known.device, stranger.device],
      },
    ];
    await dhcp.sync('test');
    expect([...dhcp.running().keys()]).toEqual([NET]);
    expect(await udhcpc(known)).toBe('10.66.0.21/24');
    const route = await topo.exec(known.netns, 'ip', ['-4', 'route', 'show', 'default']);
    expect(route).toContain('via 10.66.0.1');
    expect(await topo.ping('dk', '10.66.0.1')).toBe(true);
    expect(await udhcpc(stranger)).toBeNull();
    // Files: the state directory is the unprivileged user's and private; the config is root's.
    const st = statSync(join(dir, NET));
    expect(st.mode & 0o777).toBe(0o700);
    expect(st.uid).not.toBe(0);
    expect(statSync(join(dir, `${NET}.conf`)).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, NET, 'hosts')).mode & 0o777).toBe(0o600);
    const conf = readFileSync(join(dir, `${NET}.conf`), 'utf8');
    expect(conf).toMatch(/^port=0$/m);
    expect(conf).toMatch(/^user=dnsmasq$/m);
    // dnsmasq runs as that user, not root.
    const pid = dhcp.running().get(NET) as number;
    expect(readFileSync(`/proc/${pid}/status`, 'utf8')).not.toMatch(/^Uid:\s+0\s/m);
  });

  it('a new port’s lease is served after a sync, without a restart', async () => {
    const before = dhcp.running().get(NET);
    desired = [
      {
        ...(desired[0] as DhcpNetwork),
        hosts: [
          { mac: known.mac, ip: known.ip },
          { mac: stranger.mac, ip: stranger.ip },
        ],
      },
    ];
    await dhcp.sync('port created');
    expect(dhcp.running().get(NET)).toBe(before);
    expect(await udhcpc(stranger)).toBe('10.66.0.22/24');
  });

  it('stops dnsmasq when the network’s last DHCP subnet goes (no orphan), and a restart reconciles', async () => {
    const pid = dhcp.running().get(NET) as number;
    // A new manager (daemon restart) adopts the running process instead of starting another.
    const again = new DnsmasqDhcp({ dir, netns: topo.hv, load: async () => desired });
    await again.sync('daemon start');
    expect(again.running().get(NET)).toBe(pid);
    desired = [];
    await again.sync('subnet deleted');
    expect(again.running().size).toBe(0);
    expect(existsSync(`/proc/${pid}`) && !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'))).toBe(
      false,
    );
    expect(existsSync(join(dir, NET))).toBe(false);
    expect(await runNet('ip', ['netns', 'list'])).toContain(topo.hv);
  });
});

describe('loadDhcpState: what the DHCP servers are told (SQLite)', () => {
  it('lists networks with an IPv4 DHCP subnet, a static lease per port, and local taps; a deleted subnet drops out', async () => {
    const api = await startTestApi('sqlite');
    try {
      const { networks, securityGroups } = api.platform.network;
      const admin = { ...api.authOf(await api.login('admin', api.adminPassword, 'admin')) };
      const n = await networks.createNetwork(admin, { name: 'dhcp-net' });
      const s4 = await networks.createSubnet(admin, {
        name: 'v4',
        networkId: n.id,
        ipVersion: 4,
        cidr: '10.67.0.0/24',
        dns: ['192.0.2.53'],
      });
      await networks.createSubnet(admin, { name: 'v6', networkId: n.id, ipVersion: 6, cidr: 'fd00:67::/64' });
      const off = await networks.createNetwork(admin, { name: 'no-dhcp' });
      await networks.createSubnet(admin, {
        name: 'x',
        networkId: off.id,
        ipVersion: 4,
        cidr: '10.68.0.0/24',
        enableDhcp: false,
      });
      const resolve = (ids: string[] | undefined) => securityGroups.resolveForPort(admin, ids);
      const vmPort = await networks.createPort(
        admin,
        { networkId: n.id, deviceId: 'vm-1', deviceOwner: 'compute:nova' },
        resolve,
      );
      const other = await networks.createPort(admin, { networkId: n.id }, resolve);
      const state = await loadDhcpState(api.store);
      expect(state).toEqual([
        {
          id: n.id,
          mtu: 1500,
          subnets: [{ cidr: '10.67.0.0/24', gateway: '10.67.0.1', dns: ['192.0.2.53'] }],
          hosts: expect.arrayContaining([
            { mac: vmPort.mac_address, ip: '10.67.0.2' },
            { mac: other.mac_address, ip: '10.67.0.3' },
          ]),
          devices: [tapName(vmPort.id)],
        },
      ]);
      // The hook runs on subnet changes too (the firewall and DHCP are told).
      expect(api.dataplane.reasons.some((r) => r.startsWith(`subnet ${s4.id} created`))).toBe(true);
      await networks.deletePort(admin, vmPort.id, { fromCompute: true });
      await networks.deletePort(admin, other.id);
      await networks.deleteSubnet(admin, s4.id);
      expect(await loadDhcpState(api.store)).toEqual([]);
    } finally {
      await api.close();
    }
  });
});
