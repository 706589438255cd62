import { createConnection, type Socket } from 'node:net';
import { BulwarkError } from '../errors.js';

/**
 * A QMP client (QEMU Machine Protocol, docs/interop/qmp-spec.rst) over a unix
 * socket: newline-delimited JSON, a greeting, `qmp_capabilities`, commands
 * with ids, replies matched by id, and asynchronous events.
 *
 * QEMU runs the guest's devices, so a compromised guest may own the QEMU
 * process on the other end: every message is checked before use, lines are
 * bounded, and anything malformed closes the connection.
 */

export type JsonObject = Record<string, unknown>;

export interface QmpGreeting {
  version: { qemu: { major: number; minor: number; micro: number }; package: string };
  capabilities: string[];
}

export interface QmpEvent {
  event: string;
  data: JsonObject;
  timestamp: { seconds: number; microseconds: number };
}

export interface QmpConnectOptions {
  /** Time allowed for the connection, the greeting and capability negotiation. Default 5 s. */
  connectTimeoutMs?: number;
  /** Default time allowed for each command's reply. Default 30 s. */
  commandTimeoutMs?: number;
  /** Longest line accepted from QEMU before the connection is dropped. Default 8 MiB. */
  maxLineBytes?: number;
}

/** A command QEMU refused (an `error` reply), a timeout, or a broken connection. */
export class QmpError extends BulwarkError {
  /** QMP's error class (`GenericError`, `CommandNotFound`, ...) or one of ours: `Timeout`, `Closed`, `Protocol`. */
  readonly errorClass: string;
  readonly command: string;
  constructor(command: string, errorClass: string, desc: string) {
    super('Internal', `QMP ${command}: ${desc}`);
    this.name = 'QmpError';
    this.errorClass = errorClass;
    this.command = command;
  }
}

export const isObject = (v: unknown): v is JsonObject =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);

/** One line from QEMU, classified; anything else is a protocol error. */
export type QmpMessage =
  | { kind: 'greeting'; greeting: QmpGreeting }
  | { kind: 'return'; id: unknown; value: unknown }
  | { kind: 'error'; id: unknown; errorClass: string; desc: string }
  | { kind: 'event'; event: QmpEvent };

/** Parses and validates one QMP line. Throws on anything that is not a QMP message. */
export function parseQmpMessage(line: string): QmpMessage {
  const msg: unknown = JSON.parse(line);
  if (!isObject(msg)) throw new Error('message is not a JSON object');
  if ('QMP' in msg) {
    const qmp = msg.QMP;
    if (!isObject(qmp) || !isObject(qmp.version) || !isObject(qmp.version.qemu))
      throw new Error('malformed greeting');
    const { major, minor, micro } = qmp.version.qemu;
    const pkg = qmp.version.package;
    const caps = qmp.capabilities;
    if (!isInt(major) || !isInt(minor) || !isInt(micro) || typeof pkg !== 'string' || !Array.isArray(caps))
      throw new Error('malformed greeting');
    return {
      kind: 'greeting',
      greeting: {
        version: { qemu: { major, minor, micro }, package: pkg },
        capabilities: caps.filter((c): c is string => typeof c === 'string'),
      },
    };
  }
  if ('return' in msg) return { kind: 'return', id: msg.id, value: msg.return };
  if ('error' in msg) {
    const err = msg.error;
    if (!isObject(err) || typeof err.class !== 'string' || typeof err.desc !== 'string')
      throw new Error('malformed error reply');
    return { kind: 'error', id: msg.id, errorClass: err.class, desc: err.desc };
  }
  if ('event' in msg) {
    const { event, data, timestamp } = msg;
    if (typeof event !== 'string' || !isObject(timestamp)) throw new Error('malformed event');
    const { seconds, microseconds } = timestamp;
    if (!isInt(seconds) || !isInt(microseconds)) throw new Error('malformed event timestamp');
    if (data !== undefined && !isObject(data)) throw new Error('malformed event data');
    return { kind: 'event', event: { event, data: data ?? {}, timestamp: { seconds, microseconds } } };
  }
  throw new Error('unknown message');
}

interface Pending {
  id: string;
  command: string;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

export class QmpClient {
  private buffer = '';
  private nextId = 1;
  private readonly pending = new Map<string, Pending>();
  private readonly eventListeners = new Set<(e: QmpEvent) => void>();
  private readonly closeListeners = new Set<(err: Error | undefined) => void>();
  private closedWith: Error | undefined | null = null;
  private greetingWaiter: { resolve: (g: QmpGreeting) => void; reject: (e: Error) => void } | null = null;
  private readonly commandTimeoutMs: number;
  private readonly maxLineBytes: number;
  private greetingValue: QmpGreeting | undefined;

  private constructor(
    private readonly socket: Socket,
    opts: QmpConnectOptions,
  ) {
    this.commandTimeoutMs = opts.commandTimeoutMs ?? 30_000;
    this.maxLineBytes = opts.maxLineBytes ?? 8 * 1024 * 1024;
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('error', (err) => this.shutdown(err));
    socket.on('close', () => this.shutdown(undefined));
  }

  /** Connects, reads the greeting and leaves capability negotiation mode. */
  static async connect(path: string, opts: QmpConnectOptions = {}): Promise<QmpClient> {
    const timeoutMs = opts.connectTimeoutMs ?? 5_000;
    const socket = createConnection({ path });
    const client = new QmpClient(socket, opts);
    const timer = setTimeout(
      () =>
        client.shutdown(new QmpError('connect', 'Timeout', `no greeting from ${path} in ${timeoutMs} ms`)),
      timeoutMs,
    );
    try {
      client.greetingValue = await new Promise<QmpGreeting>((resolve, reject) => {
        client.greetingWaiter = { resolve, reject };
      });
      await client.execute('qmp_capabilities', undefined, { timeoutMs });
      return client;
    } catch (err) {
      client.close();
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  get greeting(): QmpGreeting {
    if (!this.greetingValue) throw new Error('not connected');
    return this.greetingValue;
  }

  get closed(): boolean {
    return this.closedWith !== null;
  }

  /** Runs a command; resolves with its `return` value (unchecked: validate it), rejects with a QmpError. */
  execute(command: string, args?: JsonObject, opts: { timeoutMs?: number } = {}): Promise<unknown> {
    if (this.closedWith !== null)
      return Promise.reject(new QmpError(command, 'Closed', 'the QMP connection is closed'));
    const id = `bw-${this.nextId++}`;
    const timeoutMs = opts.timeoutMs ?? this.commandTimeoutMs;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new QmpError(command, 'Timeout', `no reply in ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { id, command, resolve, reject, timer });
      const msg = args === undefined ? { execute: command, id } : { execute: command, arguments: args, id };
      this.socket.write(`${JSON.stringify(msg)}\n`);
    });
  }

  /** `query-status`, validated. */
  async queryStatus(): Promise<{ status: string; running: boolean }> {
    const r = await this.execute('query-status');
    if (!isObject(r) || typeof r.status !== 'string' || typeof r.running !== 'boolean')
      throw new QmpError('query-status', 'Protocol', 'unexpected reply');
    return { status: r.status, running: r.running };
  }

  onEvent(listener: (e: QmpEvent) => void): () => void {
    this.eventListeners.add(listener);
    return () => this.eventListeners.delete(listener);
  }

  /** Called once when the connection ends: `err` is undefined for an orderly close. */
  onClose(listener: (err: Error | undefined) => void): () => void {
    if (this.closedWith !== null) {
      const err = this.closedWith;
      queueMicrotask(() => listener(err));
      return () => undefined;
    }
    this.closeListeners.add(listener);
    return () => this.closeListeners.delete(listener);
  }

  /** Waits for the connection to end (QEMU exited or closed it). */
  waitClosed(timeoutMs: number): Promise<boolean> {
    if (this.closed) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        off();
        resolve(false);
      }, timeoutMs);
      const off = this.onClose(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  close(): void {
    this.socket.destroy();
    this.shutdown(undefined);
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    let nl = this.buffer.indexOf('\n');
    while (nl >= 0) {
      const line = this.buffer.slice(0, nl).trim();
      this.buffer = this.buffer.slice(nl + 1);
      if (line) this.onLine(line);
      if (this.closedWith !== null) return;
      nl = this.buffer.indexOf('\n');
    }
    if (this.buffer.length > this.maxLineBytes) this.fail(`a line is longer than ${this.maxLineBytes} bytes`);
  }

  private onLine(line: string): void {
    let msg: QmpMessage;
    try {
      msg = parseQmpMessage(line);
    } catch (err) {
      this.fail(`bad message from QEMU (${(err as Error).message})`);
      return;
    }
    switch (msg.kind) {
      case 'greeting':
        if (!this.greetingWaiter) {
          this.fail('unexpected second greeting');
          return;
        }
        this.greetingWaiter.resolve(msg.greeting);
        this.greetingWaiter = null;
        return;
      case 'event':
        for (const l of [...this.eventListeners]) {
          try {
            l(msg.event);
          } catch {
            // A listener's failure must not break the protocol stream.
          }
        }
        return;
      case 'return':
      case 'error': {
        // QEMU answers in order; a reply without our id (e.g. to a command it
        // could not parse) belongs to the oldest outstanding command.
        const p = typeof msg.id === 'string' ? this.pending.get(msg.id) : this.pending.values().next().value;
        if (!p) return; // a late reply to a command that already timed out
        this.pending.delete(p.id);
        clearTimeout(p.timer);
        if (msg.kind === 'return') p.resolve(msg.value);
        else p.reject(new QmpError(p.command, msg.errorClass, msg.desc));
        return;
      }
    }
  }

  private fail(reason: string): void {
    const err = new QmpError('connection', 'Protocol', reason);
    this.socket.destroy();
    this.shutdown(err);
  }

  private shutdown(err: Error | undefined): void {
    if (this.closedWith !== null) return;
    this.closedWith = err;
    this.socket.destroy();
    const reason = err?.message ?? 'the QMP connection closed';
    this.greetingWaiter?.reject(err ?? new QmpError('connect', 'Closed', reason));
    this.greetingWaiter = null;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new QmpError(p.command, 'Closed', reason));
    }
    this.pending.clear();
    for (const l of [...this.closeListeners]) l(err);
    this.closeListeners.clear();
  }
}
