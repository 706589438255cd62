import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Whether `perf` can sample the whole machine here (Debian's linux-perf; root). */
export const canProfileKernel = (): boolean => spawnSync('perf', ['--version']).status === 0;

/**
 * Samples every CPU while `work` runs and returns the top kernel symbols by
 * self time ("12.3% nft_do_chain, ...") and netfilter's share of all samples: where per-packet cost that no Node
 * profile sees goes (the firewall rows of bench/iperf.ts).
 */
export async function kernelProfile(work: () => Promise<unknown>, top = 8): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'bulwark-bench-perf-'));
  const data = join(dir, 'perf.data');
  try {
    const rec = spawn('perf', ['record', '-a', '-F', '999', '-o', data, '--', 'sleep', '600'], {
      stdio: 'ignore',
    });
    await new Promise((r) => setTimeout(r, 500)); // perf opens its events before the work starts
    try {
      await work();
    } finally {
      rec.kill('SIGINT');
      await new Promise((r) => rec.once('exit', r));
    }
    const report = spawnSync(
      'perf',
      ['report', '-i', data, '--stdio', '--no-children', '--sort', 'symbol', '--percent-limit', '0.5'],
      { encoding: 'utf8', maxBuffer: 64 << 20 },
    ).stdout;
    const symbols = report
      .split('\n')
      .map((l) => /^\s*([\d.]+)%\s+\[k\]\s+(\S+)/.exec(l))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => ({ pct: Number(m[1]), name: m[2] as string }));
    // Netfilter's own share: the ruleset (nft_*, set lookups) and conntrack (nf_*), whatever their rank.
    const netfilter = symbols
      .filter((x) => /^(__)?(nft?_|nf_conntrack|pipapo|ipv[46]_conntrack|__nf_)/.test(x.name))
      .reduce((sum, x) => sum + x.pct, 0);
    const tops = symbols
      .slice(0, top)
      .map((x) => `${x.pct.toFixed(2)}% ${x.name}`)
      .join(', ');
    return `${tops} (netfilter symbols in all: ${netfilter.toFixed(1)}%)`;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
