import type { Selectable } from 'kysely';
import { type AuditWriter, systemEvent } from '../audit/writer.js';
import { badRequest, conflict, forbidden, notFound } from '../errors.js';
import type { AuthContext } from '../policy/context.js';
import type { Store } from '../store/database.js';
import type { BreakGlassReviewsTable } from '../store/schema.js';
import { keystoneId, nowIso, randomSecret } from '../util/ids.js';
import { DEFAULT_DOMAIN_ID, loginFailed } from './config.js';
import { hashPassword, verifyPassword } from './passwords.js';
import type { IdentityService } from './service.js';

/** The auth method a break-glass token records; it counts as a second factor (the sealed envelope). */
export const BREAK_GLASS_METHOD = 'break_glass';
/** A break-glass session is short: 15 minutes, not renewable. */
export const BREAK_GLASS_TTL_SECONDS = 900;
/**
 * Every break-glass audit record's reason starts with this, and its action
 * with `break_glass:`: SIEM forwarding maps them to severity critical (RFC 5424 severity 2).
 */
export const CRITICAL = 'severity=critical';

export type BreakGlassReview = Selectable<BreakGlassReviewsTable>;

/**
 * Break-glass access (guide section 16): an emergency admin whose credential
 * is generated once and handed over sealed for offline storage. Using it
 * needs a stated reason, gives a short session, raises a critical audit
 * event and opens a review item an admin must close with a post-incident note.
 */
export class BreakGlassService {
  constructor(
    private readonly store: Store,
    private readonly identity: IdentityService,
    private readonly audit: AuditWriter,
  ) {}

  private get db() {
    return this.store.db;
  }

  /** Creates the emergency admin; the returned secret is never stored or shown again. */
  async createAccount(caller: AuthContext, name: string) {
    const secret = `bg-${randomSecret(32)}`;
    const user = await this.identity.createUser({
      name,
      domainId: DEFAULT_DOMAIN_ID,
      description: 'Break-glass emergency administrator (sealed credential; every use is reviewed)',
    });
    const adminRole = (await this.identity.listRoles({ name: 'admin' }))[0];
    const project = (
      await this.identity.listProjects({
        name: this.identity.config.adminProjectName,
        domainId: DEFAULT_DOMAIN_ID,
      })
    )[0];
    if (!adminRole || !project) throw new Error('the admin role or project is missing');
    await this.identity.grant(project.id, user.id, adminRole.id);
    const account = {
      id: keystoneId(),
      user_id: user.id,
      secret_hash: await hashPassword(secret),
      created_by: caller.userId,
      created_at: nowIso(),
    };
    await this.db.insertInto('break_glass_accounts').values(account).execute();
    return { account: { id: account.id, name, user_id: user.id, created_at: account.created_at }, secret };
  }

  listAccounts() {
    return this.db
      .selectFrom('break_glass_accounts as a')
      .innerJoin('users as u', 'u.id', 'a.user_id')
      .select(['a.id', 'u.name', 'a.user_id', 'a.created_at', 'a.created_by'])
      .orderBy('u.name')
      .execute();
  }

  async deleteAccount(caller: AuthContext, id: string) {
    const a = await this.db
      .selectFrom('break_glass_accounts')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst();
    if (!a) throw notFound('break-glass account', id);
    await this.identity.deleteUser(a.user_id, caller.userId);
    await this.db.deleteFrom('break_glass_accounts').where('id', '=', id).execute();
  }

  /** Opens an emergency session: a short admin token, a critical audit event and an open review item. */
  async use(input: { name: string; secret: string; reason: string; sourceIp: string | null }) {
    const reason = input.reason.trim();
    if (reason.length < 10)
      throw badRequest('State why break-glass access is needed (at least 10 characters); it is reviewed.');
    const row = await this.db
      .selectFrom('break_glass_accounts as a')
      .innerJoin('users as u', 'u.id', 'a.user_id')
      .select(['a.id', 'a.user_id', 'a.secret_hash', 'u.name'])
      .where('u.name', '=', input.name)
      .where('u.domain_id', '=', DEFAULT_DOMAIN_ID)
      .executeTakeFirst();
    const ok = await verifyPassword(row?.secret_hash ?? null, input.secret);
    if (!row || !ok) {
      await this.audit.append(
        systemEvent({
          action: 'break_glass:use',
          outcome: 'denied',
          reason: `${CRITICAL}: failed break-glass attempt for ${input.name} from ${input.sourceIp ?? 'unknown'} (${row ? 'wrong secret' : 'no such account'}): ${reason}`,
          target: { type: 'break_glass_account', id: row?.id ?? input.name },
        }),
      );
      throw loginFailed(row ? 'break-glass: wrong secret' : 'break-glass: no such account');
    }
    const projectId = await this.identity.resolveScope(row.user_id, {
      name: this.identity.config.adminProjectName,
      domain: { id: DEFAULT_DOMAIN_ID },
    });
    const { token, auth } = await this.identity.mintToken(
      row.user_id,
      projectId,
      [BREAK_GLASS_METHOD],
      BREAK_GLASS_TTL_SECONDS,
    );
    const review: BreakGlassReview = {
      id: keystoneId(),
      account_id: row.id,
      user_name: row.name,
      reason,
      source_ip: input.sourceIp,
      token_audit_id: auth.auditId,
      opened_at: auth.issuedAt,
      expires_at: auth.expiresAt,
      closed_at: null,
      closed_by: null,
      note: null,
    };
    await this.db.insertInto('break_glass_reviews').values(review).execute();
    // Fail closed: no audit record, no emergency session.
    try {
      await this.audit.append(
        systemEvent({
          action: 'break_glass:use',
          reason: `${CRITICAL}: break-glass session for ${row.name} from ${input.sourceIp ?? 'unknown'} until ${auth.expiresAt}; review ${review.id}: ${reason}`,
          target: { type: 'break_glass_review', id: review.id },
          actor: auth,
        }),
      );
    } catch (e) {
      await this.identity.revokeToken(token);
      throw e;
    }
    return { token, auth, review };
  }

  listReviews(filter: { open?: boolean | undefined } = {}) {
    let q = this.db.selectFrom('break_glass_reviews').selectAll().orderBy('opened_at', 'desc');
    if (filter.open === true) q = q.where('closed_at', 'is', null);
    if (filter.open === false) q = q.where('closed_at', 'is not', null);
    return q.execute();
  }

  async getReview(id: string): Promise<BreakGlassReview> {
    const r = await this.db
      .selectFrom('break_glass_reviews')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst();
    if (!r) throw notFound('break-glass review', id);
    return r;
  }

  /** Closes a review with the post-incident note; never by the emergency account itself. */
  async closeReview(caller: AuthContext, id: string, note: string): Promise<BreakGlassReview> {
    const r = await this.getReview(id);
    if (r.closed_at !== null) throw conflict(`Review ${id} was closed at ${r.closed_at} by ${r.closed_by}.`);
    if (caller.methods.includes(BREAK_GLASS_METHOD))
      throw forbidden('A break-glass session cannot close its own review; another administrator must.');
    if (note.trim().length < 10)
      throw badRequest(
        'Write the post-incident note (at least 10 characters): what happened and what was done.',
      );
    await this.db
      .updateTable('break_glass_reviews')
      .set({ closed_at: nowIso(), closed_by: caller.userName, note: note.trim() })
      .where('id', '=', id)
      .where('closed_at', 'is', null)
      .execute();
    return this.getReview(id);
  }
}
