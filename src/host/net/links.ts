import { parseIp } from '../../network/addr.js';
import { HostCommandError, type NetnsOption, runNet } from './exec.js';

/**
 * Host links for routed VM ports (docs/network.md): one tap per VM port, no
 * shared bridge. The host is every guest's router: it answers ARP for the
 * whole subnet (proxy ARP), holds the gateway addresses on a dummy device,
 * and routes each guest address as a /32 or /128 to the guest's tap.
 */

const IFNAME = /^[A-Za-z0-9_-]{1,15}$/;

/** Linux interface names are at most 15 bytes (IFNAMSIZ - 1); we also keep them shell- and nft-safe. */
export function assertIfname(name: string): void {
  if (!IFNAME.test(name))
    throw new Error(`'${name}' is not a valid interface name (≤ 15 of A-Z a-z 0-9 _ -).`);
}

const ip = (args: string[], opts: NetnsOption) => runNet('ip', args, { netns: opts.netns });
const sysctl = (settings: Record<string, string | number>, opts: NetnsOption) =>
  runNet('sysctl', ['-q', '-w', ...Object.entries(settings).map(([k, v]) => `${k}=${v}`)], {
    netns: opts.netns,
  });

const isMissing = (err: unknown) =>
  err instanceof HostCommandError &&
  /Cannot find device|No such device|does not exist|No such process/i.test(err.stderr);

export async function linkExists(name: string, opts: NetnsOption = {}): Promise<boolean> {
  assertIfname(name);
  try {
    await ip(['link', 'show', 'dev', name], opts);
    return true;
  } catch (err) {
    if (isMissing(err)) return false;
    throw err;
  }
}

/** Names of links starting with `prefix` (to find orphans after a restart). */
export async function listLinks(prefix: string, opts: NetnsOption = {}): Promise<string[]> {
  const out = await ip(['-o', 'link', 'show'], opts);
  const names: string[] = [];
  for (const line of out.split('\n')) {
    const m = /^\d+:\s+([^:@\s]+)[@:]/.exec(line);
    if (m?.[1]?.startsWith(prefix)) names.push(m[1]);
  }
  return names;
}

export interface TapOptions extends NetnsOption {
  /** Owner uid: the VM's own QEMU user, so QEMU opens the tap without privileges. */
  uid: number;
  gid?: number;
  /** virtio-net offload header (QEMU `vnet_hdr=on`). */
  vnetHdr?: boolean;
  multiQueue?: boolean;
  mtu?: number;
}

/** Creates a persistent tap owned by the VM's user (`ip tuntap add ... user UID`), admin-up. */
export async function createTap(name: string, o: TapOptions): Promise<void> {
  assertIfname(name);
  if (!Number.isInteger(o.uid) || o.uid < 0) throw new Error(`Tap owner uid ${o.uid} is not valid.`);
  const args = ['tuntap', 'add', 'dev', name, 'mode', 'tap', 'user', String(o.uid)];
  if (o.gid !== undefined) args.push('group', String(o.gid));
  if (o.vnetHdr) args.push('vnet_hdr');
  if (o.multiQueue) args.push('multi_queue');
  await ip(args, o);
  try {
    if (o.mtu !== undefined) await ip(['link', 'set', 'dev', name, 'mtu', String(o.mtu)], o);
    await ip(['link', 'set', 'dev', name, 'up'], o);
  } catch (err) {
    await deleteLink(name, o).catch(() => {});
    throw err;
  }
}

/** Deletes a link (its routes go with it); false when it did not exist. */
export async function deleteLink(name: string, opts: NetnsOption = {}): Promise<boolean> {
  assertIfname(name);
  try {
    await ip(['link', 'del', 'dev', name], opts);
    return true;
  } catch (err) {
    if (isMissing(err)) return false;
    throw err;
  }
}

export interface RouterOptions extends NetnsOption {
  /** Dummy device that holds the gateway addresses. */
  device?: string;
}

export const GATEWAY_DEVICE = 'bwgw0';

/**
 * Makes the host (or namespace) the guests' router: forwarding on, and the
 * subnets' gateway addresses as host routes on a dummy device, so a guest's
 * ARP for its gateway gets the host's answer on the guest's own tap. Kernels
 * without the dummy driver get the addresses on `lo` instead, which answers
 * the same way. Returns the device that holds them.
 */
export async function prepareRouter(gateways: readonly string[], o: RouterOptions = {}): Promise<string> {
  let dev = o.device ?? GATEWAY_DEVICE;
  assertIfname(dev);
  await sysctl({ 'net.ipv4.ip_forward': 1, 'net.ipv6.conf.all.forwarding': 1 }, o);
  if (!(await linkExists(dev, o))) {
    try {
      await ip(['link', 'add', 'dev', dev, 'type', 'dummy'], o);
    } catch (err) {
      if (!(err instanceof HostCommandError && /Unknown device type/i.test(err.stderr))) throw err;
      dev = 'lo';
    }
  }
  await ip(['link', 'set', 'dev', dev, 'up'], o);
  for (const g of gateways) {
    const a = parseIp(g, 'Gateway');
    await ip(
      [
        'addr',
        'replace',
        `${a.text}/${a.version === 4 ? 32 : 128}`,
        'dev',
        dev,
        ...(a.version === 6 ? ['nodad'] : []),
      ],
      o,
    );
  }
  return dev;
}

/**
 * `prepareRouter`, then removes gateway addresses of subnets that no longer
 * exist, so a deleted subnet's gateway stops answering. Only for Bulwark's own
 * dummy device: on `lo` the host's own addresses live too.
 */
export async function setGateways(gateways: readonly string[], o: RouterOptions = {}): Promise<void> {
  const dev = await prepareRouter(gateways, o);
  if (dev === 'lo') return;
  const wanted = new Set(gateways.map((g) => parseIp(g, 'Gateway').text));
  const listing = JSON.parse(await ip(['-j', 'addr', 'show', 'dev', dev], o)) as {
    addr_info?: { local?: string; prefixlen?: number; scope?: string }[];
  }[];
  for (const a of listing[0]?.addr_info ?? []) {
    if (!a.local || a.scope === 'link' || wanted.has(a.local)) continue;
    await ip(['addr', 'del', `${a.local}/${a.prefixlen}`, 'dev', dev], o);
  }
}

/** IPv6 router address every routed tap carries; guests use it as their default gateway. */
export const IPV6_LINK_GATEWAY = 'fe80::1';

export interface PlugOptions extends NetnsOption {
  device: string;
  /** The port's fixed IPs; each becomes a host route to `device`. */
  ips: readonly string[];
  /** IPv4 subnet gateways as `GW/LEN`, put on the tap without a prefix route (see addGatewayAddresses). */
  gateways?: readonly string[];
}

/**
 * Gives a tap its subnets' gateways with their prefix length and no prefix
 * route: the /32 routes stay in charge, but the DHCP server (dnsmasq) sees
 * which subnet a request on this tap belongs to and answers from the gateway.
 */
export async function addGatewayAddresses(
  device: string,
  gateways: readonly string[],
  o: NetnsOption = {},
): Promise<void> {
  assertIfname(device);
  for (const g of gateways) {
    const [addr, len] = g.split('/');
    const a = parseIp(addr ?? '', 'Gateway');
    if (a.version !== 4 || !/^\d+$/.test(len ?? '') || Number(len) > 32)
      throw new Error(`Gateway ${g} is not an IPv4 GW/LEN.`);
    await ip(['addr', 'replace', `${a.text}/${len}`, 'dev', device, 'noprefixroute'], o);
  }
}

/**
 * Attaches a port's device to the routed fabric: proxy ARP without delay,
 * strict reverse-path filtering, no redirects or router advertisements
 * accepted from the guest, a link-local gateway for IPv6, and one host route
 * per fixed IP. Idempotent.
 */
export async function plugPort(o: PlugOptions): Promise<void> {
  assertIfname(o.device);
  const d = o.device;
  const addrs = o.ips.map((x) => parseIp(x, 'Port IP'));
  await sysctl(
    {
      [`net.ipv4.conf.${d}.proxy_arp`]: 1,
      // Proxy ARP answers are delayed up to 0.8 s by default (proxy_delay); guests should not wait.
      [`net.ipv4.neigh.${d}.proxy_delay`]: 0,
      [`net.ipv4.conf.${d}.rp_filter`]: 1,
      [`net.ipv4.conf.${d}.send_redirects`]: 0,
      [`net.ipv4.conf.${d}.accept_redirects`]: 0,
      [`net.ipv6.conf.${d}.accept_ra`]: 0,
      [`net.ipv6.conf.${d}.accept_redirects`]: 0,
      [`net.ipv6.conf.${d}.forwarding`]: 1,
    },
    o,
  );
  await ip(['link', 'set', 'dev', d, 'up'], o);
  await addGatewayAddresses(d, o.gateways ?? [], o);
  if (addrs.some((a) => a.version === 6))
    await ip(['addr', 'replace', `${IPV6_LINK_GATEWAY}/64`, 'dev', d, 'scope', 'link', 'nodad'], o);
  for (const a of addrs)
    await ip(
      [
        ...(a.version === 6 ? ['-6'] : []),
        'route',
        'replace',
        `${a.text}/${a.version === 4 ? 32 : 128}`,
        'dev',
        d,
      ],
      o,
    );
}

/** Removes a port's host routes (deleting the device removes them too). */
export async function unplugPort(o: PlugOptions): Promise<void> {
  assertIfname(o.device);
  for (const x of o.ips) {
    const a = parseIp(x, 'Port IP');
    try {
      await ip(
        [
          ...(a.version === 6 ? ['-6'] : []),
          'route',
          'del',
          `${a.text}/${a.version === 4 ? 32 : 128}`,
          'dev',
          o.device,
        ],
        o,
      );
    } catch (err) {
      if (!(err instanceof HostCommandError)) throw err;
    }
  }
}
