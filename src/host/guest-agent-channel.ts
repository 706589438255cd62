import { randomInt } from 'node:crypto';
import { lstat } from 'node:fs/promises';
import { connect } from 'node:net';
import { BulwarkError } from '../errors.js';
import { isObject } from './qmp.js';

/** Largest reply line read from a guest (a guest-file-read of 48 KiB base64 fits many times). */
const MAX_REPLY_BYTES = 4 * 1024 * 1024;

const unavailable = (msg: string) => new BulwarkError('Unavailable', msg);

/**
 * One request to a guest's QEMU guest agent over its virtio-serial socket
 * (https://qemu.readthedocs.io/en/latest/interop/qemu-ga-ref.html). The
 * socket lives in the guest's own dir, which its user controls, so it must be
 * a socket owned by that user (never a symlink to something else). The agent
 * may hold stale output from an earlier client: `guest-sync` with a random id
 * first, and lines are skipped until that id comes back. The guest is
 * untrusted: its reply is size-limited, time-limited and must be a JSON object.
 */
export async function guestAgentCall(
  socketPath: string,
  ownerUid: number,
  request: string,
  timeoutMs = 10_000,
): Promise<Record<string, unknown>> {
  const st = await lstat(socketPath).catch(() => null);
  if (!st?.isSocket() || st.uid !== ownerUid)
    throw unavailable('The guest has no guest agent channel (is the server running, with the agent on?).');
  const syncId = randomInt(1, 2 ** 31);
  return new Promise((resolve, reject) => {
    const sock = connect(socketPath);
    let buf = '';
    let synced = false;
    const done = (err: Error | null, value?: Record<string, unknown>) => {
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(value as Record<string, unknown>);
    };
    const timer = setTimeout(
      () =>
        done(
          unavailable(
            `The guest agent did not answer within ${timeoutMs / 1000} s; is qemu-guest-agent running in the guest?`,
          ),
        ),
      timeoutMs,
    );
    sock.setEncoding('utf8');
    sock.on('error', (e) => done(unavailable(`The guest agent channel failed: ${e.message}`)));
    sock.on('connect', () =>
      sock.write(`${JSON.stringify({ execute: 'guest-sync', arguments: { id: syncId } })}\n`),
    );
    sock.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > MAX_REPLY_BYTES)
        return done(unavailable('The guest agent sent more than 4 MiB; refused.'));
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        // 0xFF is the agent's resync marker; it is never part of a message.
        const line = buf.slice(0, nl).replaceAll('\xff', '').trim();
        buf = buf.slice(nl + 1);
        if (!line) continue;
        let msg: unknown;
        try {
          msg = JSON.parse(line);
        } catch {
          continue; // noise from before the sync
        }
        if (!synced) {
          if (isObject(msg) && msg.return === syncId) {
            synced = true;
            sock.write(`${request}\n`);
          }
          continue;
        }
        if (isObject(msg) && ('return' in msg || 'error' in msg)) return done(null, msg);
        return done(unavailable('The guest agent answered with something that is not a reply.'));
      }
    });
  });
}
