import { badRequest, unauthorized } from '../errors.js';
import { certFingerprint, csrPublicKey, type PemPair, signCsr } from '../pki/ca.js';
import type { AuthContext } from '../policy/context.js';
import type { Store } from '../store/database.js';
import { nowIso, randomSecret, sha256Hex, uuid } from '../util/ids.js';
import { type HostReport, HostService } from './hosts.js';

/** Join tokens live an hour unless the admin asks otherwise; never more than a day. */
export const JOIN_TOKEN_TTL = { default: 3600, max: 86_400 } as const;

export interface JoinToken {
  id: string;
  token: string;
  hostName: string;
  expiresAt: string;
  /** `sha256:<hex>` of the platform CA certificate: the agent pins it before sending the token. */
  caHash: string;
}

/**
 * Agent enrollment (docs/multi-host.md): an admin makes a one-time,
 * expiring token for one host name; the agent sends it with a PKCS#10
 * request and gets a client certificate for that name from the platform CA.
 * Only the token's SHA-256 is stored; a token works once.
 */
export class HostEnrollment {
  constructor(
    private readonly store: Store,
    private readonly hosts: HostService,
    private readonly ca: PemPair,
  ) {}

  get caHash(): string {
    return `sha256:${certFingerprint(this.ca.certPem)}`;
  }

  async createToken(auth: AuthContext, hostName: string, ttlSeconds: number = JOIN_TOKEN_TTL.default) {
    HostService.checkName(hostName);
    if (!Number.isSafeInteger(ttlSeconds) || ttlSeconds < 1 || ttlSeconds > JOIN_TOKEN_TTL.max)
      throw badRequest(`A join token lives 1 to ${JOIN_TOKEN_TTL.max} seconds, not ${ttlSeconds}.`);
    const token = `bwjoin_${randomSecret(32)}`;
    const row = {
      id: uuid(),
      token_hash: sha256Hex(token),
      host_name: hostName,
      created_by: auth.userId,
      expires_at: new Date(Date.now() + ttlSeconds * 1000).toISOString(),
      used_at: null,
      created_at: nowIso(),
    };
    await this.store.db.insertInto('host_join_tokens').values(row).execute();
    return {
      id: row.id,
      token,
      hostName,
      expiresAt: row.expires_at,
      caHash: this.caHash,
    } satisfies JoinToken;
  }

  /**
   * Redeems a token: the request is checked first (a bad one does not burn
   * the token), then the token is spent atomically (one UPDATE that only an
   * unused, unexpired token matches), then the certificate is issued and the
   * host registered with its fingerprint, replacing any earlier certificate.
   */
  async join(
    token: string,
    csrPem: string,
    report: HostReport & { zone?: string; aggregates?: string[] },
  ): Promise<{ hostName: string; certPem: string; caPem: string }> {
    await csrPublicKey(csrPem).catch((err: Error) => {
      throw badRequest(`The certificate request was refused: ${err.message}.`);
    });
    const now = nowIso();
    const spent = await this.store.db
      .updateTable('host_join_tokens')
      .set({ used_at: now })
      .where('token_hash', '=', sha256Hex(token))
      .where('used_at', 'is', null)
      .where('expires_at', '>', now)
      .returning('host_name')
      .executeTakeFirst();
    if (!spent)
      throw unauthorized(
        'The join token is not valid: it is unknown, already used or expired. Create a new one with `bulwark host join-token create --host NAME`.',
      );
    const certPem = await signCsr(this.ca, csrPem, { commonName: spent.host_name, usage: 'client' });
    await this.hosts.register({
      name: spent.host_name,
      ...report,
      certFingerprint: certFingerprint(certPem),
    });
    return { hostName: spent.host_name, certPem, caPem: this.ca.certPem };
  }
}
