import type { Selectable } from 'kysely';
import { notFound } from '../errors.js';
import type { KeyManager } from '../keys/manager.js';
import type { Store } from '../store/database.js';
import type { CredentialsTable } from '../store/schema.js';
import { keystoneId, nowIso } from '../util/ids.js';
import { matchTotp, parseTotpBlob } from './totp.js';

/**
 * The key manager owner of credential blobs: no project has this id, so no
 * tenant can list or read them through the Barbican API.
 */
export const IDENTITY_KEY_OWNER = 'bulwark-identity';

/** Keystone credential types this cloud stores: TOTP secrets (EC2 and cert credentials have no use here). */
export const CREDENTIAL_TYPES = ['totp'] as const;
export type CredentialType = (typeof CREDENTIAL_TYPES)[number];

export type Credential = Selectable<CredentialsTable>;

/**
 * Keystone credentials. Every blob is sealed by the key manager (envelope
 * encryption under the KEK); the row keeps only the secret's id. A TOTP
 * secret is read back only to check a passcode and is never shown again
 * after it was created.
 */
export class CredentialService {
  constructor(
    private readonly store: Store,
    private readonly keys: KeyManager,
  ) {}

  private get db() {
    return this.store.db;
  }

  async create(input: {
    userId: string;
    projectId: string | null;
    type: CredentialType;
    blob: string;
  }): Promise<Credential> {
    const blob = parseTotpBlob(input.blob);
    const id = keystoneId();
    const secret = await this.keys.create(IDENTITY_KEY_OWNER, input.userId, {
      name: `${input.type} credential ${id}`,
      secretType: 'opaque',
      algorithm: null,
      bitLength: null,
      mode: null,
      contentType: 'text/plain',
      expiration: null,
      payload: Buffer.from(blob, 'utf8'),
    });
    const row: Credential = {
      id,
      user_id: input.userId,
      project_id: input.projectId,
      type: input.type,
      secret_id: secret.id,
      totp_last_step: null,
      created_at: nowIso(),
    };
    try {
      await this.db.insertInto('credentials').values(row).execute();
    } catch (e) {
      await this.keys.deleteKeyFor(IDENTITY_KEY_OWNER, secret.id);
      throw e;
    }
    return row;
  }

  list(filter: { userId?: string | undefined; type?: string | undefined } = {}): Promise<Credential[]> {
    let q = this.db.selectFrom('credentials').selectAll().orderBy('created_at').orderBy('id');
    if (filter.userId !== undefined) q = q.where('user_id', '=', filter.userId);
    if (filter.type !== undefined) q = q.where('type', '=', filter.type);
    return q.execute();
  }

  async get(id: string): Promise<Credential> {
    const c = await this.db.selectFrom('credentials').selectAll().where('id', '=', id).executeTakeFirst();
    if (!c) throw notFound('credential', id);
    return c;
  }

  async delete(id: string): Promise<void> {
    const c = await this.get(id);
    await this.db.deleteFrom('credentials').where('id', '=', id).execute();
    await this.keys.deleteKeyFor(IDENTITY_KEY_OWNER, c.secret_id);
  }

  /** Removes a user's credentials and their sealed blobs (before the user row goes). */
  async purgeUser(userId: string): Promise<void> {
    for (const c of await this.list({ userId })) await this.delete(c.id);
  }

  async hasTotp(userId: string): Promise<boolean> {
    return (await this.list({ userId, type: 'totp' })).length > 0;
  }

  /**
   * Checks a passcode against the user's TOTP credentials and consumes its
   * time step: the conditional update succeeds once per step and credential,
   * so a replayed code (even two requests racing) is refused.
   */
  async verifyTotp(userId: string, passcode: string, atMs = Date.now()): Promise<'ok' | 'wrong' | 'replay'> {
    let replay = false;
    for (const c of await this.list({ userId, type: 'totp' })) {
      const { payload } = await this.keys.payload(IDENTITY_KEY_OWNER, c.secret_id);
      const secret = payload.toString('utf8');
      payload.fill(0);
      const step = matchTotp(secret, passcode, atMs);
      if (step === null) continue;
      const r = await this.db
        .updateTable('credentials')
        .set({ totp_last_step: step })
        .where('id', '=', c.id)
        .where((eb) => eb.or([eb('totp_last_step', 'is', null), eb('totp_last_step', '<', step)]))
        .executeTakeFirst();
      if (Number(r.numUpdatedRows) === 1) return 'ok';
      replay = true;
    }
    return replay ? 'replay' : 'wrong';
  }
}
