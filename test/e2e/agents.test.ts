/**
 * Three host agents, each the real `bulwark agent` in its own network
 * namespace (a test "hypervisor host"), joined to a real `bulwark serve` over
 * a bridge in the daemon's namespace: join tokens from the real CLI, reports
 * over mutual TLS, a host marked down when its agent stops.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type DaemonProcess,
  ensureNetns,
  REPO,
  removeNetns,
  startDaemonProcess,
  stopDaemon,
} from '../helpers/daemon-process.js';
import { waitFor } from '../helpers/guests.js';

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });

describe.runIf(process.getuid?.() === 0)('bulwark agent on three netns hosts', { timeout: 240_000 }, () => {
  const tag = randomBytes(3).toString('hex');
  const cp = `bwmh-cp-${tag}`;
  const hosts = [1, 2, 3].map((i) => ({
    name: `hv-${i}`,
    ns: `bwmh-h${i}-${tag}`,
    addr: `10.62.0.${10 + i}`,
  }));
  const dirs: string[] = [];
  const agents = new Map<string, ChildProcess>();
  let d: DaemonProcess | undefined;
  let agentUrl = '';
  let apiUrl = '';

  beforeAll(async () => {
    await ensureNetns(cp);
    ip('-n', cp, 'link', 'add', 'br0', 'type', 'bridge');
    ip('-n', cp, 'addr', 'add', '10.62.0.1/24', 'dev', 'br0');
    ip('-n', cp, 'link', 'set', 'br0', 'up');
    for (const [i, h] of hosts.entries()) {
      await ensureNetns(h.ns);
      ip('-n', cp, 'link', 'add', `v${i}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', h.ns);
      ip('-n', cp, 'link', 'set', `v${i}`, 'master', 'br0', 'up');
      ip('-n', h.ns, 'addr', 'add', `${h.addr}/24`, 'dev', 'eth0');
      ip('-n', h.ns, 'link', 'set', 'eth0', 'up');
    }
    d = await startDaemonProcess({
      netns: cp,
      extraArgs: ['--listen', '10.62.0.1:0', '--agent-listen', '10.62.0.1:0', '--heartbeat-interval', '1'],
    });
    apiUrl = d.url;
    await waitFor('agent endpoint line', async () =>
      /agent endpoint \(mutual TLS\): (\S+)/.exec(d?.output ?? ''),
    );
    agentUrl = /agent endpoint \(mutual TLS\): (\S+)/.exec(d.output)?.[1] as string;
  });
  afterAll(async () => {
    for (const a of agents.values()) a.kill('SIGKILL');
    await stopDaemon(d).catch(() => undefined);
    for (const h of hosts) await removeNetns(h.ns);
    await removeNetns(cp);
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  const startAgent = (ns: string, dir: string, extra: string[]) => {
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
        apiUrl,
        '--endpoint',
        agentUrl,
        '--interval',
        '1',
        ...extra,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    child.stdout?.on('data', (b: Buffer) => {
      out += b.toString();
    });
    child.stderr?.on('data', (b: Buffer) => {
      out += b.toString();
    });
    return { child, output: () => out };
  };
  const hostList = async () => {
    const r = await d!.bulwark(['host', 'list', '-f', 'json']);
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as { name: string; state: string; local: boolean }[];
  };

  it('three agents join with one-time tokens from `bulwark host join-token create` and report', async () => {
    for (const h of hosts) {
      const t = await d!.bulwark(['host', 'join-token', 'create', '--host', h.name, '-f', 'json']);
      expect(t.code, t.stderr).toBe(0);
      const { token, ca_hash } = JSON.parse(t.stdout) as { token: string; ca_hash: string };
      const dir = mkdtempSync(join(tmpdir(), 'bulwark-agent-'));
      dirs.push(dir);
      const a = startAgent(h.ns, dir, ['--token', token, '--ca-hash', ca_hash]);
      agents.set(h.name, a.child);
      await waitFor(`${h.name} reporting`, async () => /reporting to/.test(a.output()), 30_000);
      // The token is spent: a second agent with it is refused.
      const again = startAgent(h.ns, mkdtempSync(join(tmpdir(), 'bulwark-agent-')), [
        '--token',
        token,
        '--ca-hash',
        ca_hash,
      ]);
      const code = await new Promise<number | null>((r) => again.child.once('exit', r));
      expect(code).not.toBe(0);
      expect(again.output()).toMatch(/HTTP 401/);
    }
    const list = await hostList();
    for (const h of hosts)
      expect(list).toContainEqual(expect.objectContaining({ name: h.name, state: 'up', local: false }));
    expect(list.filter((h) => h.local)).toHaveLength(1);
    // Each agent's hardening readings of its own host reach the compliance checks (docs/compliance.md).
    const rep = await d!.bulwark(['compliance', 'report', '--framework', 'pci-dss', '--format', 'json']);
    expect(rep.code, rep.stderr).toBe(0);
    const sysctls = (
      JSON.parse(rep.stdout) as { rows: { control: { id: string }; result: any }[] }
    ).rows.find((r) => r.control.id === 'host-sysctls');
    for (const h of hosts) {
      expect(['pass', 'fail']).toContain(sysctls?.result.observed[h.name]?.verdict);
      expect(sysctls?.result.observed[h.name]?.sysctls).toHaveProperty('kernel.randomize_va_space');
    }
  });

  it("an agent without an identity or token is refused to start; a stopped agent's host goes down", async () => {
    const lone = startAgent(hosts[0]!.ns, mkdtempSync(join(tmpdir(), 'bulwark-agent-')), []);
    expect(await new Promise<number | null>((r) => lone.child.once('exit', r))).not.toBe(0);
    expect(lone.output()).toMatch(/--token and --ca-hash/);
    agents.get('hv-2')?.kill('SIGTERM');
    await waitFor(
      'hv-2 down',
      async () => (await hostList()).find((h) => h.name === 'hv-2')?.state === 'down',
      30_000,
      1000,
    );
    expect((await hostList()).find((h) => h.name === 'hv-1')?.state).toBe('up');
    // An admin takes hv-1 out of scheduling; its agent's reports keep it out.
    const off = await d!.bulwark(['host', 'disable', 'hv-1']);
    expect(off.code, off.stderr).toBe(0);
    await new Promise((r) => setTimeout(r, 2500));
    expect((await hostList()).find((h) => h.name === 'hv-1')?.state).toBe('disabled');
  });
});
