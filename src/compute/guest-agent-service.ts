import type { AuditWriter } from '../audit/writer.js';
import { conflict, forbidden, notFound } from '../errors.js';
import type { HypervisorDriver } from '../host/hypervisor.js';
import type { AuthContext } from '../policy/context.js';
import type { Store } from '../store/database.js';
import { nowIso, uuid } from '../util/ids.js';
import {
  assertGuestAgentAllowed,
  filterGuestAgentCommand,
  type GuestAgentGrant,
  guestAgentAuditEvent,
  validateGrant,
} from './guest-agent.js';
import type { ServerService } from './servers.js';

export interface GrantView {
  id: string;
  server_id: string;
  commands: string[];
  granted_by: string;
  granted_by_name: string;
  reason: string;
  expires_at: string;
  created_at: string;
}

/**
 * The daemon's side of the guest agent (docs/passthrough-and-agent.md): every
 * request passes the filter (read-only monitoring by default; guest-exec and
 * guest-file-* only under an admin's live grant for that server), every
 * decision is audited before anything reaches the guest, and only what the
 * filter re-serialised is sent.
 */
export class GuestAgentService {
  constructor(
    private readonly store: Store,
    private readonly servers: ServerService,
    private readonly driver: HypervisorDriver,
    private readonly audit: AuditWriter,
  ) {}

  private get db() {
    return this.store.db;
  }

  /** Live grants for one server (not revoked; expired ones are kept so the filter can say so). */
  private async grantsFor(serverId: string): Promise<GrantView[]> {
    const rows = await this.db
      .selectFrom('guest_agent_grants')
      .selectAll()
      .where('server_id', '=', serverId)
      .where('revoked_at', 'is', null)
      .orderBy('created_at')
      .execute();
    return rows.map(({ revoked_at: _, ...r }) => ({ ...r, commands: JSON.parse(r.commands) as string[] }));
  }

  async execute(auth: AuthContext, serverId: string, request: unknown): Promise<unknown> {
    const s = await this.servers.get(auth, serverId);
    if (!this.servers.hasGuestAgent(s))
      throw conflict(
        `Server ${s.id} has no guest agent: it is off unless the flavor (hw:qemu_guest_agent=true) or the image ` +
          '(hw_qemu_guest_agent=yes) asks, and it takes effect when the server is created.',
      );
    const grants: GuestAgentGrant[] = (await this.grantsFor(s.id)).map((g) => ({
      serverId: g.server_id,
      commands: g.commands,
      grantedBy: g.granted_by_name,
      expiresAt: g.expires_at,
    }));
    const decision = filterGuestAgentCommand({ serverId: s.id, request, grants });
    // Audited before the guest sees anything (fail closed: no audit, no command).
    await this.audit.append(guestAgentAuditEvent(decision, auth));
    const forward = assertGuestAgentAllowed(decision);
    if (s.status !== 'ACTIVE')
      throw conflict(`Server ${s.id} is ${s.status}; the guest agent answers only while it runs.`);
    return this.driver.guestAgent(s.id, forward);
  }

  async grants(auth: AuthContext, serverId: string): Promise<GrantView[]> {
    const s = await this.servers.get(auth, serverId);
    return this.grantsFor(s.id);
  }

  async grant(
    auth: AuthContext,
    serverId: string,
    input: { commands: string[]; expiresAt: string; reason: string },
  ): Promise<GrantView> {
    if (!auth.isAdmin) throw forbidden('Only a cloud administrator grants guest agent commands.');
    const s = await this.servers.get(auth, serverId);
    validateGrant({
      serverId: s.id,
      commands: input.commands,
      grantedBy: auth.userId,
      expiresAt: input.expiresAt,
    });
    const row = {
      id: uuid(),
      server_id: s.id,
      commands: JSON.stringify([...new Set(input.commands)]),
      granted_by: auth.userId,
      granted_by_name: auth.userName,
      reason: input.reason,
      expires_at: new Date(input.expiresAt).toISOString(),
      created_at: nowIso(),
      revoked_at: null,
    };
    await this.db.insertInto('guest_agent_grants').values(row).execute();
    const { revoked_at: _, ...view } = row;
    return { ...view, commands: JSON.parse(row.commands) as string[] };
  }

  async revoke(auth: AuthContext, serverId: string, grantId: string): Promise<void> {
    if (!auth.isAdmin) throw forbidden('Only a cloud administrator revokes guest agent grants.');
    const s = await this.servers.get(auth, serverId);
    const r = await this.db
      .updateTable('guest_agent_grants')
      .set({ revoked_at: nowIso() })
      .where('id', '=', grantId)
      .where('server_id', '=', s.id)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    if (Number(r.numUpdatedRows) !== 1) throw notFound('guest agent grant', grantId);
  }
}
