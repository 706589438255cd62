import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { HostCommandError } from './exec.js';
import { type NftOptions, serialised } from './nft.js';

/**
 * A long-lived `nft -i` for the small in-place batches of a group change.
 * A fresh `nft -f` reads every chain, set and named counter of the table
 * into its cache before it commits anything (2,010 chains and 2,505
 * counters for 500 ports); one interactive nft keeps that cache across its
 * commands and re-reads it only when the kernel's generation moved under it
 * (another process committed). So a batch costs a parse and one commit, not
 * a process start and a dump of the table (measured with strace on nft
 * 1.0.6; with JSON input it re-reads for every command, hence native text,
 * network/nft-text.ts).
 *
 * One line is one nft run: one transaction, all or nothing. After each
 * batch comes a marker line, which nft refuses as a syntax error and echoes
 * on stderr; whatever nft wrote to stderr before it belongs to the batch,
 * and nft writes nothing there for a batch it committed. A batch that
 * printed anything, a process that died, or no answer in time is an error,
 * and the caller falls back to the full apply; the next batch starts a new
 * process.
 */
export class NftSession {
  private child: ChildProcessWithoutNullStreams | undefined;
  private err = '';
  private seq = 0;
  private pending: { marker: string; done: (e?: Error) => void } | undefined;

  constructor(private readonly opts: NftOptions & { timeoutMs?: number } = {}) {}

  /** Runs one batch (native commands joined by `;`) as one transaction; queued with every other nft change of the namespace. */
  run(batch: string): Promise<void> {
    if (/[\r\n]/.test(batch) || batch.trim() === '')
      return Promise.reject(new Error('An nft session batch must be one non-empty line.'));
    return serialised(this.opts, () => this.send(batch));
  }

  /** Ends the process (daemon shutdown); a later batch starts a new one. */
  close(): void {
    this.kill(new Error('nft session closed'));
  }

  /** The running nft's pid (tests kill it to prove a dead session fails closed). */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  private start(): ChildProcessWithoutNullStreams {
    const nft = this.opts.nft ?? 'nft';
    const argv =
      this.opts.netns === undefined ? [nft, '-i'] : ['ip', 'netns', 'exec', this.opts.netns, nft, '-i'];
    const [file, ...args] = argv as [string, ...string[]];
    // No history file: the line editor would write every batch to $HOME/.nft_history on exit.
    const child = spawn(file, args, { stdio: 'pipe', env: { ...process.env, HOME: '/nonexistent' } });
    this.err = '';
    child.stdout.resume(); // prompts, if any
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (s: string) => {
      this.err += s;
      this.check();
    });
    child.stdin.on('error', () => {}); // a dead child is reported by 'exit'
    const gone = (why: string) => {
      child.stdin.destroy(); // anything the child left behind (a wrapper's pipeline) sees the end of its input
      if (this.child !== child) return;
      this.child = undefined;
      this.finish(
        new HostCommandError(argv.join(' '), child.exitCode, `nft session ended (${why}): ${this.err}`),
      );
    };
    child.on('error', (e) => gone(e.message));
    child.on('exit', (code, signal) => gone(signal ?? `exit ${code}`));
    this.child = child;
    return child;
  }

  private send(batch: string): Promise<void> {
    const child = this.child ?? this.start();
    const marker = `bulwark_batch_end_${++this.seq}`;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.kill(new Error(`nft session gave no answer in ${this.opts.timeoutMs ?? 10_000} ms`));
      }, this.opts.timeoutMs ?? 10_000);
      this.pending = {
        marker,
        done: (e) => {
          clearTimeout(timer);
          if (e) reject(e);
          else resolve();
        },
      };
      child.stdin.write(`${batch}\n${marker}\n`);
      this.check();
    });
  }

  /** Completes the pending batch once the marker's error (its three lines) is on stderr. */
  private check(): void {
    const p = this.pending;
    if (!p) return;
    const m = new RegExp(`Error: [^\\n]*\\n[^\\n]*${p.marker}[^\\n]*\\n[ ^~]*\\n`).exec(this.err);
    if (!m) return;
    const out = this.err.slice(0, m.index).trim();
    this.err = this.err.slice(m.index + m[0].length);
    this.finish(out ? new HostCommandError('nft -i', null, out) : undefined);
  }

  private finish(e?: Error): void {
    const p = this.pending;
    this.pending = undefined;
    p?.done(e);
  }

  private kill(e: Error): void {
    const child = this.child;
    this.child = undefined;
    child?.stdin.destroy();
    child?.kill('SIGKILL');
    this.finish(e);
  }
}
