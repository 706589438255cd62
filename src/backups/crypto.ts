import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  type KeyObject,
  randomBytes,
} from 'node:crypto';
import { BulwarkError, badRequest } from '../errors.js';

/**
 * Backup cryptography (docs/backups.md), node:crypto only:
 * - every chunk and index is sealed with AES-256-GCM under a data key made
 *   for one backup;
 * - that data key is wrapped for the repository's recovery (recipient) public
 *   key: X25519 with a fresh ephemeral key, HKDF-SHA256, AES-256-GCM (an
 *   ECIES/HPKE-style base mode). Only the recovery private key unwraps it;
 * - chunks are named by HMAC-SHA256 of their plaintext under a separate
 *   chunk-id key, so names leak nothing to whoever holds the store.
 */

const WRAP_INFO = Buffer.from('bulwark-backup-key-wrap-v1');
export const CHUNK_MAGIC = Buffer.from('BWC1');
export const INDEX_MAGIC = Buffer.from('BWI1');
const IV = 12;
const TAG = 16;

/** Thrown for anything that does not authenticate: tampered, truncated, wrong key. */
export const integrityError = (what: string) =>
  new BulwarkError('Conflict', `Backup integrity check failed: ${what}. Nothing was written.`);

/** A recovery key pair: the public half goes to the daemon, the private half offline (PKCS#8 PEM). */
export function generateRecoveryKey(): { publicKey: string; privateKeyPem: string } {
  const { publicKey, privateKey } = generateKeyPairSync('x25519');
  return {
    publicKey: rawPublic(publicKey).toString('base64'),
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
}

const rawPublic = (k: KeyObject): Buffer => Buffer.from(String(k.export({ format: 'jwk' }).x), 'base64url');

/** The 32-byte X25519 public key, base64; refused with 400 if it is anything else. */
export function parsePublicKey(b64: string): KeyObject {
  const raw = Buffer.from(b64, 'base64');
  if (raw.length !== 32 || raw.toString('base64') !== b64)
    throw badRequest('The recovery public key must be 32 bytes of X25519, base64.');
  return createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: raw.toString('base64url') }, format: 'jwk' });
}

/** A recovery private key from its PEM; 400 if it is not an X25519 private key. */
export function parseRecoveryKey(pem: string): KeyObject {
  try {
    const k = createPrivateKey({ key: pem, format: 'pem' });
    if (k.asymmetricKeyType !== 'x25519') throw new Error('not x25519');
    return k;
  } catch {
    throw badRequest('The recovery key must be the X25519 private key (PKCS#8 PEM) made at repository init.');
  }
}

/** The public half of a recovery private key, base64 (to check it is the repository's). */
export const publicOf = (privateKey: KeyObject): string =>
  rawPublic(createPublicKey(privateKey)).toString('base64');

export interface WrappedKey {
  v: 1;
  id: string;
  eph: string;
  iv: string;
  ct: string;
  tag: string;
}

function wrapKek(shared: Buffer, eph: Buffer, recipient: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', shared, Buffer.concat([eph, recipient]), WRAP_INFO, 32));
}

/** Wraps `key` for the recipient; `id` is bound as associated data. */
export function wrapForRecipient(key: Buffer, id: string, recipientB64: string): WrappedKey {
  const recipient = parsePublicKey(recipientB64);
  const eph = generateKeyPairSync('x25519');
  const ephRaw = rawPublic(eph.publicKey);
  const kek = wrapKek(
    diffieHellman({ privateKey: eph.privateKey, publicKey: recipient }),
    ephRaw,
    Buffer.from(recipientB64, 'base64'),
  );
  const iv = randomBytes(IV);
  const c = createCipheriv('aes-256-gcm', kek, iv).setAAD(Buffer.from(id));
  const ct = Buffer.concat([c.update(key), c.final()]);
  kek.fill(0);
  return {
    v: 1,
    id,
    eph: ephRaw.toString('base64'),
    iv: iv.toString('base64'),
    ct: ct.toString('base64'),
    tag: c.getAuthTag().toString('base64'),
  };
}

export function unwrapWithRecoveryKey(w: WrappedKey, privateKey: KeyObject): Buffer {
  const eph = Buffer.from(w.eph, 'base64');
  const kek = wrapKek(
    diffieHellman({ privateKey, publicKey: parsePublicKey(w.eph) }),
    eph,
    Buffer.from(publicOf(privateKey), 'base64'),
  );
  try {
    const d = createDecipheriv('aes-256-gcm', kek, Buffer.from(w.iv, 'base64'))
      .setAAD(Buffer.from(w.id))
      .setAuthTag(Buffer.from(w.tag, 'base64'));
    return Buffer.concat([d.update(Buffer.from(w.ct, 'base64')), d.final()]);
  } catch {
    throw integrityError(`data key ${w.id} does not open with this recovery key`);
  } finally {
    kek.fill(0);
  }
}

/** A chunk's name: HMAC-SHA256 of its plaintext under the repository's chunk-id key, hex. */
export const chunkId = (idKey: Buffer, plain: Buffer): string =>
  createHmac('sha256', idKey).update(plain).digest('hex');

/** `magic | keyId (16) | iv | AES-256-GCM(body) | tag`, with `magic | keyId | name` authenticated. */
export function seal(magic: Buffer, key: Buffer, keyId: string, name: string, body: Buffer): Buffer {
  const kid = Buffer.from(keyId, 'hex');
  const iv = randomBytes(IV);
  const c = createCipheriv('aes-256-gcm', key, iv).setAAD(Buffer.concat([magic, kid, Buffer.from(name)]));
  return Buffer.concat([magic, kid, iv, c.update(body), c.final(), c.getAuthTag()]);
}

/** The key id a sealed object names (to pick its data key), or an integrity error. */
export function sealedKeyId(magic: Buffer, blob: Buffer, name: string): string {
  if (blob.length < magic.length + 16 + IV + TAG || !blob.subarray(0, magic.length).equals(magic))
    throw integrityError(`${name} is not a sealed backup object`);
  return blob.subarray(magic.length, magic.length + 16).toString('hex');
}

export function open(magic: Buffer, key: Buffer, name: string, blob: Buffer): Buffer {
  const kid = Buffer.from(sealedKeyId(magic, blob, name), 'hex');
  const at = magic.length + 16;
  try {
    const d = createDecipheriv('aes-256-gcm', key, blob.subarray(at, at + IV))
      .setAAD(Buffer.concat([magic, kid, Buffer.from(name)]))
      .setAuthTag(blob.subarray(blob.length - TAG));
    return Buffer.concat([d.update(blob.subarray(at + IV, blob.length - TAG)), d.final()]);
  } catch {
    throw integrityError(`${name} does not authenticate (tampered or damaged)`);
  }
}
