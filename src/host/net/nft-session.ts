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
 * batch comes `describe meta mark`, which needs no cache and prints one
 * fixed line; nft's stderr is merged into its stdout, so whatever comes
 * before that line belongs to the batch, and nft prints nothing for a batch
 * it committed. (Not a deliberate error as the marker: any error makes nft
 * drop its cache.) A batch that printed anything, a process that died, or no
 * answer in time is an error, and the caller falls back to the full apply;
 * the next batch starts a new process.
 */
const MARKER_COMMAND = 'describe meta mark';
/** What nft 1.0.6 prints for it (the test of this module checks the installed nft still does). */
export const MARKER_LINE = 'meta expression, datatype mark (packet mark) (basetype integer), 32 bits\n';

export class NftSession {
  /** Longest line sent (nft 1.0.6's line editor took a 1.5 MB line whole, measured); longer batches go as `nft -j -f`. */
  static readonly maxLine = 1 << 20;

  private child: ChildProcessWithoutNullStreams | undefined;
  private out = '';
  private pending: ((e?: Error) => void) | undefined;

  constructor(private readonly opts: NftOptions & { timeoutMs?: number } = {}) {}

  /** Runs one batch (native commands joined by `;`) as one transaction; queued with every other nft change of the namespace. */
  run(batch: string): Promise<void> {
    if (/[\r\n]/.test(batch) || batch.trim() === '' || batch.length > NftSession.maxLine)
      return Promise.reject(
        new Error(`An nft session batch must be one non-empty line of at most ${NftSession.maxLine} bytes.`),
      );
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
    // One stream for both, in nft's order (a fixed script; the argv goes as its arguments, never parsed).
    // No history file: the line editor would write every batch to $HOME/.nft_history on exit.
    const child = spawn('/bin/sh', ['-c', 'exec "$@" 2>&1', 'sh', ...argv], {
      stdio: 'pipe',
      env: { ...process.env, HOME: '/nonexistent' },
    });
    // An idle session never keeps the process alive (a pending batch has its timer).
    child.unref();
    for (const s of [child.stdin, child.stdout, child.stderr])
      (s as unknown as { unref?: () => void }).unref?.();
    this.out = '';
    child.stderr.resume();
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (s: string) => {
      this.out += s;
      this.check();
    });
    child.stdin.on('error', () => {}); // a dead child is reported by 'exit'
    const gone = (why: string) => {
      child.stdin.destroy(); // anything the child left behind (a wrapper's pipeline) sees the end of its input
      if (this.child !== child) return;
      this.child = undefined;
      this.finish(
        new HostCommandError(argv.join(' '), child.exitCode, `nft session ended (${why}): ${this.out}`),
      );
    };
    child.on('error', (e) => gone(e.message));
    child.on('exit', (code, signal) => gone(signal ?? `exit ${code}`));
    this.child = child;
    return child;
  }

  private send(batch: string): Promise<void> {
    const child = this.child ?? this.start();
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.kill(new Error(`nft session gave no answer in ${this.opts.timeoutMs ?? 10_000} ms`));
      }, this.opts.timeoutMs ?? 10_000);
      this.pending = (e) => {
        clearTimeout(timer);
        if (e) reject(e);
        else resolve();
      };
      child.stdin.write(`${batch}\n${MARKER_COMMAND}\n`);
      this.check();
    });
  }

  /** Completes the pending batch once the marker's line is out. */
  private check(): void {
    if (!this.pending) return;
    const at = this.out.indexOf(MARKER_LINE);
    if (at < 0) return;
    const said = this.out.slice(0, at).trim();
    this.out = this.out.slice(at + MARKER_LINE.length);
    this.finish(said ? new HostCommandError('nft -i', null, said) : undefined);
  }

  private finish(e?: Error): void {
    const p = this.pending;
    this.pending = undefined;
    p?.(e);
  }

  private kill(e: Error): void {
    const child = this.child;
    this.child = undefined;
    child?.stdin.destroy();
    child?.kill('SIGKILL');
    this.finish(e);
  }
}
