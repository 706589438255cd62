import { randomInt } from 'node:crypto';
import type { Store } from '../store/database.js';
import { keystoneId, nowIso } from '../util/ids.js';
import type { ProjectRef, UserRef } from './config.js';
import type { LoginService } from './login.js';
import { hashPassword, verifyPassword } from './passwords.js';

export const RECOVERY_CODE_COUNT = 10;
const ALPHABET = 'abcdefghjkmnpqrstuvwxyz23456789'; // no 0/o, 1/l/i: read off paper

/** xxxx-xxxx-xxxx from 31 symbols: about 59 bits, with lockout and single use on top. */
const newCode = () =>
  Array.from({ length: 3 }, () =>
    Array.from({ length: 4 }, () => ALPHABET[randomInt(ALPHABET.length)]).join(''),
  ).join('-');

/**
 * One-time recovery codes: the second factor for a user who lost their
 * device. Shown once when generated (which replaces any earlier set), kept
 * as argon2 hashes, each accepted once, with the password, through the one
 * LoginService.
 */
export class RecoveryCodeService {
  constructor(
    private readonly store: Store,
    private readonly login: LoginService,
  ) {}

  private get db() {
    return this.store.db;
  }

  async generate(userId: string): Promise<string[]> {
    const codes = Array.from({ length: RECOVERY_CODE_COUNT }, newCode);
    const rows = await Promise.all(
      codes.map(async (c) => ({
        id: keystoneId(),
        user_id: userId,
        code_hash: await hashPassword(c),
        created_at: nowIso(),
        used_at: null,
      })),
    );
    await this.db.transaction().execute(async (tx) => {
      await tx.deleteFrom('recovery_codes').where('user_id', '=', userId).execute();
      await tx.insertInto('recovery_codes').values(rows).execute();
    });
    return codes;
  }

  /** Deletes every code the user has (an admin revoking them); returns how many were unused. */
  async revoke(userId: string): Promise<number> {
    const unused = await this.remaining(userId);
    await this.db.deleteFrom('recovery_codes').where('user_id', '=', userId).execute();
    return unused;
  }

  async remaining(userId: string): Promise<number> {
    const r = await this.db
      .selectFrom('recovery_codes')
      .select((e) => e.fn.countAll().as('n'))
      .where('user_id', '=', userId)
      .where('used_at', 'is', null)
      .executeTakeFirst();
    return Number(r?.n ?? 0);
  }

  loginWithCode(input: { user: UserRef; password: string; code: string; scope?: ProjectRef | undefined }) {
    return this.login.login({
      methods: ['password'],
      password: { user: input.user, password: input.password },
      scope: input.scope,
      extra: {
        method: 'recovery_code',
        check: (userId) => this.consume(userId, input.code.trim().toLowerCase()),
      },
    });
  }

  /** Marks the matching unused code used (once: the update is conditional); null when it was accepted. */
  private async consume(userId: string, code: string): Promise<string | null> {
    const unused = await this.db
      .selectFrom('recovery_codes')
      .select(['id', 'code_hash'])
      .where('user_id', '=', userId)
      .where('used_at', 'is', null)
      .execute();
    for (const c of unused) {
      if (!(await verifyPassword(c.code_hash, code))) continue;
      const r = await this.db
        .updateTable('recovery_codes')
        .set({ used_at: nowIso() })
        .where('id', '=', c.id)
        .where('used_at', 'is', null)
        .executeTakeFirst();
      return Number(r.numUpdatedRows) === 1 ? null : 'recovery code already used';
    }
    return unused.length === 0 ? 'no unused recovery codes' : 'wrong recovery code';
  }
}
