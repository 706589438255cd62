import { createWriteStream } from 'node:fs';
import { chmod, lchown, unlink } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { Transform } from 'node:stream';
import type { VmUser } from './users.js';

/**
 * Receives one migration stream from QEMU into a root-only file. QEMU 7.2 has
 * no `file:` migration, `exec:` needs a helper that the sandbox (spawn=deny)
 * forbids, and Node cannot hand QEMU an fd over QMP (`getfd`), so QEMU
 * connects to this unix socket, made in the guest's directory and owned by
 * its user, and the daemon writes what arrives to `outPath`.
 */
export interface StateReceiver {
  /** Resolves when the stream has ended and is on disk (fsync'd, closed). */
  done: Promise<void>;
  close(): Promise<void>;
}

export async function receiveState(
  socketPath: string,
  owner: VmUser,
  outPath: string,
  /** Applied to the stream on its way to disk (memory snapshots encrypt it: state-cipher.ts). */
  through?: Transform,
): Promise<StateReceiver> {
  await unlink(socketPath).catch(() => undefined);
  // `flush`: fsync before the stream closes, so 'close' means the state is on disk.
  const out = createWriteStream(outPath, { flags: 'w', mode: 0o600, flush: true });
  await new Promise<void>((resolve, reject) => {
    out.once('open', () => resolve());
    out.once('error', reject);
  });
  const server = createServer();
  const done = new Promise<void>((resolve, reject) => {
    out.on('error', reject);
    out.on('close', () => resolve());
    server.once('connection', (conn) => {
      server.close();
      conn.on('error', (err) => {
        out.destroy(err);
        reject(err);
      });
      if (through) {
        through.on('error', (err) => {
          out.destroy(err);
          reject(err);
        });
        conn.pipe(through).pipe(out);
      } else conn.pipe(out);
    });
  });
  done.catch(() => undefined);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, () => resolve());
    });
    await lchown(socketPath, owner.uid, owner.gid);
    await chmod(socketPath, 0o600);
  } catch (err) {
    server.close();
    out.destroy();
    throw err;
  }
  return {
    done,
    async close() {
      server.close();
      if (!out.closed) {
        const closed = new Promise<void>((r) => out.once('close', () => r()));
        out.destroy();
        await closed;
      }
      await unlink(socketPath).catch(() => undefined);
    },
  };
}
