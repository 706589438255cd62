import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

/**
 * AES-256-GCM with a random 96-bit IV and a 128-bit tag: the one cipher for
 * both layers of the envelope (payload under the data key, data key under the
 * KEK). Pure: no I/O, nothing logged.
 */
export interface Sealed {
  iv: Buffer;
  ct: Buffer;
  tag: Buffer;
}

export const KEY_BYTES = 32;
export const IV_BYTES = 12;
export const TAG_BYTES = 16;

/**
 * Additional authenticated data from labelled parts, each length-prefixed so
 * no two different lists encode the same bytes ("ab"+"c" differs from "a"+"bc").
 */
export function aad(...parts: string[]): Buffer {
  return Buffer.concat(
    parts.flatMap((p) => {
      const b = Buffer.from(p, 'utf8');
      const len = Buffer.alloc(4);
      len.writeUInt32BE(b.length);
      return [len, b];
    }),
  );
}

/** The payload's AAD: bound to its secret and its owner, so a row moved to another secret or project fails. */
export const payloadAad = (secretId: string, projectId: string) =>
  aad('bulwark-secret-payload-v1', secretId, projectId);

/** The wrapped data key's AAD: bound to its secret and the KEK (id and version) that wrapped it. */
export const dekAad = (secretId: string, kekId: string, kekVersion: number) =>
  aad('bulwark-secret-dek-v1', secretId, kekId, String(kekVersion));

export function seal(key: Buffer, plaintext: Buffer, additional: Buffer): Sealed {
  if (key.length !== KEY_BYTES) throw new Error('AES-256-GCM needs a 32-byte key');
  const iv = randomBytes(IV_BYTES);
  const c = createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
  c.setAAD(additional);
  const ct = Buffer.concat([c.update(plaintext), c.final()]);
  return { iv, ct, tag: c.getAuthTag() };
}

/** Throws (without saying more) when the key, the ciphertext, the tag or the AAD do not match. */
export function open(key: Buffer, s: Sealed, additional: Buffer): Buffer {
  if (key.length !== KEY_BYTES || s.iv.length !== IV_BYTES || s.tag.length !== TAG_BYTES)
    throw new Error('sealed data is malformed');
  const d = createDecipheriv('aes-256-gcm', key, s.iv, { authTagLength: TAG_BYTES });
  d.setAAD(additional);
  d.setAuthTag(s.tag);
  try {
    return Buffer.concat([d.update(s.ct), d.final()]);
  } catch {
    throw new Error('authentication failed: the ciphertext, its tag or its context was altered');
  }
}
