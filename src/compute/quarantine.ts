import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type AuditWriter, type Outcome, systemEvent } from '../audit/writer.js';
import { badRequest, conflict } from '../errors.js';
import type { ForensicFile } from '../host/forensics.js';
import type { HypervisorDriver } from '../host/hypervisor.js';
import type { NetworkService } from '../network/networks.js';
import type { AuthContext } from '../policy/context.js';
import type { Store } from '../store/database.js';
import { nowIso } from '../util/ids.js';
import type { Server, ServerService } from './servers.js';

export type QuarantineStep = 'suspend' | 'isolate' | 'snapshot';

export interface QuarantineRecord {
  reason: string;
  by: { userId: string; userName: string };
  at: string;
  /** Each step in the order it ran; a failed step does not stop the next (isolation must happen). */
  steps: { step: QuarantineStep; outcome: Outcome; at: string; detail: string }[];
  snapshot: { dir: string; files: ForensicFile[] } | null;
}

export const quarantineOf = (s: Pick<Server, 'quarantine'>): QuarantineRecord | null =>
  s.quarantine === null ? null : (JSON.parse(s.quarantine) as QuarantineRecord);

/**
 * Incident response (the guide's "Suspected VM Compromise"): suspend the
 * guest, cut all its network access at the host, then take a forensic
 * snapshot (memory and disk, hashed), in that order, each step audited.
 * Only an administrator quarantines or lifts (policy/rules.ts); while it
 * holds, the owner cannot act on the server (servers.ts).
 */
export class QuarantineService {
  constructor(
    private readonly store: Store,
    private readonly servers: ServerService,
    private readonly networks: NetworkService,
    private readonly driver: HypervisorDriver,
    private readonly audit: AuditWriter,
    /** Root-only directory for forensic snapshots (`<data>/forensics`). */
    private readonly forensicsDir: string,
  ) {}

  /** Told first when a server is quarantined (console sessions end; platform.ts wires it). */
  onQuarantine?: (serverId: string) => Promise<void>;

  async quarantine(auth: AuthContext, id: string, reason: string): Promise<QuarantineRecord> {
    const why = reason.trim();
    if (!why) throw badRequest('A quarantine needs a --reason: it goes into the audit log and the evidence.');
    const s = await this.servers.get(auth, id);
    const rec: QuarantineRecord = {
      reason: why,
      by: { userId: auth.userId, userName: auth.userName },
      at: nowIso(),
      steps: [],
      snapshot: null,
    };
    // Claimed atomically: two admins cannot quarantine the same server at once.
    const claimed = await this.store.db
      .updateTable('servers')
      .set({ quarantine: JSON.stringify(rec), updated_at: nowIso() })
      .where('id', '=', s.id)
      .where('quarantine', 'is', null)
      .executeTakeFirst();
    if (Number(claimed.numUpdatedRows) !== 1) throw conflict(`Server ${s.id} is already quarantined.`);
    // Whoever is on the server's console is cut off before anything else: the guest is now evidence.
    await this.onQuarantine?.(s.id).catch(() => undefined);
    // A build or action in flight would race the steps; let it finish first.
    await this.servers.settled(s.id);

    await this.step(auth, s, rec, 'suspend', async () => {
      const state = await this.driver.state(s.id);
      if (state !== 'running') return `the guest was ${state}; nothing to suspend`;
      await this.driver.pause(s.id);
      await this.servers.refreshState(s.id);
      return 'guest paused (RAM kept for the snapshot)';
    });
    await this.step(auth, s, rec, 'isolate', async () => {
      const ports = (await this.servers.ports.nics(s.id)).map((n) => n.portId);
      await this.networks.setQuarantine(ports, true);
      return ports.length ? `all traffic of ports ${ports.join(', ')} dropped at the host` : 'no ports';
    });
    await this.step(auth, s, rec, 'snapshot', async () => {
      const dir = join(this.forensicsDir, s.id, rec.at.replace(/[:.]/g, '-'));
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      const files = await this.driver.forensicSnapshot(s.id, dir);
      writeFileSync(
        join(dir, 'manifest.json'),
        `${JSON.stringify(
          {
            server: { id: s.id, name: s.name, project_id: s.project_id, image_id: s.image_id },
            reason: rec.reason,
            by: rec.by,
            at: rec.at,
            files,
          },
          null,
          2,
        )}\n`,
        { mode: 0o600 },
      );
      rec.snapshot = { dir, files };
      return files.map((f) => `${f.name} sha256:${f.sha256}`).join(', ');
    });
    return rec;
  }

  /** Admin only (policy): restores the network; the guest stays paused until someone unpauses it. */
  async lift(auth: AuthContext, id: string): Promise<void> {
    const s = await this.servers.get(auth, id);
    if (s.quarantine === null) throw conflict(`Server ${s.id} is not quarantined.`);
    const ports = (await this.servers.ports.nics(s.id)).map((n) => n.portId);
    await this.networks.setQuarantine(ports, false);
    await this.store.db
      .updateTable('servers')
      .set({ quarantine: null, updated_at: nowIso() })
      .where('id', '=', s.id)
      .execute();
  }

  async show(auth: AuthContext, id: string): Promise<QuarantineRecord | null> {
    return quarantineOf(await this.servers.get(auth, id));
  }

  private async step(
    auth: AuthContext,
    s: Server,
    rec: QuarantineRecord,
    step: QuarantineStep,
    work: () => Promise<string>,
  ): Promise<void> {
    let outcome: Outcome = 'success';
    let detail: string;
    try {
      detail = await work();
    } catch (err) {
      outcome = 'failure';
      detail = err instanceof Error ? err.message : String(err);
    }
    rec.steps.push({ step, outcome, at: nowIso(), detail });
    await this.store.db
      .updateTable('servers')
      .set({ quarantine: JSON.stringify(rec) })
      .where('id', '=', s.id)
      .execute();
    await this.audit.append(
      systemEvent({
        action: `compute:servers:quarantine:${step}`,
        reason: `${rec.reason}: ${detail}`,
        target: { type: 'server', id: s.id },
        outcome,
        actor: auth,
      }),
    );
  }
}
