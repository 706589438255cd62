import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import { BulwarkError } from '../../errors.js';
import { parseIp } from '../../network/addr.js';
import { HostCommandError, type NetnsOption } from './exec.js';
import { addGatewayAddresses, assertIfname, linkExists } from './links.js';

/**
 * DHCP for guests with dnsmasq: one process per network that has an IPv4
 * subnet with DHCP on, static leases only (a port's MAC gets exactly its
 * Neutron fixed IP; unknown MACs get nothing), no DNS (`port=0`).
 *
 * In the routed design a DHCP request arrives on the guest's own tap, which
 * has no subnet of its own. dnsmasq picks the `dhcp-range` from the addresses
 * of the arrival interface, so each tap of a DHCP network carries the subnet's
 * gateway with the subnet prefix and `noprefixroute`: no connected route is
 * added (the /32 routes to each tap stay in charge), but dnsmasq sees the
 * subnet and answers from the gateway address. All instances listen on the
 * VM device wildcard (`tap*`, `bind-dynamic`, new taps are picked up at once);
 * an instance ignores requests on taps of other networks because no range of
 * its own matches their address.
 *
 * Files live in `<dir>/<network id>/` (0700, owned by the unprivileged
 * dnsmasq user so it can re-read its hosts file on SIGHUP after dropping
 * root); the config is `<dir>/<network id>.conf`, root's, 0600, outside the
 * directory that user could write. Processes are found by their
 * `--conf-file` argument in /proc, so a restarted daemon adopts the running
 * ones and kills any it no longer wants.
 */

export interface DhcpSubnet {
  cidr: string;
  gateway: string | null;
  dns: string[];
}

export interface DhcpNetwork {
  id: string;
  mtu: number;
  /** IPv4 subnets with DHCP enabled. */
  subnets: DhcpSubnet[];
  /** Every port of the network with an address in one of those subnets. */
  hosts: { mac: string; ip: string }[];
  /** Host devices (taps) of the network's local ports: they get the gateway address for dnsmasq. */
  devices: string[];
}

/** Called after any change to subnets or ports (domain side: "something changed, converge"). */
export interface DhcpSync {
  sync(reason: string): Promise<void>;
}

export interface DnsmasqOptions extends NetnsOption {
  /** Directory for the per-network state (created 0711). */
  dir: string;
  /** Reads the desired state (`network/dataplane-state.ts#loadDhcpState`). */
  load: () => Promise<DhcpNetwork[]>;
  /** Unprivileged user dnsmasq drops to (Debian's package creates `dnsmasq`). */
  user?: string;
  /** Interface wildcard dnsmasq listens on: the VM device prefix. */
  devicePattern?: string;
  leaseSeconds?: number;
  binary?: string;
}

const NETWORK_ID = /^[0-9A-Za-z-]{1,64}$/;
const MAC = /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/;
const PATTERN = /^[A-Za-z0-9_-]{1,14}\*?$/;

function lookupUser(name: string): { uid: number; gid: number } {
  for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
    const f = line.split(':');
    if (f[0] === name && f[2] !== undefined && f[3] !== undefined)
      return { uid: Number(f[2]), gid: Number(f[3]) };
  }
  throw new Error(
    `DHCP: user '${name}' does not exist; install dnsmasq (it creates the user) or set another.`,
  );
}

function groupName(gid: number): string {
  for (const line of readFileSync('/etc/group', 'utf8').split('\n')) {
    const f = line.split(':');
    if (f[2] !== undefined && Number(f[2]) === gid && f[0]) return f[0];
  }
  throw new Error(`DHCP: no group with gid ${gid}.`);
}

function v4(cidr: string): { net: string; len: number; mask: string } {
  const [addr, lenText] = cidr.split('/');
  const len = Number(lenText);
  const a = parseIp(addr ?? '', 'DHCP subnet');
  if (a.version !== 4 || !Number.isInteger(len) || len < 1 || len > 30)
    throw new Error(`DHCP subnet ${cidr} is not an IPv4 CIDR with a prefix of 1-30.`);
  const m = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
  const mask = [24, 16, 8, 0].map((s) => (m >>> s) & 0xff).join('.');
  return { net: a.text, len, mask };
}

const hash = (s: string) => createHash('sha256').update(s).digest('hex');

/** Renders one network's config and hosts file; throws on anything malformed (before any change is made). */
export function renderDnsmasq(
  n: DhcpNetwork,
  o: { dir: string; user: string; group: string; pattern: string; leaseSeconds: number },
): { conf: string; hosts: string } {
  if (!NETWORK_ID.test(n.id)) throw new Error(`DHCP: network id '${n.id}' is not usable.`);
  if (!Number.isInteger(n.mtu) || n.mtu < 68 || n.mtu > 65535)
    throw new Error(`DHCP: MTU ${n.mtu} is not valid.`);
  const lines = [
    '# Written by Bulwark (host/net/dhcp.ts); replaced on every change.',
    'port=0',
    'no-resolv',
    'no-hosts',
    'bind-dynamic',
    `interface=${o.pattern}`,
    'except-interface=lo',
    `user=${o.user}`,
    `group=${o.group}`,
    `pid-file=${join(o.dir, 'pid')}`,
    `dhcp-leasefile=${join(o.dir, 'leases')}`,
    `dhcp-hostsfile=${join(o.dir, 'hosts')}`,
    `log-facility=${join(o.dir, 'log')}`,
    // Static leases only: nobody without a Neutron port on this network gets an address.
    'dhcp-ignore=tag:!known',
    'dhcp-authoritative',
    `dhcp-option=option:mtu,${n.mtu}`,
  ];
  n.subnets.forEach((s, i) => {
    const { net, mask } = v4(s.cidr);
    lines.push(`dhcp-range=set:s${i},${net},static,${mask},${o.leaseSeconds}s`);
    if (s.gateway !== null) {
      const g = parseIp(s.gateway, 'DHCP gateway');
      if (g.version !== 4) throw new Error(`DHCP: gateway ${s.gateway} is not IPv4.`);
      lines.push(`dhcp-option=tag:s${i},option:router,${g.text}`);
    } else lines.push(`dhcp-option=tag:s${i},option:router`);
    const dns = s.dns.map((d) => parseIp(d, 'DNS server')).filter((d) => d.version === 4);
    if (dns.length) lines.push(`dhcp-option=tag:s${i},option:dns-server,${dns.map((d) => d.text).join(',')}`);
  });
  const hosts = n.hosts.map((h) => {
    const mac = h.mac.toLowerCase();
    if (!MAC.test(mac)) throw new Error(`DHCP: MAC ${h.mac} is not valid.`);
    const ip = parseIp(h.ip, 'DHCP host address');
    if (ip.version !== 4) throw new Error(`DHCP: host address ${h.ip} is not IPv4.`);
    return `${mac},${ip.text}`;
  });
  return { conf: `${lines.join('\n')}\n`, hosts: `${[...new Set(hosts)].sort().join('\n')}\n` };
}

/** Live dnsmasq processes started from configs under `dir`, by network id. */
export function findDnsmasq(dir: string): Map<string, number> {
  const prefix = `--conf-file=${resolve(dir)}/`;
  const out = new Map<string, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (/\) Z /.test(readFileSync(`/proc/${entry}/stat`, 'utf8'))) continue; // exited, not yet reaped
    } catch {
      continue;
    }
    if (!argv[0]?.endsWith('dnsmasq')) continue;
    const conf = argv.find((a) => a.startsWith(prefix));
    const m = /^([0-9A-Za-z-]{1,64})\.conf$/.exec(conf?.slice(prefix.length) ?? '');
    if (m?.[1]) out.set(m[1], Number(entry));
  }
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function alive(pid: number): boolean {
  try {
    return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

async function stopPid(pid: number): Promise<void> {
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  for (let i = 0; i < 50 && alive(pid); i++) await sleep(50);
  if (alive(pid)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {}
    for (let i = 0; i < 40 && alive(pid); i++) await sleep(50);
  }
}

export class DnsmasqDhcp implements DhcpSync {
  private readonly dir: string;
  private readonly children = new Set<ChildProcess>();
  private queue: Promise<void> = Promise.resolve();

  constructor(private readonly opts: DnsmasqOptions) {
    this.dir = resolve(opts.dir);
    if (opts.devicePattern !== undefined && !PATTERN.test(opts.devicePattern))
      throw new Error(`DHCP device pattern '${opts.devicePattern}' is not valid.`);
  }

  /** Converges on the desired state; calls are serialised. Failures are 503s that say what is saved. */
  sync(reason: string): Promise<void> {
    const run = this.queue.then(async () => {
      try {
        await this.apply(await this.opts.load());
      } catch (err) {
        const msg = (err instanceof Error ? err.message : String(err)).split('\n')[0];
        throw new BulwarkError(
          'Unavailable',
          `The change (${reason}) is saved, but the DHCP servers could not be updated: ${msg}. ` +
            'The next change or a daemon restart retries.',
          { cause: err },
        );
      }
    });
    this.queue = run.catch(() => {});
    return run;
  }

  /** Networks with a running dnsmasq (for tests and status). */
  running(): Map<string, number> {
    return existsSync(this.dir) ? findDnsmasq(this.dir) : new Map();
  }

  /** Stops every instance (daemon shutdown; the next start brings them back). */
  async stopAll(): Promise<void> {
    await this.queue;
    for (const pid of this.running().values()) await stopPid(pid);
  }

  private async apply(want: DhcpNetwork[]): Promise<void> {
    const user = this.opts.user ?? 'dnsmasq';
    const { uid, gid } = lookupUser(user);
    const pattern = this.opts.devicePattern ?? 'tap*';
    // Render everything first: malformed state changes nothing.
    const rendered = want.map((n) => ({
      n,
      dir: join(this.dir, n.id),
      ...renderDnsmasq(n, {
        dir: join(this.dir, n.id),
        user,
        group: groupName(gid),
        pattern,
        leaseSeconds: this.opts.leaseSeconds ?? 86_400,
      }),
    }));
    mkdirSync(this.dir, { recursive: true, mode: 0o711 });
    chmodSync(this.dir, 0o711);
    const running = findDnsmasq(this.dir);
    const wanted = new Set(want.map((n) => n.id));

    // Stale first: networks that lost their last DHCP subnet (or vanished).
    for (const [id, pid] of running) if (!wanted.has(id)) await stopPid(pid);
    for (const entry of readdirSync(this.dir)) {
      const id = entry.replace(/\.conf$/, '');
      if (!wanted.has(id) && NETWORK_ID.test(id))
        rmSync(join(this.dir, entry), { recursive: true, force: true });
    }

    for (const r of rendered) {
      await this.addressTaps(r.n);
      mkdirSync(r.dir, { recursive: true, mode: 0o700 });
      chownSync(r.dir, uid, gid);
      chmodSync(r.dir, 0o700);
      // The config stays root's, outside the directory dnsmasq's user owns (else that user could rewrite it).
      const confPath = join(this.dir, `${r.n.id}.conf`);
      const hostsPath = join(r.dir, 'hosts');
      const oldConf = existsSync(confPath) ? readFileSync(confPath, 'utf8') : '';
      const oldHosts = existsSync(hostsPath) ? readFileSync(hostsPath, 'utf8') : '';
      writeFileSync(hostsPath, r.hosts, { mode: 0o600 });
      chownSync(hostsPath, uid, gid);
      chmodSync(hostsPath, 0o600);
      writeFileSync(confPath, r.conf, { mode: 0o600 });
      chmodSync(confPath, 0o600);
      const pid = running.get(r.n.id);
      if (pid !== undefined && hash(oldConf) === hash(r.conf)) {
        if (oldHosts !== r.hosts) process.kill(pid, 'SIGHUP'); // re-reads dhcp-hostsfile
        continue;
      }
      if (pid !== undefined) await stopPid(pid);
      await this.start(r.n.id, confPath, join(r.dir, 'log'));
    }
  }

  /** Gives each tap of the network the subnets' gateways with their prefix, without a prefix route. */
  private async addressTaps(n: DhcpNetwork): Promise<void> {
    const o = { netns: this.opts.netns };
    for (const dev of n.devices) {
      assertIfname(dev);
      if (!(await linkExists(dev, o))) continue; // not plugged (yet): the next sync after plugging adds it
      await addGatewayAddresses(
        dev,
        n.subnets.flatMap((s) => (s.gateway === null ? [] : [`${s.gateway}/${v4(s.cidr).len}`])),
        o,
      );
    }
  }

  private async start(id: string, confPath: string, logPath: string): Promise<void> {
    const bin = this.opts.binary ?? 'dnsmasq';
    const argv = [bin, '--keep-in-foreground', `--conf-file=${confPath}`];
    const full = this.opts.netns ? ['ip', 'netns', 'exec', this.opts.netns, ...argv] : argv;
    const [file, ...args] = full as [string, ...string[]];
    const child = spawn(file, args, { stdio: 'ignore', detached: true });
    this.children.add(child);
    let exited: number | null | undefined;
    let spawnError: Error | undefined;
    child.on('exit', (code) => {
      exited = code;
      this.children.delete(child);
    });
    child.on('error', (e) => {
      spawnError = e;
    });
    child.unref();
    for (let i = 0; i < 60; i++) {
      if (spawnError) throw new HostCommandError(full.join(' '), null, spawnError.message);
      if (exited !== undefined) {
        const log = existsSync(logPath)
          ? readFileSync(logPath, 'utf8').trim().split('\n').slice(-3).join(' | ')
          : '';
        throw new HostCommandError(
          full.join(' '),
          exited,
          `dnsmasq for network ${id} exited at start: ${log}`,
        );
      }
      if (findDnsmasq(this.dir).has(id) && existsSync(join(this.dir, id, 'pid'))) return;
      await sleep(50);
    }
    throw new HostCommandError(full.join(' '), null, `dnsmasq for network ${id} did not start within 3 s`);
  }
}

/** Whether a dnsmasq binary is installed (the daemon runs DHCP only then). */
export function dnsmasqAvailable(binary = 'dnsmasq'): boolean {
  if (binary.includes('/')) return existsSync(binary);
  return (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin')
    .split(':')
    .concat(['/usr/sbin', '/sbin'])
    .some((d) => d !== '' && existsSync(join(d, binary)));
}
