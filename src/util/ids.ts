import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';

/** Keystone-style id: 32 lowercase hex characters. */
export const keystoneId = (): string => randomUUID().replaceAll('-', '');

/** Nova/Neutron-style id: a dashed UUID. */
export const uuid = (): string => randomUUID();

export const sha256Hex = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex');

/** URL-safe random secret with `bytes` of entropy. */
export const randomSecret = (bytes = 32): string => randomBytes(bytes).toString('base64url');

/** Constant-time string comparison, so secrets are not leaked through timing. */
export function safeEqual(a: string, b: string): boolean {
  const ab = Buffer.from(a);
  const bb = Buffer.from(b);
  return ab.length === bb.length && timingSafeEqual(ab, bb);
}

export const nowIso = (): string => new Date().toISOString();
