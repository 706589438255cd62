import { randomBytes } from 'node:crypto';

/** A fresh base32 TOTP secret of 160 bits, as `head -c 20 /dev/urandom | base32` makes. */
export const newSecret = () => {
  const a = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  return [...randomBytes(32)].map((b) => a[b % 32]).join('');
};
