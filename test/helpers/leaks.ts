import { readdirSync } from 'node:fs';
import { join } from 'node:path';

/** Every regular file under `dir` (links are not followed). */
export function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...filesUnder(p));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

/** The forms a secret could be recovered from: its bytes, hex and base64. */
export const secretForms = (secret: Buffer): Buffer[] => [
  secret,
  Buffer.from(secret.toString('hex')),
  Buffer.from(secret.toString('base64')),
];

/** True when `haystack` holds `secret` in any of its recoverable forms. */
export const leaks = (haystack: Buffer, secret: Buffer): boolean =>
  secretForms(secret).some((f) => haystack.includes(f));
