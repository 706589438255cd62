/**
 * Top self-time frames of a V8 .cpuprofile (from `node --cpu-prof`), so a
 * benchmark that misses its target can say where the time went.
 *
 *   node bench/lib/cpu-profile.mjs FILE.cpuprofile [top]
 */
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

export function topFrames(file, top = 8) {
  const p = JSON.parse(readFileSync(file, 'utf8'));
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const dt = new Map();
  for (let i = 0; i < p.samples.length; i++)
    dt.set(p.samples[i], (dt.get(p.samples[i]) ?? 0) + (p.timeDeltas[i] ?? 0));
  const self = new Map();
  let total = 0;
  for (const [id, us] of dt) {
    const f = byId.get(id).callFrame;
    const where = f.url ? `${f.url.replace(/^.*\/(dist-bench|dist|src|bench|node_modules)\//, '$1/')}:${f.lineNumber + 1}` : '';
    const key = `${f.functionName || '(anonymous)'} ${where}`.trim();
    self.set(key, (self.get(key) ?? 0) + us);
    total += us;
  }
  return [...self.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([frame, us]) => ({ frame, percent: Number(((100 * us) / total).toFixed(1)) }));
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  for (const f of topFrames(process.argv[2], Number(process.argv[3] ?? 15))) console.log(`${String(f.percent).padStart(5)}%  ${f.frame}`);
}
