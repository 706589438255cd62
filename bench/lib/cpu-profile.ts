/**
 * Where the time went: the top self-time frames of a V8 CPU profile, taken
 * in-process with node:inspector while a bench round runs, so a part that
 * misses its target can show why.
 */
import { Session } from 'node:inspector/promises';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export function topFrames(p: Profile, top = 8): { frame: string; percent: number }[] {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<string, number>();
  let total = 0;
  p.samples.forEach((id, i) => {
    const f = (byId.get(id) as ProfileNode).callFrame;
    const at = f.url
      ? ` ${f.url.replace(/^.*\/(dist-bench\/src|dist-bench|node_modules)\//, '')}:${f.lineNumber + 1}`
      : '';
    const key = `${f.functionName || '(anonymous)'}${at}`;
    const us = p.timeDeltas[i] ?? 0;
    self.set(key, (self.get(key) ?? 0) + us);
    total += us;
  });
  return [...self.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([frame, us]) => ({ frame, percent: Number(((100 * us) / total).toFixed(1)) }));
}

/** Runs `fn` under the profiler; returns its result and the top frames as one line of text. */
export async function profiled<T>(fn: () => Promise<T>, top = 6): Promise<{ result: T; frames: string }> {
  const s = new Session();
  s.connect();
  await s.post('Profiler.enable');
  await s.post('Profiler.start');
  try {
    const result = await fn();
    const { profile } = (await s.post('Profiler.stop')) as { profile: Profile };
    const frames = topFrames(profile, top)
      .map((f) => `${f.percent}% \`${f.frame}\``)
      .join(', ');
    return { result, frames };
  } finally {
    s.disconnect();
  }
}
