/**
 * TCP throughput (iperf3) between two "guests" through the host's firewall,
 * with 1,000 and 10,000 security-group rules: Bulwark's compiled ruleset
 * (network/compile.ts, sg-sets.ts: a port's chain jumps to its group's chain,
 * which looks the packet up in the group's (address . protocol . port)
 * interval sets: one probe however many rules) against no
 * firewall at all and against a naive linear chain (one nft rule per
 * security-group rule). The guests are network namespaces behind veth pairs
 * whose host ends are named and plugged exactly like VM taps
 * (test/net/topology.ts, host/net/links.ts), not QEMU guests: the tiny test
 * guests carry no iperf3, and TCG would measure the emulator, not the firewall.
 * Two kinds of group: stateless, so every packet goes through the rules, and
 * stateful like OpenStack's default group (egress anywhere, ingress from the
 * group itself, then the filler rules), where established packets are
 * accepted before any rule and only a flow's first packet is looked up.
 *
 *   npx tsc -p bench/tsconfig.json && node dist-bench/bench/iperf.js [rounds] [seconds]
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runNet } from '../src/host/net/exec.js';
import { applyRuleset } from '../src/host/net/nft.js';
import { compileRuleset, type GroupState } from '../src/network/compile.js';
import { normaliseRule, type RuleInput } from '../src/network/model.js';
import { guestPort, Topology } from '../test/net/topology.js';
import { canProfileKernel, kernelProfile } from './lib/kernel-profile.js';
import { emit, fmt, median } from './lib/result.js';

const rounds = Number(process.argv[2] ?? 5);
const seconds = Number(process.argv[3] ?? 3);
const SIZES = [1000, 10_000];
const IPERF_PORT = 5201;
const EPHEMERAL = [32768, 60999] as const;

/**
 * n rules that do not match the flow (other sources), then the two that let iperf3 through, last;
 * `stateful`: OpenStack's default group first (ingress from the group itself).
 */
function ruleInputs(n: number, stateful: boolean): RuleInput[] {
  const rules: RuleInput[] = [{ direction: 'egress' }];
  if (stateful) rules.push({ direction: 'ingress', remote_group_id: 'bench' });
  for (let i = 0; i < n; i++)
    rules.push({
      direction: 'ingress',
      protocol: 'tcp',
      port_range_min: 1000 + (i % 1000),
      port_range_max: 1000 + (i % 1000),
      remote_ip_prefix: `198.18.${i >> 8}.${i & 255}/32`,
    });
  rules.push({
    direction: 'ingress',
    protocol: 'tcp',
    port_range_min: IPERF_PORT,
    port_range_max: IPERF_PORT,
  });
  rules.push({
    direction: 'ingress',
    protocol: 'tcp',
    port_range_min: EPHEMERAL[0],
    port_range_max: EPHEMERAL[1],
  });
  return rules;
}

/** The naive baseline: per-port chains, one nft rule per security-group rule, in order (conntrack first if stateful). */
function naiveRuleset(devices: string[], members: string[], rules: RuleInput[], stateful: boolean): string {
  const lines = [
    'table inet naive {',
    '  chain forward {',
    '    type filter hook forward priority 0; policy drop;',
  ];
  for (const d of devices) lines.push(`    iifname "${d}" jump out_${d}`);
  for (const d of devices) lines.push(`    oifname "${d}" jump in_${d}`);
  lines.push('  }');
  for (const d of devices) {
    const est = stateful ? ['    ct state established,related accept'] : [];
    lines.push(`  chain out_${d} {`, ...est, '    return', '  }', `  chain in_${d} {`, ...est);
    for (const r of rules) {
      if (r.direction !== 'ingress') continue;
      if (r.remote_group_id) {
        lines.push(`    ip saddr { ${members.join(', ')} } accept`);
        continue;
      }
      const from = r.remote_ip_prefix ? `ip saddr ${r.remote_ip_prefix} ` : '';
      const ports =
        r.port_range_min === r.port_range_max
          ? `${r.port_range_min}`
          : `${r.port_range_min}-${r.port_range_max}`;
      lines.push(`    ${from}tcp dport ${ports} accept`);
    }
    lines.push('    drop', '  }');
  }
  lines.push('}');
  return lines.join('\n');
}

const topo = await Topology.create(['10.77.0.1']);
const tmp = mkdtempSync(join(tmpdir(), 'bulwark-bench-iperf-'));
try {
  const a = await topo.addGuest('ipa', {
    ip: '10.77.0.11',
    prefixLen: 24,
    gateway: '10.77.0.1',
    mac: 'fa:16:3e:00:77:11',
  });
  const b = await topo.addGuest('ipb', {
    ip: '10.77.0.12',
    prefixLen: 24,
    gateway: '10.77.0.1',
    mac: 'fa:16:3e:00:77:12',
  });
  await topo.exec(b.netns, 'iperf3', [
    '-s',
    '-D',
    '-p',
    String(IPERF_PORT),
    '--pidfile',
    join(tmp, 'iperf.pid'),
  ]);
  const flush = async () => void (await topo.exec(topo.hv, 'nft', ['flush', 'ruleset']));
  const configs: { name: string; apply: () => Promise<void> }[] = [{ name: 'none', apply: flush }];
  for (const stateful of [false, true])
    for (const n of SIZES) {
      const kind = stateful ? 'stateful' : 'stateless';
      const inputs = ruleInputs(n, stateful);
      const group: GroupState = { id: 'bench', stateful, rules: inputs.map((r) => normaliseRule(r)) };
      const ruleset = compileRuleset({
        table: 'bwbench',
        ports: [a, b].map((g) => guestPort(g, { groupIds: ['bench'] })),
        groups: [group],
      });
      const naiveFile = join(tmp, `naive-${kind}-${n}.nft`);
      writeFileSync(naiveFile, naiveRuleset([a.device, b.device], [a.ip, b.ip], inputs, stateful));
      configs.push({
        name: `bulwark-${kind}-${n}`,
        apply: async () => {
          await flush();
          await applyRuleset(ruleset, { netns: topo.hv, keepCounters: false });
        },
      });
      configs.push({
        name: `naive-${kind}-${n}`,
        apply: async () => {
          await flush();
          await runNet('nft', ['-f', naiveFile], { netns: topo.hv, timeoutMs: 120_000 });
        },
      });
    }
  const gbps = new Map<string, number[]>(configs.map((c) => [c.name, []]));
  const iperf = async () => {
    const out = await topo.exec(
      a.netns,
      'iperf3',
      ['-c', b.ip, '-p', String(IPERF_PORT), '-t', String(seconds), '-J'],
      (seconds + 30) * 1000,
    );
    return (JSON.parse(out) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received
      .bits_per_second;
  };
  for (let r = 0; r < rounds; r++)
    for (const c of configs) {
      await c.apply();
      const bps = await iperf();
      gbps.get(c.name)?.push(bps / 1e9);
      process.stderr.write(`iperf round ${r + 1} ${c.name}: ${(bps / 1e9).toFixed(2)} Gbit/s\n`);
    }
  // Where the per-packet time goes, in the kernel: one more unmeasured run of each kind under perf.
  const profiles = new Map<string, string>();
  if (canProfileKernel())
    for (const name of ['none', ...configs.filter((c) => c.name.startsWith('bulwark-')).map((c) => c.name)]) {
      const c = configs.find((x) => x.name === name);
      if (!c) continue;
      await c.apply();
      profiles.set(name, await kernelProfile(iperf));
    }
  const profileNote = (kind: string, n: number) =>
    profiles.size
      ? `kernel profile (perf, all CPUs, top self time) with no firewall: ${profiles.get('none')}; ` +
        `with this group: ${profiles.get(`bulwark-${kind}-${n}`)}`
      : 'perf is not installed, so no kernel profile was taken';
  const med = (name: string) => median(gbps.get(name) ?? []);
  const none = med('none');
  const rows = (['stateless', 'stateful'] as const).flatMap((kind) =>
    SIZES.flatMap((n) => {
      const bw = med(`bulwark-${kind}-${n}`);
      const naive = med(`naive-${kind}-${n}`);
      const group = kind === 'stateless' ? 'stateless group' : "stateful group (OpenStack's default + rules)";
      return [
        {
          what: `iperf3 TCP between two ports, ${fmt(n)} rules, ${group}, vs no firewall`,
          baseline: `no firewall: ${none.toFixed(2)} Gbit/s`,
          subject: `${bw.toFixed(2)} Gbit/s`,
          ratio: `${(bw / none).toFixed(3)}×`,
          target: '≥ 0.9×',
          met: bw / none >= 0.9,
          ...(bw / none >= 0.9
            ? {}
            : {
                note:
                  'the cost is in the kernel, per packet: ' +
                  (kind === 'stateless'
                    ? 'without conntrack every packet takes the port-security checks, the notrack selection and two ' +
                      'set probes (egress of the sender, ingress of the receiver)'
                    : 'established packets take port security, conntrack and the established-first accept') +
                  `; ${profileNote(kind, n)}`,
              }),
        },
        {
          what: `same, ${fmt(n)} rules, ${kind}, vs a naive linear chain`,
          baseline: `naive chain: ${naive.toFixed(2)} Gbit/s`,
          subject: `${bw.toFixed(2)} Gbit/s`,
          ratio: `${(bw / naive).toFixed(2)}× faster`,
          target: 'faster; by how much',
          met: bw > naive,
        },
      ];
    }),
  );
  emit({
    rows,
    details: [
      `${rounds} rounds of ${seconds} s per configuration, interleaved (none, then Bulwark and naive at 1k and 10k, stateless then stateful, ...), medians; ` +
        'network namespaces behind tap-named veth pairs (not QEMU guests, see bench/iperf.ts); the matching rules last ' +
        "(stateful: after the default group's own rules, which the flow matches first, as it would on OpenStack); " +
        'then one unmeasured run of no firewall and of each Bulwark configuration under `perf record -a` for the kernel profiles.',
    ],
  });
} finally {
  // A daemonised iperf3 outlives its namespace: stop it by its pidfile before the topology goes.
  const pidfile = join(tmp, 'iperf.pid');
  if (existsSync(pidfile)) {
    try {
      process.kill(Number(readFileSync(pidfile, 'utf8').trim()), 'SIGTERM');
    } catch {
      // already gone
    }
  }
  await topo.destroy();
  rmSync(tmp, { recursive: true, force: true });
}
