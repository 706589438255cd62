import { HOTP, Secret } from 'otpauth';
import { badRequest } from '../errors.js';
import { safeEqual } from '../util/ids.js';

/** Keystone's TOTP: HMAC-SHA1, 6 digits, 30 s steps, the previous step also accepted (RFC 6238). */
export const TOTP_PERIOD_SECONDS = 30;
const DIGITS = 6;
/** RFC 4226 asks for at least 128 bits of shared secret; 26 base32 characters carry 130. */
const MIN_SECRET_BITS = 128;

export const totpStep = (atMs: number): number => Math.floor(atMs / 1000 / TOTP_PERIOD_SECONDS);

/**
 * A TOTP credential's blob: Keystone takes the bare base32 secret; a JSON
 * `{"secret": "..."}` is accepted too. Returns the normalised base32 secret.
 */
export function parseTotpBlob(blob: string): string {
  let secret = blob.trim();
  if (secret.startsWith('{')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(secret);
    } catch {
      throw badRequest('The TOTP credential blob is neither a base32 secret nor JSON {"secret": "..."}.');
    }
    const s = (parsed as { secret?: unknown }).secret;
    if (typeof s !== 'string') throw badRequest('The TOTP credential blob needs a "secret" string.');
    secret = s.trim();
  }
  secret = secret.replace(/=+$/, '').toUpperCase();
  if (!/^[A-Z2-7]+$/.test(secret))
    throw badRequest(
      'The TOTP secret must be base32 (A-Z, 2-7), e.g. from `base32 </dev/urandom | head -c 32`.',
    );
  if (secret.length * 5 < MIN_SECRET_BITS)
    throw badRequest(
      `The TOTP secret is ${secret.length * 5} bits; at least ${MIN_SECRET_BITS} are needed (26+ base32 characters).`,
    );
  return secret;
}

export function totpCode(secretBase32: string, step: number): string {
  return HOTP.generate({
    secret: Secret.fromBase32(secretBase32),
    algorithm: 'SHA1',
    digits: DIGITS,
    counter: step,
  });
}

/** The step `passcode` belongs to (now or the one before), or null when it matches neither. */
export function matchTotp(secretBase32: string, passcode: string, atMs: number): number | null {
  if (!/^\d{6}$/.test(passcode)) return null;
  const now = totpStep(atMs);
  for (const step of [now, now - 1]) {
    if (safeEqual(totpCode(secretBase32, step), passcode)) return step;
  }
  return null;
}
