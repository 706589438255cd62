import { type ChildProcessWithoutNullStreams, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { runNet } from '../../src/host/net/exec.js';
import { plugPort, prepareRouter } from '../../src/host/net/links.js';
import type { PortState } from '../../src/network/compile.js';
import { tapName } from '../../src/network/model.js';

/**
 * A throw-away routed "hypervisor" for dataplane tests: a network namespace
 * HV plays the host, and each guest is its own namespace joined to HV by a
 * veth pair whose HV end is named and configured exactly like a VM's tap.
 * Nothing touches the machine's own namespaces: every address lives inside
 * these namespaces, which are deleted afterwards (also on a crash, via exit hook).
 */

const AGENT = fileURLToPath(new URL('./agent.mjs', import.meta.url));

export const isRoot = () => process.getuid?.() === 0;

export function hasTools(): boolean {
  try {
    execFileSync('nft', ['--version'], { stdio: 'ignore' });
    execFileSync('ip', ['-V'], { stdio: 'ignore' });
    execFileSync('ping', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** One JSON-lines RPC channel to agent.mjs inside a guest namespace. */
export class Agent {
  private next = 1;
  private readonly waiting = new Map<number, (v: Record<string, unknown>) => void>();
  private buffer = '';
  private readonly ready: Promise<void>;

  constructor(private readonly child: ChildProcessWithoutNullStreams) {
    let markReady: () => void = () => {};
    this.ready = new Promise((r) => {
      markReady = r;
    });
    child.stdout.on('data', (b: Buffer) => {
      this.buffer += b.toString();
      let nl = this.buffer.indexOf('\n');
      while (nl !== -1) {
        const line = this.buffer.slice(0, nl);
        this.buffer = this.buffer.slice(nl + 1);
        const msg = JSON.parse(line) as Record<string, unknown>;
        if (msg.ready) markReady();
        else if (typeof msg.id === 'number') {
          this.waiting.get(msg.id)?.(msg);
          this.waiting.delete(msg.id);
        }
        nl = this.buffer.indexOf('\n');
      }
    });
  }

  static async start(netns: string): Promise<Agent> {
    const child = spawn('ip', ['netns', 'exec', netns, process.execPath, AGENT], { stdio: 'pipe' });
    const a = new Agent(child);
    await Promise.race([
      a.ready,
      new Promise((_, reject) =>
        setTimeout(() => reject(new Error(`agent in ${netns} did not start`)), 10_000),
      ),
    ]);
    return a;
  }

  async call(op: string, args: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    const id = this.next++;
    const p = new Promise<Record<string, unknown>>((resolve) => this.waiting.set(id, resolve));
    this.child.stdin.write(`${JSON.stringify({ id, op, ...args })}\n`);
    const res = await p;
    if (typeof res.error === 'string') throw new Error(`agent ${op}: ${res.error}`);
    return res;
  }

  stop(): void {
    this.child.stdin.end();
    this.child.kill();
  }
}

export interface GuestSpec {
  ip: string;
  prefixLen: number;
  gateway: string;
  mac: string;
  ip6?: string;
}

export interface Guest extends GuestSpec {
  label: string;
  netns: string;
  portId: string;
  device: string;
  agent: Agent;
}

/** The compiler's view of a guest's port: its own MAC and IPv4, port security on, then `over`. */
export const guestPort = (g: Guest, over: Partial<PortState> = {}): PortState => ({
  id: g.portId,
  device: g.device,
  mac: g.mac,
  ips: [g.ip],
  allowedAddressPairs: [],
  portSecurity: true,
  groupIds: [],
  ...over,
});

const live = new Set<Topology>();
process.on('exit', () => {
  for (const t of live) t.destroySync();
});

export class Topology {
  readonly suffix = randomBytes(3).toString('hex');
  readonly hv = `bwt-hv-${this.suffix}`;
  readonly guests = new Map<string, Guest>();
  private readonly namespaces: string[] = [];

  static async create(gateways: string[]): Promise<Topology> {
    const t = new Topology();
    live.add(t);
    try {
      await t.addNetns(t.hv);
      await prepareRouter(gateways, { netns: t.hv });
      return t;
    } catch (err) {
      await t.destroy();
      throw err;
    }
  }

  private async addNetns(name: string) {
    // `ip netns exec` bind-mounts /etc/netns/NAME/resolv.conf over /etc/resolv.conf: a DHCP client
    // script run inside then writes this private copy, never the host's resolver config.
    mkdirSync(`/etc/netns/${name}`, { recursive: true });
    writeFileSync(`/etc/netns/${name}/resolv.conf`, '');
    await runNet('ip', ['netns', 'add', name]);
    this.namespaces.push(name);
    await runNet('ip', ['link', 'set', 'lo', 'up'], { netns: name });
  }

  /** Runs a command inside a namespace of this topology. */
  exec(netns: string, cmd: string, args: string[], timeoutMs = 15_000): Promise<string> {
    return runNet(cmd, args, { netns, timeoutMs });
  }

  guest(label: string): Guest {
    const g = this.guests.get(label);
    if (!g) throw new Error(`no guest ${label}`);
    return g;
  }

  async addGuest(label: string, spec: GuestSpec): Promise<Guest> {
    const netns = `bwt-${label}-${this.suffix}`;
    const portId = randomBytes(16).toString('hex');
    const device = tapName(portId);
    await this.addNetns(netns);
    const inG = (args: string[]) => this.exec(netns, 'ip', args);
    await this.exec(this.hv, 'ip', [
      'link',
      'add',
      device,
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      netns,
    ]);
    await inG(['link', 'set', 'eth0', 'address', spec.mac]);
    await inG(['link', 'set', 'eth0', 'up']);
    await inG(['addr', 'add', `${spec.ip}/${spec.prefixLen}`, 'dev', 'eth0']);
    await inG(['route', 'add', 'default', 'via', spec.gateway, 'dev', 'eth0']);
    if (spec.ip6) {
      // Routed IPv6: a /128 and the host's link-local router address as gateway (docs/network.md).
      await inG(['-6', 'addr', 'add', `${spec.ip6}/128`, 'dev', 'eth0', 'nodad']);
      await inG(['-6', 'route', 'add', 'default', 'via', 'fe80::1', 'dev', 'eth0']);
    }
    await plugPort({ netns: this.hv, device, ips: [spec.ip, ...(spec.ip6 ? [spec.ip6] : [])] });
    const agent = await Agent.start(netns);
    const g: Guest = { ...spec, label, netns, portId, device, agent };
    this.guests.set(label, g);
    return g;
  }

  /** ping from a guest: true when every echo came back. */
  async ping(from: string, to: string, opts: { count?: number; waitS?: number } = {}): Promise<boolean> {
    try {
      await this.exec(this.guest(from).netns, 'ping', [
        '-n',
        '-q',
        '-c',
        String(opts.count ?? 1),
        '-W',
        String(opts.waitS ?? 1),
        to,
      ]);
      return true;
    } catch {
      return false;
    }
  }

  async destroy(): Promise<void> {
    for (const g of this.guests.values()) g.agent.stop();
    for (const ns of this.namespaces.reverse()) {
      await runNet('ip', ['netns', 'del', ns]).catch(() => {});
      rmSync(`/etc/netns/${ns}`, { recursive: true, force: true });
    }
    this.namespaces.length = 0;
    live.delete(this);
  }

  destroySync(): void {
    for (const g of this.guests.values()) g.agent.stop();
    for (const ns of this.namespaces) {
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
      } catch {}
      rmSync(`/etc/netns/${ns}`, { recursive: true, force: true });
    }
    this.namespaces.length = 0;
  }
}
