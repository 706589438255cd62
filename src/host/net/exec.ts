import { spawn } from 'node:child_process';

/** Where a network command runs: the host's own namespace, or a named one (tests use their own). */
export interface NetnsOption {
  /** `ip netns` name; the command runs through `ip netns exec NAME`. */
  netns?: string | undefined;
}

const NETNS = /^[A-Za-z0-9_.-]{1,64}$/;

export class HostCommandError extends Error {
  constructor(
    readonly command: string,
    readonly code: number | null,
    readonly stderr: string,
  ) {
    super(`${command} failed (exit ${code ?? 'signal'}): ${stderr.trim() || 'no output'}`);
    this.name = 'HostCommandError';
  }
}

/**
 * Runs `cmd args` (in `opts.netns` when given) without a shell, feeding
 * `input` on stdin; resolves stdout, rejects with stderr in the message.
 */
export function runNet(
  cmd: string,
  args: readonly string[],
  opts: NetnsOption & { input?: string; timeoutMs?: number } = {},
): Promise<string> {
  if (opts.netns !== undefined && !NETNS.test(opts.netns))
    return Promise.reject(new Error(`'${opts.netns}' is not a valid network namespace name.`));
  const argv = opts.netns === undefined ? [cmd, ...args] : ['ip', 'netns', 'exec', opts.netns, cmd, ...args];
  const [file, ...rest] = argv as [string, ...string[]];
  const shown = argv.join(' ');
  return new Promise((resolve, reject) => {
    const child = spawn(file, rest, { stdio: ['pipe', 'pipe', 'pipe'], timeout: opts.timeoutMs ?? 30_000 });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) => reject(new HostCommandError(shown, null, e.message)));
    child.on('close', (code) => {
      const stdout = Buffer.concat(out).toString('utf8');
      if (code === 0) resolve(stdout);
      else reject(new HostCommandError(shown, code, Buffer.concat(err).toString('utf8')));
    });
    child.stdin.on('error', () => {}); // the child may exit before reading everything; 'close' reports it
    child.stdin.end(opts.input ?? '');
  });
}
