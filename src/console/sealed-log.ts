import { closeSync, constants, fstatSync, openSync, readFileSync, writeSync } from 'node:fs';
import { aad, IV_BYTES, open, seal, TAG_BYTES } from '../keys/envelope.js';

/**
 * An append-only file of records sealed with AES-256-GCM (keys/envelope.ts)
 * under one data key: `u32 length | iv | tag | ciphertext` each. The AAD
 * binds every record to its file's id, its position and whether it is the
 * last, so reordering, dropping, splicing from another file or cutting the
 * end off all fail to open.
 */
const recordAad = (fileId: string, index: number, last: boolean) =>
  aad('bulwark-sealed-log-v1', fileId, String(index), last ? 'last' : 'more');

export class SealedLogWriter {
  private index = 0;
  private fd: number | null;
  /** Our own copy of the data key, zeroed when the log is closed. */
  private readonly key: Buffer;

  constructor(
    path: string,
    private readonly fileId: string,
    key: Buffer,
  ) {
    this.key = Buffer.from(key);
    this.fd = openSync(
      path,
      constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
      0o600,
    );
  }

  append(text: string, last = false): void {
    if (this.fd === null) throw new Error('sealed log is closed');
    const s = seal(this.key, Buffer.from(text, 'utf8'), recordAad(this.fileId, this.index, last));
    const len = Buffer.alloc(4);
    len.writeUInt32BE(IV_BYTES + TAG_BYTES + s.ct.length);
    writeSync(this.fd, Buffer.concat([len, s.iv, s.tag, s.ct]));
    this.index += 1;
  }

  /** Writes the closing record; the file cannot be appended to after. */
  close(final: string): void {
    if (this.fd === null) return;
    this.append(final, true);
    closeSync(this.fd);
    this.fd = null;
    this.key.fill(0);
  }
}

/**
 * Every record's plaintext, in order. Throws when any record fails to open;
 * `complete` says whether the closing record was there.
 */
export function readSealedLog(
  path: string,
  fileId: string,
  key: Buffer,
): { parts: string[]; complete: boolean } {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  let buf: Buffer;
  try {
    if (!fstatSync(fd).isFile()) throw new Error('not a regular file');
    buf = readFileSync(fd);
  } finally {
    closeSync(fd);
  }
  const parts: string[] = [];
  let off = 0;
  let complete = false;
  for (let i = 0; off < buf.length; i++) {
    if (complete) throw new Error('data after the closing record');
    if (off + 4 > buf.length) throw new Error('truncated record length');
    const len = buf.readUInt32BE(off);
    const body = buf.subarray(off + 4, off + 4 + len);
    if (body.length !== len || len < IV_BYTES + TAG_BYTES) throw new Error('truncated record');
    const sealed = {
      iv: body.subarray(0, IV_BYTES),
      tag: body.subarray(IV_BYTES, IV_BYTES + TAG_BYTES),
      ct: body.subarray(IV_BYTES + TAG_BYTES),
    };
    let plain: Buffer;
    try {
      plain = open(key, sealed, recordAad(fileId, i, false));
    } catch {
      plain = open(key, sealed, recordAad(fileId, i, true));
      complete = true;
    }
    parts.push(plain.toString('utf8'));
    off += 4 + len;
  }
  return { parts, complete };
}
