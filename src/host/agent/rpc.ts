import { Duplex } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { BulwarkError, type ErrorKind, ErrorKinds } from '../../errors.js';

/**
 * Calls both ways over one byte stream (the agent's mutual-TLS channel,
 * docs/multi-host.md): newline-delimited JSON frames, Buffers as base64.
 *
 * - `{t:'call', id, m, a}` → `{t:'ret', id, v}` or `{t:'err', id, kind, message}`
 * - `{t:'note', m, a}`: one-way (guest events)
 * - `{t:'data', s, b}` / `{t:'end', s}`: a byte stream (a serial console)
 */
type Frame =
  | { t: 'call'; id: number; m: string; a: unknown[] }
  | { t: 'ret'; id: number; v: unknown }
  | { t: 'err'; id: number; kind: string; message: string }
  | { t: 'note'; m: string; a: unknown[] }
  | { t: 'data'; s: number; b: Buffer }
  | { t: 'end'; s: number };

/**
 * A callable: its arguments are the frame's, decoded. The agent serves them to
 * the one authenticated control plane; the control plane's handlers (keys)
 * check what they are given.
 */
// biome-ignore lint/suspicious/noExplicitAny: handlers are typed by their own signatures (driver methods)
export type Handler = (...args: any[]) => unknown;

/** One frame may hold a console log or a forensic file list, never a disk. */
const MAX_FRAME = 32 * 1024 * 1024;

function replacer(this: Record<string, unknown>, key: string, value: unknown): unknown {
  const raw = this[key];
  return Buffer.isBuffer(raw) ? { $b: raw.toString('base64') } : value;
}

function reviver(_key: string, value: unknown): unknown {
  if (value && typeof value === 'object' && !Array.isArray(value)) {
    const o = value as Record<string, unknown>;
    if (typeof o.$b === 'string' && Object.keys(o).length === 1) return Buffer.from(o.$b, 'base64');
  }
  return value;
}

const isKind = (k: string): k is ErrorKind => Object.hasOwn(ErrorKinds, k);

export class RpcPeer {
  private next = 1;
  private readonly pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  private readonly streams = new Map<number, Duplex>();
  private readonly closeListeners: (() => void)[] = [];
  private buf = '';
  private closed = false;

  constructor(
    private readonly io: Duplex,
    /** What the other side may call; any other method is refused. */
    private readonly handlers: Record<string, Handler> = {},
    private readonly notes: Record<string, Handler> = {},
    private readonly timeoutMs = 600_000,
  ) {
    // Decoded here: an upgraded HTTP socket refuses setEncoding().
    const text = new StringDecoder('utf8');
    io.on('data', (chunk: Buffer) => this.onData(text.write(chunk)));
    io.once('close', () => this.shut(new BulwarkError('Unavailable', 'the agent channel closed')));
    io.once('error', (err: Error) => this.shut(err));
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  onClose(listener: () => void): void {
    if (this.closed) listener();
    else this.closeListeners.push(listener);
  }

  call<T = unknown>(m: string, ...a: unknown[]): Promise<T> {
    if (this.closed)
      return Promise.reject(new BulwarkError('Unavailable', 'the host agent is not connected'));
    const id = this.next++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new BulwarkError('Unavailable', `the host agent did not answer ${m} in ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      timer.unref();
      this.pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.send({ t: 'call', id, m, a });
    });
  }

  notify(m: string, ...a: unknown[]): void {
    if (!this.closed) this.send({ t: 'note', m, a });
  }

  /** A byte stream to the other side, whose id the other side learns from the call that opened it. */
  openStream(): { id: number; stream: Duplex } {
    const id = this.next++;
    return { id, stream: this.streamFor(id) };
  }

  /** The local end of a stream the other side opened. */
  streamFor(id: number): Duplex {
    const peer = this;
    const d = new Duplex({
      read() {},
      write(chunk: Buffer, _enc, cb) {
        peer.send({ t: 'data', s: id, b: chunk });
        cb();
      },
      final(cb) {
        peer.send({ t: 'end', s: id });
        cb();
      },
      destroy(err, cb) {
        if (peer.streams.delete(id)) peer.send({ t: 'end', s: id });
        cb(err);
      },
    });
    this.streams.set(id, d);
    return d;
  }

  close(): void {
    this.io.destroy();
  }

  private send(f: Frame): void {
    if (this.closed) return;
    this.io.write(`${JSON.stringify(f, replacer)}\n`);
  }

  private onData(chunk: string): void {
    this.buf += chunk;
    if (this.buf.length > MAX_FRAME) {
      this.shut(new BulwarkError('Unavailable', 'the agent channel sent an oversized frame'));
      this.io.destroy();
      return;
    }
    let nl = this.buf.indexOf('\n');
    while (nl >= 0) {
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 1);
      nl = this.buf.indexOf('\n');
      let f: Frame;
      try {
        f = JSON.parse(line, reviver) as Frame;
      } catch {
        this.shut(new BulwarkError('Unavailable', 'the agent channel sent a frame that is not JSON'));
        this.io.destroy();
        return;
      }
      this.dispatch(f);
    }
  }

  private dispatch(f: Frame): void {
    switch (f.t) {
      case 'call': {
        const h = Object.hasOwn(this.handlers, f.m) ? this.handlers[f.m] : undefined;
        if (!h || !Array.isArray(f.a)) {
          this.send({ t: 'err', id: f.id, kind: 'NotFound', message: `no such call ${String(f.m)}` });
          return;
        }
        Promise.resolve()
          .then(() => h(...f.a))
          .then(
            (v) => this.send({ t: 'ret', id: f.id, v: v ?? null }),
            (e: unknown) =>
              this.send({
                t: 'err',
                id: f.id,
                kind: e instanceof BulwarkError ? e.kind : 'Internal',
                message: e instanceof Error ? e.message : String(e),
              }),
          );
        return;
      }
      case 'ret':
      case 'err': {
        const p = this.pending.get(f.id);
        if (!p) return;
        this.pending.delete(f.id);
        if (f.t === 'ret') p.resolve(f.v);
        else p.reject(isKind(f.kind) ? new BulwarkError(f.kind, f.message) : new Error(f.message));
        return;
      }
      case 'note': {
        const h = Object.hasOwn(this.notes, f.m) ? this.notes[f.m] : undefined;
        if (h && Array.isArray(f.a)) void Promise.resolve(h(...f.a)).catch(() => undefined);
        return;
      }
      case 'data':
        if (Buffer.isBuffer(f.b)) this.streams.get(f.s)?.push(f.b);
        return;
      case 'end': {
        const s = this.streams.get(f.s);
        this.streams.delete(f.s);
        s?.push(null);
        return;
      }
    }
  }

  private shut(err: Error): void {
    if (this.closed) return;
    this.closed = true;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    for (const s of this.streams.values()) s.destroy();
    this.streams.clear();
    for (const l of this.closeListeners) l();
  }
}
