import { randomBytes } from 'node:crypto';
import {
  closeSync,
  fsyncSync,
  lstatSync,
  openSync,
  readFileSync,
  renameSync,
  type Stats,
  writeSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { KEY_BYTES, open, type Sealed, seal } from './envelope.js';
import type { KekProvider } from './kek.js';

const LINE = /^bulwark-kek v([1-9]\d{0,8}) ([A-Za-z0-9+/]{43}=)$/;

/**
 * The default KEK: a 0600, root-owned file in the data dir (`kek`), the only
 * key file Bulwark keeps. Each line is `bulwark-kek v<N> <base64 of 32 random
 * bytes>`; there is one line except while a rotation runs. Replaced
 * atomically (write, fsync, rename). Refuses to load a file that anyone else
 * could read or that is not root's.
 */
export class FileKek implements KekProvider {
  readonly id = 'file';
  private readonly keys = new Map<number, Buffer>();

  private constructor(private readonly path: string) {}

  static path(dataDir: string): string {
    return join(dataDir, 'kek');
  }

  /** Loads the KEK file, creating it (one version, 32 random bytes) on first start. */
  static open(dataDir: string, opts: { requireRoot?: boolean } = {}): FileKek {
    const kek = new FileKek(FileKek.path(dataDir));
    let st: Stats | undefined;
    try {
      st = lstatSync(kek.path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    if (!st) {
      kek.keys.set(1, randomBytes(KEY_BYTES));
      kek.persist();
      return kek;
    }
    if (!st.isFile()) throw new Error(`KEK ${kek.path} is not a regular file; refusing to start`);
    if ((st.mode & 0o777) !== 0o600)
      throw new Error(
        `KEK ${kek.path} has mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}, not 0600; refusing to start (fix: chmod 600 ${kek.path})`,
      );
    if ((opts.requireRoot ?? true) && st.uid !== 0)
      throw new Error(
        `KEK ${kek.path} is owned by uid ${st.uid}, not root; refusing to start (fix: chown root ${kek.path})`,
      );
    const lines = readFileSync(kek.path, 'utf8').split('\n').filter(Boolean);
    for (const line of lines) {
      const m = LINE.exec(line);
      if (!m?.[1] || !m[2]) throw new Error(`KEK ${kek.path} is malformed; refusing to start`);
      kek.keys.set(Number(m[1]), Buffer.from(m[2], 'base64'));
    }
    if (kek.keys.size === 0) throw new Error(`KEK ${kek.path} holds no key; refusing to start`);
    return kek;
  }

  current(): number {
    return Math.max(...this.keys.keys());
  }

  versions(): number[] {
    return [...this.keys.keys()].sort((a, b) => a - b);
  }

  private key(version: number): Buffer {
    const k = this.keys.get(version);
    if (!k) throw new Error(`KEK version ${version} is not available`);
    return k;
  }

  async wrap(dek: Buffer, aad: Buffer, version: number): Promise<Sealed> {
    return seal(this.key(version), dek, aad);
  }

  async unwrap(wrapped: Sealed, aad: Buffer, version: number): Promise<Buffer> {
    return open(this.key(version), wrapped, aad);
  }

  async addVersion(): Promise<number> {
    const v = this.current() + 1;
    this.keys.set(v, randomBytes(KEY_BYTES));
    try {
      this.persist();
    } catch (e) {
      this.keys.delete(v);
      throw e;
    }
    return v;
  }

  async retire(version: number): Promise<void> {
    if (version === this.current()) throw new Error('the current KEK version cannot be retired');
    const old = this.keys.get(version);
    if (!old) return;
    this.keys.delete(version);
    this.persist();
    old.fill(0);
  }

  async close(): Promise<void> {
    for (const k of this.keys.values()) k.fill(0);
    this.keys.clear();
  }

  /** Atomic replace: a crash leaves the old file or the new one, never a torn one. */
  private persist(): void {
    const body = this.versions()
      .map((v) => `bulwark-kek v${v} ${this.key(v).toString('base64')}\n`)
      .join('');
    const tmp = `${this.path}.tmp-${randomBytes(6).toString('hex')}`;
    const fd = openSync(tmp, 'wx', 0o600);
    try {
      writeSync(fd, body);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, this.path);
    const dir = openSync(dirname(this.path), 'r');
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
  }
}
