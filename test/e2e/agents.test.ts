/**
 * Three host agents, each the real `bulwark agent` in its own network
 * namespace (a test "hypervisor host"), joined to a real `bulwark serve` over
 * a bridge in the daemon's namespace: join tokens from the real CLI, reports
 * over mutual TLS, a host marked down when its agent stops.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AgentTopology, startAgentTopology } from '../helpers/agent-hosts.js';
import { waitFor } from '../helpers/guests.js';

describe.runIf(process.getuid?.() === 0)('bulwark agent on three netns hosts', { timeout: 240_000 }, () => {
  let t: AgentTopology;
  beforeAll(async () => {
    t = await startAgentTopology({ prefix: 'bwmh', subnet: '10.62.0' });
  });
  afterAll(() => t?.close());
  const hostList = async () => {
    const r = await t.d.bulwark(['host', 'list', '-f', 'json']);
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as { name: string; state: string; local: boolean }[];
  };

  it('three agents join with one-time tokens from `bulwark host join-token create` and report', async () => {
    for (const h of t.hosts) {
      const tok = await t.d.bulwark(['host', 'join-token', 'create', '--host', h.name, '-f', 'json']);
      expect(tok.code, tok.stderr).toBe(0);
      const { token, ca_hash } = JSON.parse(tok.stdout) as { token: string; ca_hash: string };
      const a = t.startAgent(h.ns, ['--token', token, '--ca-hash', ca_hash]);
      t.agents.set(h.name, a.child);
      await waitFor(`${h.name} reporting`, async () => /reporting to/.test(a.output()), 30_000);
      // The token is spent: a second agent with it is refused.
      const again = t.startAgent(h.ns, ['--token', token, '--ca-hash', ca_hash]);
      const code = await new Promise<number | null>((r) => again.child.once('exit', r));
      expect(code).not.toBe(0);
      expect(again.output()).toMatch(/HTTP 401/);
    }
    const list = await hostList();
    for (const h of t.hosts)
      expect(list).toContainEqual(expect.objectContaining({ name: h.name, state: 'up', local: false }));
    expect(list.filter((h) => h.local)).toHaveLength(1);
    // Each agent's hardening readings of its own host reach the compliance checks (docs/compliance.md).
    const rep = await t.d.bulwark(['compliance', 'report', '--framework', 'pci-dss', '--format', 'json']);
    expect(rep.code, rep.stderr).toBe(0);
    const sysctls = (
      JSON.parse(rep.stdout) as { rows: { control: { id: string }; result: any }[] }
    ).rows.find((r) => r.control.id === 'host-sysctls');
    for (const h of t.hosts) {
      expect(['pass', 'fail']).toContain(sysctls?.result.observed[h.name]?.verdict);
      expect(sysctls?.result.observed[h.name]?.sysctls).toHaveProperty('kernel.randomize_va_space');
    }
  });

  it("an agent without an identity or token is refused to start; a stopped agent's host goes down", async () => {
    const lone = t.startAgent(t.hosts[0]!.ns, []);
    expect(await new Promise<number | null>((r) => lone.child.once('exit', r))).not.toBe(0);
    expect(lone.output()).toMatch(/--token and --ca-hash/);
    t.agents.get('hv-2')?.kill('SIGTERM');
    await waitFor(
      'hv-2 down',
      async () => (await hostList()).find((h) => h.name === 'hv-2')?.state === 'down',
      30_000,
      1000,
    );
    expect((await hostList()).find((h) => h.name === 'hv-1')?.state).toBe('up');
    // An admin takes hv-1 out of scheduling; its agent's reports keep it out.
    const off = await t.d.bulwark(['host', 'disable', 'hv-1']);
    expect(off.code, off.stderr).toBe(0);
    await new Promise((r) => setTimeout(r, 2500));
    expect((await hostList()).find((h) => h.name === 'hv-1')?.state).toBe('disabled');
  });
});
