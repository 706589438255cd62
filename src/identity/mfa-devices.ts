import { notFound } from '../errors.js';
import type { CredentialService } from './credentials.js';
import type { RecoveryCodeService } from './recovery-codes.js';
import type { WebAuthnService } from './webauthn.js';

/** The id the unused recovery codes are listed and revoked under (they are one set, made together). */
export const RECOVERY_CODES_DEVICE = 'recovery-codes';

/** One second factor of a user, as an admin sees it: what and when, never a secret or public key. */
export interface MfaDevice {
  id: string;
  type: 'totp' | 'webauthn' | 'recovery_codes';
  name: string | null;
  created_at: string | null;
  last_used_at: string | null;
  /** Recovery codes only: how many are unused. */
  remaining?: number;
}

/**
 * A user's second factors for the cloud admin (docs/identity.md, "Other
 * users' factors"): TOTP credentials, security keys and the recovery codes,
 * listed without their secrets, each revocable by its id. The user's own
 * routes (credentials, webauthn, recovery-codes) stay as they are.
 */
export class MfaDevices {
  constructor(
    private readonly credentials: CredentialService,
    private readonly webauthn: WebAuthnService,
    private readonly recovery: RecoveryCodeService,
  ) {}

  async list(userId: string): Promise<MfaDevice[]> {
    const [totp, keys, remaining] = await Promise.all([
      this.credentials.list({ userId, type: 'totp' }),
      this.webauthn.list(userId),
      this.recovery.remaining(userId),
    ]);
    return [
      ...totp.map((c) => ({
        id: c.id,
        type: 'totp' as const,
        name: null,
        created_at: c.created_at,
        last_used_at: null,
      })),
      ...keys.map((k) => ({
        id: k.id,
        type: 'webauthn' as const,
        name: k.name,
        created_at: k.created_at,
        last_used_at: k.last_used_at,
      })),
      ...(remaining > 0
        ? [
            {
              id: RECOVERY_CODES_DEVICE,
              type: 'recovery_codes' as const,
              name: null,
              created_at: null,
              last_used_at: null,
              remaining,
            },
          ]
        : []),
    ];
  }

  /** Revokes one of the user's factors; another user's (or none) is 404. Returns what was revoked. */
  async revoke(userId: string, id: string): Promise<MfaDevice> {
    const device = (await this.list(userId)).find((d) => d.id === id);
    if (!device) throw notFound('MFA device', id);
    if (device.type === 'totp') await this.credentials.delete(id);
    else if (device.type === 'webauthn') await this.webauthn.remove(userId, id);
    else await this.recovery.revoke(userId);
    return device;
  }
}
