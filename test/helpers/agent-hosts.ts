import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type DaemonProcess,
  ensureNetns,
  REPO,
  removeNetns,
  startDaemonProcess,
  stopDaemon,
} from './daemon-process.js';
import { waitFor } from './guests.js';
import { type TestDb, testDb } from './store.js';

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });

export interface TestHost {
  name: string;
  /** The host's network namespace: its taps, nftables and guests' network. */
  ns: string;
  addr: string;
}

export interface AgentTopology {
  d: DaemonProcess;
  hosts: TestHost[];
  /** The control plane's agent endpoint (mutual TLS). */
  agentUrl: string;
  /** Starts `bulwark agent` in `ns` with its data dir `dir` (made if absent) and extra flags. */
  startAgent(
    ns: string,
    extra: string[],
    dir?: string,
  ): { child: ChildProcess; dir: string; output(): string };
  /** Joins every host with a one-time token from the real CLI; resolves once each reports and is attached. */
  joinAll(): Promise<void>;
  agents: Map<string, ChildProcess>;
  dirOf: Map<string, string>;
  close(): Promise<void>;
}

/** Takes the control plane's own host out of scheduling, so only the agents' hosts take guests. */
export async function agentHostsOnly(d: DaemonProcess): Promise<void> {
  const local = (
    JSON.parse((await d.bulwark(['host', 'list', '-f', 'json'])).stdout) as { name: string; local: boolean }[]
  ).find((h) => h.local);
  if (!local) throw new Error('the control plane lists no local host');
  const r = await d.bulwark(['host', 'disable', local.name]);
  if (r.code !== 0) throw new Error(`host disable ${local.name}: ${r.stderr}`);
}

/**
 * A PostgreSQL database URL a daemon in its own netns can reach: the test
 * cluster's unix socket (test/setup/postgres.ts puts it in its temp dir),
 * since its 127.0.0.1 is in the root namespace.
 */
function viaSocket(url: string): string {
  const u = new URL(url);
  const sock = `.s.PGSQL.${u.port}`;
  const dir = readdirSync(tmpdir())
    .filter((e) => e.startsWith('bulwark-pg-'))
    .map((e) => join(tmpdir(), e))
    .find((d) => readdirSync(d).includes(sock));
  if (!dir) throw new Error(`no PostgreSQL socket ${sock} under ${tmpdir()}`);
  return `postgres://${u.username}@${u.pathname}?host=${encodeURIComponent(dir)}&port=${u.port}`.replace(
    '@/',
    '@localhost/',
  );
}

/**
 * A control plane (`bulwark serve`, in its own netns, with a bridge) and
 * `count` test hypervisor hosts, each its own netns on that bridge running
 * the real `bulwark agent`. Names are unique per run; `close()` (call it in
 * afterAll, also after a failed start) removes every namespace, dir and
 * database it made.
 */
export async function startAgentTopology(opts: {
  prefix: string;
  subnet: string;
  count?: number;
  postgres?: boolean;
}): Promise<AgentTopology> {
  const tag = randomBytes(3).toString('hex');
  const cp = `${opts.prefix}-cp-${tag}`;
  const hosts = Array.from({ length: opts.count ?? 3 }, (_, i) => ({
    name: `hv-${i + 1}`,
    ns: `${opts.prefix}-h${i + 1}-${tag}`,
    addr: `${opts.subnet}.${11 + i}`,
  }));
  const dirs: string[] = [];
  const agents = new Map<string, ChildProcess>();
  const dirOf = new Map<string, string>();
  let db: TestDb | undefined;
  let d: DaemonProcess | undefined;
  const close = async () => {
    // Servers first, while their agents can still remove their guests; then the agents.
    await stopDaemon(d).catch(() => undefined);
    for (const a of agents.values()) a.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 1000));
    for (const a of agents.values()) a.kill('SIGKILL');
    for (const h of hosts) await removeNetns(h.ns);
    await removeNetns(cp);
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    await db?.drop().catch(() => undefined);
  };
  try {
    await ensureNetns(cp);
    ip('-n', cp, 'link', 'add', 'br0', 'type', 'bridge');
    ip('-n', cp, 'addr', 'add', `${opts.subnet}.1/24`, 'dev', 'br0');
    ip('-n', cp, 'link', 'set', 'br0', 'up');
    for (const [i, h] of hosts.entries()) {
      await ensureNetns(h.ns);
      ip('-n', cp, 'link', 'add', `v${i}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', h.ns);
      ip('-n', cp, 'link', 'set', `v${i}`, 'master', 'br0', 'up');
      ip('-n', h.ns, 'addr', 'add', `${h.addr}/24`, 'dev', 'eth0');
      ip('-n', h.ns, 'link', 'set', 'eth0', 'up');
    }
    const pg = opts.postgres ? await testDb('postgres') : undefined;
    db = pg;
    d = await startDaemonProcess({
      netns: cp,
      extraArgs: [
        '--listen',
        `${opts.subnet}.1:0`,
        '--agent-listen',
        `${opts.subnet}.1:0`,
        '--heartbeat-interval',
        '1',
        ...(pg ? ['--database-url', viaSocket(pg.url), '--database-admin-url', viaSocket(pg.adminUrl!)] : []),
      ],
    });
  } catch (err) {
    await close();
    throw err;
  }
  const daemon = d;
  // The daemon's and agents' output after start-up, for a failing run's post-mortem.
  const logFile = join(tmpdir(), `${cp}.log`);
  const tee = (who: string) => (b: Buffer) => appendFileSync(logFile, `[${who}] ${b.toString()}`);
  daemon.child.stdout?.on('data', tee('cp'));
  daemon.child.stderr?.on('data', tee('cp'));
  const agentUrl = await waitFor(
    'agent endpoint line',
    async () => /agent endpoint \(mutual TLS\): (\S+)/.exec(daemon.output)?.[1],
  );
  const startAgent: AgentTopology['startAgent'] = (ns, extra, given) => {
    const dir = given ?? mkdtempSync(join(tmpdir(), 'bulwark-agent-'));
    if (!given) dirs.push(dir);
    const child = spawn(
      'nsenter',
      [
        `--net=/run/netns/${ns}`,
        '--',
        process.execPath,
        join(REPO, 'bin', 'bulwark.js'),
        'agent',
        '--data-dir',
        dir,
        '--control-plane',
        daemon.url,
        '--endpoint',
        agentUrl,
        '--interval',
        '1',
        ...extra,
      ],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, BULWARK_PROBE_KERNEL: join(REPO, 'guests', 'out', 'vmlinuz') },
      },
    );
    let out = '';
    child.stdout?.on('data', tee(ns));
    child.stderr?.on('data', tee(ns));
    child.stdout?.on('data', (b: Buffer) => {
      out += b.toString();
    });
    child.stderr?.on('data', (b: Buffer) => {
      out += b.toString();
    });
    return { child, dir, output: () => out };
  };
  const joinAll = async () => {
    for (const h of hosts) {
      const t = await daemon.bulwark(['host', 'join-token', 'create', '--host', h.name, '-f', 'json']);
      if (t.code !== 0) throw new Error(t.stderr);
      const { token, ca_hash } = JSON.parse(t.stdout) as { token: string; ca_hash: string };
      const a = startAgent(h.ns, ['--token', token, '--ca-hash', ca_hash]);
      agents.set(h.name, a.child);
      dirOf.set(h.name, a.dir);
      await waitFor(
        `${h.name} attached`,
        async () => /attached: the control plane drives/.test(a.output()),
        60_000,
      );
    }
  };
  return { d: daemon, hosts, agentUrl, startAgent, joinAll, agents, dirOf, close };
}
