import { Transform } from 'node:stream';
import cliProgress from 'cli-progress';

/** A byte progress bar on stderr (quiet when stderr is not a terminal). */
export function byteProgress(label: string, total: number) {
  const bar = new cliProgress.SingleBar(
    {
      format: `${label} [{bar}] {percentage}% {value}/{total} MiB`,
      stream: process.stderr,
      noTTYOutput: false,
      hideCursor: true,
    },
    cliProgress.Presets.shades_classic,
  );
  const mib = (n: number) => Math.round((n / 2 ** 20) * 10) / 10;
  bar.start(mib(total), 0);
  let seen = 0;
  const meter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      seen += chunk.length;
      bar.update(mib(seen));
      cb(null, chunk);
    },
    flush(cb) {
      bar.update(mib(total));
      bar.stop();
      cb();
    },
  });
  return meter;
}

/** Polls until `done` says so, showing the current state on one stderr line. */
export async function waitWithStatus<T>(
  label: string,
  poll: () => Promise<T>,
  done: (v: T) => string | null,
  describe: (v: T) => string,
  timeoutMs = 600_000,
): Promise<T> {
  const start = Date.now();
  const tty = process.stderr.isTTY;
  let last = '';
  for (;;) {
    const v = await poll();
    const line = `${label}: ${describe(v)} (${Math.round((Date.now() - start) / 1000)}s)`;
    if (tty) process.stderr.write(`\r${line.padEnd(last.length)}`);
    else if (describe(v) !== last) process.stderr.write(`${line}\n`);
    last = tty ? line : describe(v);
    const err = done(v);
    if (err !== null) {
      if (tty) process.stderr.write('\n');
      if (err) throw new Error(err);
      return v;
    }
    if (Date.now() - start > timeoutMs)
      throw new Error(`${label}: still not done after ${timeoutMs / 1000}s`);
    await new Promise((r) => setTimeout(r, 1000));
  }
}
