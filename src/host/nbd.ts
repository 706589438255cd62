import { connect, type Socket } from 'node:net';
import { BulwarkError } from '../errors.js';

/**
 * A small NBD client (the NBD protocol, "fixed newstyle" negotiation with
 * NBD_OPT_GO, simple replies): enough to read and write a disk that
 * qemu-nbd exports on a unix socket. Requests may overlap; replies are
 * matched by handle.
 */
const IHAVEOPT = Buffer.from('IHAVEOPT');
const OPT_REPLY_MAGIC = 0x3e889045565a9n;
const REQUEST_MAGIC = 0x25609513;
const REPLY_MAGIC = 0x67446698;
const OPT_GO = 7;
const REP_ACK = 1;
const REP_INFO = 3;
const CMD = { read: 0, write: 1, disc: 2, flush: 3 } as const;
/** qemu-nbd's largest request is 32 MiB. */
export const NBD_MAX_REQUEST = 32 * 1024 * 1024;

const fail = (what: string) => new BulwarkError('Unavailable', `Disk export: ${what}`);

export class NbdClient {
  private buf: Buffer = Buffer.alloc(0);
  private waiter: (() => void) | null = null;
  private error: Error | null = null;
  private nextHandle = 1n;
  private readonly pending = new Map<
    bigint,
    { length: number; resolve(b: Buffer): void; reject(e: Error): void }
  >();
  private transmitting = false;

  private constructor(
    private readonly sock: Socket,
    /** The export's size in bytes. */
    public size = 0,
    public readOnly = true,
  ) {
    sock.on('data', (d: Buffer) => {
      this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
      if (this.transmitting) this.drainReplies();
      else this.waiter?.();
    });
    const die = (err: Error) => {
      this.error ??= err;
      this.waiter?.();
      for (const p of this.pending.values()) p.reject(this.error);
      this.pending.clear();
    };
    sock.on('error', die);
    sock.on('close', () => die(fail('the connection closed')));
  }

  static async connect(path: string, exportName: string): Promise<NbdClient> {
    const sock = await new Promise<Socket>((resolve, reject) => {
      const s = connect(path, () => resolve(s));
      s.once('error', reject);
    });
    const c = new NbdClient(sock);
    try {
      await c.handshake(exportName);
    } catch (err) {
      sock.destroy();
      throw err;
    }
    c.transmitting = true;
    c.drainReplies();
    return c;
  }

  private async take(n: number): Promise<Buffer> {
    while (this.buf.length < n) {
      if (this.error) throw this.error;
      await new Promise<void>((r) => {
        this.waiter = r;
      });
      this.waiter = null;
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  private async handshake(name: string): Promise<void> {
    const hello = await this.take(18);
    if (hello.subarray(0, 8).toString() !== 'NBDMAGIC' || !hello.subarray(8, 16).equals(IHAVEOPT))
      throw fail('not an NBD newstyle server');
    if ((hello.readUInt16BE(16) & 1) === 0) throw fail('the server does not speak fixed newstyle');
    const flags = Buffer.alloc(4);
    flags.writeUInt32BE(3); // FIXED_NEWSTYLE | NO_ZEROES
    const n = Buffer.from(name);
    const data = Buffer.alloc(4 + n.length + 2);
    data.writeUInt32BE(n.length);
    n.copy(data, 4);
    const head = Buffer.alloc(8);
    head.writeUInt32BE(OPT_GO);
    head.writeUInt32BE(data.length, 4);
    this.sock.write(Buffer.concat([flags, IHAVEOPT, head, data]));
    for (;;) {
      const r = await this.take(20);
      if (r.readBigUInt64BE(0) !== OPT_REPLY_MAGIC) throw fail('bad option reply');
      const type = r.readUInt32BE(12);
      const body = await this.take(r.readUInt32BE(16));
      if (type === REP_ACK) break;
      if (type & 0x80000000) throw fail(`the export was refused (${body.subarray(0).toString() || type})`);
      if (type === REP_INFO && body.readUInt16BE(0) === 0) {
        this.size = Number(body.readBigUInt64BE(2));
        this.readOnly = (body.readUInt16BE(10) & 2) !== 0;
      }
    }
  }

  private drainReplies(): void {
    for (;;) {
      if (this.buf.length < 16) return;
      if (this.buf.readUInt32BE(0) !== REPLY_MAGIC) {
        this.sock.destroy(fail('bad reply from the server'));
        return;
      }
      const handle = this.buf.readBigUInt64BE(8);
      const p = this.pending.get(handle);
      const err = this.buf.readUInt32BE(4);
      const need = err === 0 && p ? p.length : 0;
      if (this.buf.length < 16 + need) return;
      const data = Buffer.from(this.buf.subarray(16, 16 + need));
      this.buf = this.buf.subarray(16 + need);
      if (!p) continue;
      this.pending.delete(handle);
      if (err) p.reject(fail(`the server answered error ${err}`));
      else p.resolve(data);
    }
  }

  private request(type: number, offset: number, length: number, payload?: Buffer): Promise<Buffer> {
    if (this.error) return Promise.reject(this.error);
    const handle = this.nextHandle++;
    const h = Buffer.alloc(28);
    h.writeUInt32BE(REQUEST_MAGIC);
    h.writeUInt16BE(type, 6);
    h.writeBigUInt64BE(handle, 8);
    h.writeBigUInt64BE(BigInt(offset), 16);
    h.writeUInt32BE(length, 24);
    return new Promise((resolve, reject) => {
      this.pending.set(handle, { length: type === CMD.read ? length : 0, resolve, reject });
      this.sock.write(payload ? Buffer.concat([h, payload]) : h);
    });
  }

  read(offset: number, length: number): Promise<Buffer> {
    return this.request(CMD.read, offset, length);
  }

  async write(offset: number, data: Buffer): Promise<void> {
    for (let o = 0; o < data.length; o += NBD_MAX_REQUEST) {
      const part = data.subarray(o, o + NBD_MAX_REQUEST);
      await this.request(CMD.write, offset + o, part.length, part);
    }
  }

  async flush(): Promise<void> {
    await this.request(CMD.flush, 0, 0);
  }

  /** Disconnects cleanly (qemu-nbd then exits). */
  async close(): Promise<void> {
    if (!this.error) {
      const h = Buffer.alloc(28);
      h.writeUInt32BE(REQUEST_MAGIC);
      h.writeUInt16BE(CMD.disc, 6);
      await new Promise<void>((r) => this.sock.end(h, () => r()));
    }
    this.sock.destroy();
  }
}
