import { BulwarkError } from '../errors.js';
import type { Sealed } from './envelope.js';

/**
 * A key-encryption key provider. It wraps and unwraps data keys with one of
 * its versions and never hands out the KEK itself. Several versions exist
 * only while a rotation runs: every stored data key names the version that
 * wrapped it, so readers keep working until the last row is re-wrapped and
 * the old version is retired.
 */
export interface KekProvider {
  /** Stable name of this KEK, bound into every wrapped key's AAD (e.g. `file`, `pkcs11:bulwark/bulwark-kek`). */
  readonly id: string;
  /** The version new data keys are wrapped with (the newest). */
  current(): number;
  /** Every version still available, oldest first. */
  versions(): number[];
  wrap(dek: Buffer, aad: Buffer, version: number): Promise<Sealed>;
  unwrap(wrapped: Sealed, aad: Buffer, version: number): Promise<Buffer>;
  /** Creates the next version, which becomes current; returns its number. */
  addVersion(): Promise<number>;
  /** Destroys a version that no data key uses any more. Never the current one. */
  retire(version: number): Promise<void>;
  close(): Promise<void>;
}

/** The KEK cannot be used: the key manager answers 503 and never falls back to anything weaker. */
export const kekUnavailable = (why: string) =>
  new BulwarkError('Unavailable', 'The key manager cannot reach its key-encryption key; try again later.', {
    auditReason: `KEK unavailable: ${why}`,
  });

export interface KekConfig {
  kind: 'file' | 'pkcs11';
  /** pkcs11 only. */
  pkcs11Module?: string | undefined;
  pkcs11TokenLabel?: string | undefined;
  pkcs11PinFile?: string | undefined;
  /** Label prefix of the key objects on the token (default `bulwark-kek`). */
  pkcs11KeyLabel?: string | undefined;
}
