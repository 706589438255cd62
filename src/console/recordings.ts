import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { type AuditWriter, systemEvent } from '../audit/writer.js';
import type { ServerService } from '../compute/servers.js';
import { BulwarkError, conflict, notFound } from '../errors.js';
import type { HypervisorDriver } from '../host/hypervisor.js';
import type { KeyService } from '../keys/contract.js';
import type { AuthContext } from '../policy/context.js';
import type { Store } from '../store/database.js';
import type { ConsoleRecordingsTable } from '../store/schema.js';
import { nowIso, uuid } from '../util/ids.js';
import { CastEvents, castHeader } from './asciicast.js';
import { readSealedLog, SealedLogWriter } from './sealed-log.js';

export const DEFAULT_RETENTION_DAYS = 90;

export type RecordingMeta = Omit<ConsoleRecordingsTable, 'key_id' | 'file' | 'interrupted'> & {
  interrupted: boolean;
};

/** One open console: bytes typed go to the guest, bytes from the guest to `onOutput`; both recorded. */
export interface ConsoleSession {
  recordingId: string;
  input(data: Buffer): void;
  onOutput(listener: (data: Buffer) => void): void;
  /** Called once when the guest side ends (server stopped); the session is then closed. */
  onEnd(listener: () => void): void;
  /** Ends the session; `why` goes into the audit record (e.g. the server was quarantined). */
  close(why?: string): Promise<void>;
}

const meta = (r: ConsoleRecordingsTable): RecordingMeta => {
  const { key_id: _k, file: _f, ...rest } = r;
  return {
    ...rest,
    width: Number(r.width),
    height: Number(r.height),
    bytes_in: Number(r.bytes_in),
    bytes_out: Number(r.bytes_out),
    interrupted: Number(r.interrupted) === 1,
  };
};

/**
 * Interactive serial consoles, every session recorded (guide §12): asciicast
 * v2 with input and output, sealed record by record under a per-recording
 * data key from the key manager, owned by the admin project so no member of
 * the recorded project can read it. There is no way to open a console
 * without a recording: the recording starts before the first byte flows,
 * and a recording that cannot be started refuses the session.
 */
export class ConsoleService {
  /** How often an open session's token and role are checked again (api/console.ts); a revoked grant ends it. */
  recheckMs = 10_000;
  /** Servers with a console open: QEMU's serial socket serves one client at a time. */
  private readonly open = new Map<string, ConsoleSession>();

  constructor(
    private readonly store: Store,
    private readonly servers: ServerService,
    private readonly driver: HypervisorDriver,
    private readonly keys: KeyService,
    private readonly audit: AuditWriter,
    private readonly opts: {
      dir: string;
      retentionDays: number;
      /** The project that owns recording keys: the cloud's admin project. */
      keyOwner: () => Promise<string>;
    },
  ) {}

  get retentionDays(): number {
    return this.opts.retentionDays;
  }

  /** Sessions open now. */
  get openSessions(): number {
    return this.open.size;
  }

  async connect(
    auth: AuthContext,
    serverId: string,
    size: { cols: number; rows: number },
  ): Promise<ConsoleSession> {
    // Scoped (another project's server is 404) and refused while quarantined (evidence).
    const server = await this.servers.getUnquarantined(auth, serverId);
    if (this.open.has(server.id))
      throw conflict(`A console session is already open on server ${server.id}; close it first.`);
    const guest = await this.driver.openConsole(server.id);
    try {
      const session = await this.record(auth, server, guest, size);
      this.open.set(server.id, session);
      return session;
    } catch (err) {
      guest.destroy();
      throw err;
    }
  }

  private async record(
    auth: AuthContext,
    server: { id: string; name: string; project_id: string },
    guest: Duplex,
    size: { cols: number; rows: number },
  ): Promise<ConsoleSession> {
    const id = uuid();
    const owner = await this.opts.keyOwner();
    const keyId = await this.keys.createKey(owner, {
      name: `console recording ${id}`,
      bits: 256,
      purpose: 'console-recording',
    });
    const key = await this.keys.readKeyFor(owner, keyId);
    mkdirSync(this.opts.dir, { recursive: true, mode: 0o700 });
    const file = `${id}.cast.sealed`;
    const started = new Date();
    const writer = new SealedLogWriter(join(this.opts.dir, file), id, key);
    key.fill(0);
    writer.append(
      castHeader({
        width: size.cols,
        height: size.rows,
        startedAt: started,
        title: `${server.name} (${server.id}) by ${auth.userName}`,
      }),
    );
    await this.store.db
      .insertInto('console_recordings')
      .values({
        id,
        server_id: server.id,
        server_name: server.name,
        project_id: server.project_id,
        user_id: auth.userId,
        user_name: auth.userName,
        started_at: started.toISOString(),
        ended_at: null,
        width: size.cols,
        height: size.rows,
        bytes_in: 0,
        bytes_out: 0,
        key_id: keyId,
        file,
        interrupted: 0,
      })
      .execute();
    await this.audit.append(
      systemEvent({
        action: 'console:connect',
        reason: `console session on ${server.name}, recording ${id}`,
        target: { type: 'server', id: server.id },
        actor: auth,
      }),
    );
    const events = new CastEvents(started.getTime());
    const counts = { in: 0, out: 0 };
    const outputs: ((d: Buffer) => void)[] = [];
    const ends: (() => void)[] = [];
    let closed: Promise<void> | null = null;
    /** Records one event; false (and the session ends) when it cannot be recorded: nothing flows unrecorded. */
    const note = (kind: 'o' | 'i', data: Buffer): boolean => {
      try {
        const line = events.line(kind, data);
        if (line) writer.append(line);
        return true;
      } catch (err) {
        void close(`the recording could not be written: ${(err as Error).message}`).catch(() => undefined);
        return false;
      }
    };
    guest.on('data', (d: Buffer) => {
      if (closed) return;
      counts.out += d.length;
      if (note('o', d)) for (const l of outputs) l(d);
    });
    const close = (why?: string): Promise<void> => {
      closed ??= (async () => {
        guest.destroy();
        let complete = true;
        try {
          writer.close('');
        } catch {
          complete = false; // no closing record: kept, and replayed, as interrupted
        }
        this.open.delete(server.id);
        // Audited first: a recording shows as ended only once its end is in the audit log.
        await this.audit.append(
          systemEvent({
            action: 'console:disconnect',
            reason: `console session on ${server.name} ended${why ? ` (${why})` : ''}, recording ${id} (${counts.in} bytes in, ${counts.out} out)`,
            target: { type: 'server', id: server.id },
            actor: auth,
          }),
        );
        const ended = nowIso();
        await this.store.db
          .updateTable('console_recordings')
          .set({ ended_at: ended, bytes_in: counts.in, bytes_out: counts.out, interrupted: complete ? 0 : 1 })
          .where('id', '=', id)
          .execute();
      })();
      return closed;
    };
    const guestEnded = () => {
      void close().catch(() => undefined);
      for (const l of ends.splice(0)) l();
    };
    guest.once('end', guestEnded);
    guest.once('close', guestEnded);
    guest.on('error', guestEnded);
    return {
      recordingId: id,
      input: (data) => {
        if (closed) return;
        counts.in += data.length;
        if (note('i', data)) guest.write(data);
      },
      onOutput: (l) => void outputs.push(l),
      onEnd: (l) => void ends.push(l),
      close,
    };
  }

  async list(filter: { serverId?: string; userId?: string; limit?: number } = {}): Promise<RecordingMeta[]> {
    let q = this.store.db
      .selectFrom('console_recordings')
      .selectAll()
      .orderBy('started_at', 'desc')
      .limit(filter.limit ?? 100);
    if (filter.serverId) q = q.where('server_id', '=', filter.serverId);
    if (filter.userId) q = q.where('user_id', '=', filter.userId);
    return (await q.execute()).map(meta);
  }

  private async row(id: string): Promise<ConsoleRecordingsTable> {
    const r = await this.store.db
      .selectFrom('console_recordings')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst();
    if (!r) throw notFound('console recording', id);
    return r;
  }

  async get(id: string): Promise<RecordingMeta> {
    return meta(await this.row(id));
  }

  /** The decrypted asciicast. Refuses (409) a file that was altered; a session still open cannot be replayed yet. */
  async replay(id: string): Promise<string> {
    const r = await this.row(id);
    if (r.ended_at === null)
      throw conflict(`Console recording ${id} is still being recorded; replay it after the session ends.`);
    const owner = await this.opts.keyOwner();
    const key = await this.keys.readKeyFor(owner, r.key_id);
    try {
      const { parts, complete } = readSealedLog(join(this.opts.dir, r.file), r.id, key);
      if (!complete && Number(r.interrupted) !== 1) throw new Error('the closing record is missing');
      return parts.join('');
    } catch (err) {
      throw new BulwarkError(
        'Conflict',
        `Console recording ${id} cannot be decrypted: it was altered or cut short (${(err as Error).message}).`,
      );
    } finally {
      key.fill(0);
    }
  }

  /** Recordings left open by a daemon that stopped: ended now, marked interrupted. */
  async recover(): Promise<number> {
    const r = await this.store.db
      .updateTable('console_recordings')
      .set({ ended_at: nowIso(), interrupted: 1 })
      .where('ended_at', 'is', null)
      .executeTakeFirst();
    return Number(r.numUpdatedRows);
  }

  /** Deletes recordings that ended more than the retention ago: key first (that shreds the file), then file and row. */
  async prune(now = Date.now()): Promise<number> {
    const cutoff = new Date(now - this.opts.retentionDays * 86_400_000).toISOString();
    const old = await this.store.db
      .selectFrom('console_recordings')
      .selectAll()
      .where('ended_at', 'is not', null)
      .where('ended_at', '<', cutoff)
      .execute();
    if (old.length === 0) return 0;
    const owner = await this.opts.keyOwner();
    for (const r of old) {
      await this.keys.deleteKeyFor(owner, r.key_id);
      rmSync(join(this.opts.dir, r.file), { force: true });
      await this.store.db.deleteFrom('console_recordings').where('id', '=', r.id).execute();
    }
    await this.audit.append(
      systemEvent({
        action: 'console:recordings_pruned',
        reason: `${old.length} console recording(s) older than ${this.opts.retentionDays} days deleted: ${old.map((r) => r.id).join(', ')}`,
      }),
    );
    return old.length;
  }

  /** Ends the session open on a server, if any (the server is being quarantined). */
  async cut(serverId: string, why: string): Promise<void> {
    await this.open.get(serverId)?.close(why);
  }

  /** Ends every open session (daemon shutdown), so each recording gets its closing record. */
  async closeAll(): Promise<void> {
    await Promise.all([...this.open.values()].map((s) => s.close().catch(() => undefined)));
  }
}
