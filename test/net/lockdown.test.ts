import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listTables } from '../../src/host/net/nft.js';
import { NftDataplane } from '../../src/host/net/nft-dataplane.js';
import type { CompileInput, GroupState, PortState } from '../../src/network/compile.js';
import { normaliseRule } from '../../src/network/model.js';
import { type Guest, guestPort, hasTools, isRoot, Topology } from './topology.js';

/**
 * Fail closed when nftables cannot apply a change: the real nft, behind a
 * wrapper that refuses the main ruleset on demand (as a kernel or nft error
 * would), while real packets flow between namespaces.
 */
const canRun = isRoot() && hasTools();

describe.skipIf(!canRun)('a failed nftables apply never leaves a port open', () => {
  let topo: Topology;
  let g1: Guest;
  let g2: Guest;
  let dir: string;
  let dataplane: NftDataplane;
  const table = `bwlock_${Math.random().toString(16).slice(2, 8)}`;
  const failMain = () => join(dir, 'fail-main');
  const failAll = () => join(dir, 'fail-all');
  const notices: boolean[] = [];
  let state: Omit<CompileInput, 'table'>;

  const groups: GroupState[] = [
    { id: 'default', stateful: true, rules: [{ direction: 'egress' }].map((r) => normaliseRule(r)) },
    {
      id: 'open',
      stateful: true,
      rules: [{ direction: 'egress' }, { direction: 'ingress' }].map((r) => normaliseRule(r)),
    },
  ];
  const port = (g: Guest, group: string): PortState => guestPort(g, { groupIds: [group], network: 'net1' });
  const tcp = async (from: Guest, to: Guest, timeoutMs = 500) =>
    (await from.agent.call('connect', { host: to.ip, port: 443, timeoutMs })).result;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'bulwark-lockdown-'));
    // Fails the way nft does (message, exit 1) while a flag file exists; the lockdown batch is told apart by its table.
    const wrapper = join(dir, 'nft');
    writeFileSync(
      wrapper,
      `#!/bin/sh
for a in "$@"; do last="$a"; done
if [ -e ${failAll()} ] || { [ -e ${failMain()} ] && [ -f "$last" ] && ! grep -q _lockdown "$last"; }; then
  echo "Error: Could not process rule: No buffer space available (forced by the test)" >&2
  exit 1
fi
exec nft "$@"
`,
    );
    chmodSync(wrapper, 0o755);
    topo = await Topology.create(['10.91.0.1']);
    g1 = await topo.addGuest('l1', {
      ip: '10.91.0.11',
      prefixLen: 24,
      gateway: '10.91.0.1',
      mac: 'fa:16:3e:00:01:11',
    });
    g2 = await topo.addGuest('l2', {
      ip: '10.91.0.12',
      prefixLen: 24,
      gateway: '10.91.0.1',
      mac: 'fa:16:3e:00:01:12',
    });
    for (const g of [g1, g2]) await g.agent.call('listenTcp', { port: 443 });
    dataplane = new NftDataplane({
      table,
      netns: topo.hv,
      nft: wrapper,
      load: async () => state,
      onLockdown: (on) => notices.push(on),
      retryMs: 300,
    });
  });
  afterAll(async () => {
    dataplane?.close();
    await topo?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('applies normally while nft works', async () => {
    state = { ports: [port(g1, 'open'), port(g2, 'open')], groups };
    await dataplane.sync('both open');
    expect(await tcp(g2, g1, 3000)).toBe('connected');
    expect(await tcp(g1, g2, 3000)).toBe('connected');
  });

  it('a revocation that cannot be applied cuts the ports off instead of keeping the old allow', async () => {
    writeFileSync(failMain(), '');
    state = { ports: [port(g1, 'default'), port(g2, 'open')], groups };
    await expect(dataplane.sync('close g1')).rejects.toThrow(/could not enforce it.*cut off/s);
    expect(dataplane.lockedDown).toBe(true);
    expect(notices).toEqual([true]);
    // The old ruleset would still let g2 in: the lockdown table drops every VM device's traffic instead.
    expect(await tcp(g2, g1)).toBe('timeout');
    expect(await tcp(g1, g2)).toBe('timeout');
    expect((await listTables({ netns: topo.hv })).map((t) => t.name)).toContain(`${table}_lockdown`);
  });

  it('retries on its own; once nft works the new rules hold and the lockdown goes', async () => {
    rmSync(failMain());
    const deadline = Date.now() + 10_000;
    while (dataplane.lockedDown && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(dataplane.lockedDown).toBe(false);
    expect(notices).toEqual([true, false]);
    expect((await listTables({ netns: topo.hv })).map((t) => t.name)).not.toContain(`${table}_lockdown`);
    expect(await tcp(g2, g1)).toBe('timeout'); // the revocation is in force
    expect(await tcp(g1, g2, 3000)).toBe('connected'); // and the rest works again
  });

  it('when nft refuses even the lockdown, the last applied rules stay whole (atomic), never none', async () => {
    writeFileSync(failAll(), '');
    state = { ports: [port(g1, 'open'), port(g2, 'open')], groups };
    await expect(dataplane.sync('open g1')).rejects.toThrow(/previous rules stay in force/);
    // Still the last good ruleset: g1 closed to ingress, g2 open.
    expect(await tcp(g2, g1)).toBe('timeout');
    expect(await tcp(g1, g2, 3000)).toBe('connected');
    rmSync(failAll());
  });
});
