import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { Transform } from 'node:stream';
import { BulwarkError } from '../errors.js';

/**
 * A memory snapshot's RAM and device state, encrypted as it streams from QEMU
 * to disk (QEMU 7.2 cannot store vmstate in a LUKS qcow2: it asserts on the
 * unaligned writes). AES-256-GCM under a key derived (HKDF-SHA256) from the
 * server's own disk key and the snapshot's tag, so the state is readable with
 * exactly the key that reads the disk, and no new key is stored anywhere.
 *
 * File: `BWMS1\n`, 12-byte IV, ciphertext, 16-byte GCM tag.
 */
const MAGIC = Buffer.from('BWMS1\n');

const stateKey = (diskKey: Buffer, tag: string): Buffer =>
  Buffer.from(hkdfSync('sha256', diskKey, Buffer.from('bulwark memory snapshot'), Buffer.from(tag), 32));

/** A stream that turns QEMU's migration stream into the encrypted state file's bytes. */
export function stateCipher(diskKey: Buffer, tag: string): Transform {
  const key = stateKey(diskKey, tag);
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  key.fill(0);
  let started = false;
  const head = (t: Transform) => {
    if (!started) t.push(Buffer.concat([MAGIC, iv]));
    started = true;
  };
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      head(this);
      cb(null, cipher.update(chunk));
    },
    flush(cb) {
      head(this);
      const last = cipher.final();
      cb(null, Buffer.concat([last, cipher.getAuthTag()]));
    },
  });
}

/** Decrypts a whole state file (tests, and a future revert); a wrong key or a changed byte throws. */
export function decryptState(file: Buffer, diskKey: Buffer, tag: string): Buffer {
  if (file.length < MAGIC.length + 28 || !file.subarray(0, MAGIC.length).equals(MAGIC))
    throw new BulwarkError('Conflict', 'Not a Bulwark memory snapshot.');
  const iv = file.subarray(MAGIC.length, MAGIC.length + 12);
  const key = stateKey(diskKey, tag);
  try {
    const d = createDecipheriv('aes-256-gcm', key, iv);
    d.setAuthTag(file.subarray(file.length - 16));
    return Buffer.concat([d.update(file.subarray(MAGIC.length + 12, file.length - 16)), d.final()]);
  } catch {
    throw new BulwarkError('Conflict', 'The memory snapshot does not open with this key (or was changed).');
  } finally {
    key.fill(0);
  }
}
