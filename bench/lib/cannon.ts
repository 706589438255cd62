import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';

const bin = createRequire(import.meta.url).resolve('autocannon/autocannon.js');

export interface CannonResult {
  requestsPerSecond: number;
  /** Requests answered in the round. */
  total: number;
  p99Ms: number;
  p50Ms: number;
  errors: number;
  non2xx: number;
}

/**
 * One autocannon round against `url`, in its own process: the server under
 * test keeps this process's event loop to itself.
 */
export function cannon(
  url: string,
  opts: {
    connections: number;
    seconds: number;
    headers?: Record<string, string>;
    method?: string;
    body?: string;
  },
): Promise<CannonResult> {
  const args = [bin, '-j', '-c', String(opts.connections), '-d', String(opts.seconds)];
  for (const [k, v] of Object.entries(opts.headers ?? {})) args.push('-H', `${k}=${v}`);
  if (opts.method) args.push('-m', opts.method);
  if (opts.body) args.push('-b', opts.body);
  args.push(url);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
    });
    child.stderr.on('data', (b: Buffer) => {
      err += b.toString();
    });
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`autocannon exited ${code}: ${err.slice(0, 500)}`));
      const r = JSON.parse(out) as {
        requests: { average: number; total: number };
        latency: { p99: number; p50: number };
        errors: number;
        non2xx: number;
      };
      resolve({
        requestsPerSecond: r.requests.average,
        total: r.requests.total,
        p99Ms: r.latency.p99,
        p50Ms: r.latency.p50,
        errors: r.errors,
        non2xx: r.non2xx,
      });
    });
  });
}
