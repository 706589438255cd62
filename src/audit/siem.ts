import { isIP } from 'node:net';
import { connect, type TLSSocket } from 'node:tls';
import type { Store } from '../store/database.js';
import { nowIso } from '../util/ids.js';
import { toCadf } from './cadf.js';
import { formatSyslog, frame, type SiemFormat } from './syslog.js';
import type { AuditWriter } from './writer.js';

/** Where and how audit events go (`bulwark serve --siem-target ...`, docs/siem.md). */
export interface SiemConfig {
  host: string;
  port: number;
  /** PEM CA the SIEM's certificate must chain to (pinned: the system store is not used). */
  ca: string;
  /** Client certificate and key (PEM) for mutual TLS; absent: server-authenticated TLS only. */
  cert?: string;
  key?: string;
  /** Name the SIEM's certificate must carry, when it differs from `host`. */
  serverName?: string;
  format: SiemFormat;
  /** This host's name in the syslog header and the CADF observer. */
  hostname: string;
  /** Cursor row name; one per destination. */
  destination?: string;
  /** Events per read from the store. */
  batchSize?: number;
  /**
   * Syslog over TLS has no acknowledgements: an event counts as delivered
   * once the connection has stayed up this long after it was written. Rows
   * written within the window before a disconnect are sent again.
   */
  confirmAfterMs?: number;
  /** How often to look for rows appended by other replicas (this process nudges on every append). */
  pollMs?: number;
  /** Longest wait between reconnect attempts (the wait doubles from 250 ms). */
  maxBackoffMs?: number;
  /**
   * A SIEM that stops reading (window full) or never finishes the handshake
   * is dropped after this long and reconnected to, rather than waited on forever.
   */
  ioTimeoutMs?: number;
}

export interface SiemStatus {
  destination: string;
  connected: boolean;
  /** Last audit sequence number confirmed delivered. */
  confirmedSeq: number;
  /** Last sequence number in the audit log. */
  headSeq: number;
  /** Events not yet confirmed (the queue depth). */
  lag: number;
  /** Seconds since the oldest unconfirmed event was appended (0 when none). */
  lagSeconds: number;
  /** When the oldest unconfirmed event was appended (null when none): checks judge its age on their own clock. */
  oldestUndeliveredAt: string | null;
  delivered: number;
  connectFailures: number;
  lastError: string | null;
}

/**
 * Forwards the audit log to a SIEM as syslog over TLS (RFC 5425), at least
 * once and in order. The audit table is the disk-backed queue: a persisted
 * cursor says how far the SIEM has got. The API only nudges this loop after
 * an append and never waits for it, so a down or slow SIEM delays delivery,
 * never a request.
 */
export class SiemForwarder {
  private stopped = false;
  private socket: TLSSocket | null = null;
  private wake: (() => void) | null = null;
  /** Set by a nudge that came while the loop was busy, so the next sleep does not miss it. */
  private dirty = false;
  private halt: (() => void) | null = null;
  private loop: Promise<void> | null = null;
  private unsubscribe: (() => void) | null = null;
  private poll: NodeJS.Timeout | undefined;
  private readonly st: SiemStatus;

  constructor(
    private readonly store: Store,
    private readonly cfg: SiemConfig,
  ) {
    this.st = {
      destination: cfg.destination ?? 'default',
      connected: false,
      confirmedSeq: 0,
      headSeq: 0,
      lag: 0,
      lagSeconds: 0,
      oldestUndeliveredAt: null,
      delivered: 0,
      connectFailures: 0,
      lastError: null,
    };
  }

  start(audit: AuditWriter): void {
    if (this.loop) return;
    this.unsubscribe = audit.onAppend(() => this.nudge());
    this.poll = setInterval(() => this.nudge(), this.cfg.pollMs ?? 2000);
    this.poll.unref();
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe?.();
    clearInterval(this.poll);
    this.socket?.destroy();
    this.nudge();
    this.halt?.();
    await this.loop;
  }

  /** Current delivery state, with the lag read from the store. */
  async status(): Promise<SiemStatus> {
    const head = await this.store.db
      .selectFrom('audit_head')
      .select('seq')
      .where('id', '=', 1)
      .executeTakeFirst();
    const confirmed = await this.readCursor();
    const oldest =
      confirmed < Number(head?.seq ?? 0)
        ? await this.store.db
            .selectFrom('audit_events')
            .select('time')
            .where('seq', '=', confirmed + 1)
            .executeTakeFirst()
        : undefined;
    this.st.headSeq = Number(head?.seq ?? 0);
    this.st.confirmedSeq = confirmed;
    this.st.lag = Math.max(0, this.st.headSeq - confirmed);
    this.st.lagSeconds = oldest ? Math.max(0, (Date.now() - Date.parse(oldest.time)) / 1000) : 0;
    this.st.oldestUndeliveredAt = oldest?.time ?? null;
    return { ...this.st };
  }

  private nudge(): void {
    this.dirty = true;
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      if (this.dirty) {
        this.dirty = false;
        resolve();
        return;
      }
      const t = setTimeout(() => {
        this.wake = null;
        resolve();
      }, ms);
      this.wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }

  private async readCursor(): Promise<number> {
    const row = await this.store.db
      .selectFrom('siem_cursors')
      .select('seq')
      .where('destination', '=', this.st.destination)
      .executeTakeFirst();
    return Number(row?.seq ?? 0);
  }

  private async saveCursor(seq: number): Promise<void> {
    const now = nowIso();
    await this.store.db
      .insertInto('siem_cursors')
      .values({ destination: this.st.destination, seq, updated_at: now })
      .onConflict((oc) => oc.column('destination').doUpdateSet({ seq, updated_at: now }))
      .execute();
  }

  private async run(): Promise<void> {
    let backoff = 250;
    while (!this.stopped) {
      try {
        const socket = await this.open();
        backoff = 250;
        await this.deliver(socket);
      } catch (err) {
        this.st.lastError = err instanceof Error ? err.message : String(err);
      } finally {
        this.st.connected = false;
        this.socket?.destroy();
        this.socket = null;
      }
      if (this.stopped) break;
      this.st.connectFailures += 1;
      // Appends do not cut the backoff short (an outage would turn every request into a connect attempt); stop does.
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, backoff);
        this.halt = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.halt = null;
      backoff = Math.min(backoff * 2, this.cfg.maxBackoffMs ?? 5000);
    }
  }

  private open(): Promise<TLSSocket> {
    return new Promise((resolve, reject) => {
      const { host, port, ca, cert, key, serverName } = this.cfg;
      const socket = connect({
        host,
        port,
        ca,
        ...(cert && key ? { cert, key } : {}),
        ...(serverName ? { servername: serverName } : isIP(host) ? {} : { servername: host }),
        minVersion: 'TLSv1.2',
        rejectUnauthorized: true,
      });
      this.socket = socket;
      socket.setNoDelay(true);
      socket.once('secureConnect', () => {
        socket.removeListener('error', reject);
        socket.setTimeout(0); // idle is normal once connected; writes have their own timeout
        this.st.connected = true;
        resolve(socket);
      });
      socket.once('error', reject);
      // Closed before the handshake finished (peer gone, or stop()): settle, never hang the loop.
      socket.once('close', () => reject(new Error('the connection closed during the TLS handshake')));
      socket.setTimeout(this.cfg.ioTimeoutMs ?? 30_000, () =>
        socket.destroy(new Error('the SIEM did not complete the TLS handshake in time')),
      );
    });
  }

  /** Sends rows after the cursor until the connection ends; returns (or throws) when it does. */
  private async deliver(socket: TLSSocket): Promise<void> {
    let broken: Error | null = null;
    const fail = (err: Error) => {
      broken ??= err;
      this.nudge();
    };
    socket.on('error', fail);
    socket.on('close', () => fail(new Error('the SIEM closed the connection')));
    // The peer says nothing on RFC 5425; anything it sends is ignored.
    socket.on('data', () => undefined);
    const confirmAfter = this.cfg.confirmAfterMs ?? 1000;
    const batch = this.cfg.batchSize ?? 200;
    // Sent but not yet confirmed: resent from the cursor if the connection drops within the window.
    const inflight: { seq: number; at: number }[] = [];
    let sent = await this.readCursor();
    const header = { hostname: this.cfg.hostname, appName: 'bulwark', procId: String(process.pid) };
    while (!this.stopped) {
      if (broken) throw broken;
      this.dirty = false;
      const rows = await this.store.db
        .selectFrom('audit_events')
        .selectAll()
        .where('seq', '>', sent)
        .orderBy('seq')
        .limit(batch)
        .execute();
      if (rows.length > 0) {
        const chunk = Buffer.concat(
          rows.map((r) => frame(formatSyslog(toCadf(r, this.cfg.hostname), this.cfg.format, header))),
        );
        await new Promise<void>((resolve, reject) => {
          const stuck = setTimeout(() => {
            const err = new Error('the SIEM stopped reading; reconnecting');
            socket.destroy(err);
            reject(err);
          }, this.cfg.ioTimeoutMs ?? 30_000);
          socket.write(chunk, (err) => {
            clearTimeout(stuck);
            if (err) reject(err);
            else resolve();
          });
        });
        if (broken) throw broken;
        sent = Number(rows[rows.length - 1]?.seq ?? sent);
        inflight.push({ seq: sent, at: Date.now() });
      }
      // Confirm what has survived the window on a live connection.
      let confirmed: number | null = null;
      while (inflight.length > 0 && Date.now() - (inflight[0]?.at ?? 0) >= confirmAfter) {
        confirmed = inflight.shift()?.seq ?? confirmed;
      }
      if (confirmed !== null && !broken) {
        const before = await this.readCursor();
        await this.saveCursor(confirmed);
        this.st.delivered += confirmed - before;
        this.st.confirmedSeq = confirmed;
      }
      if (rows.length === batch) continue;
      const next = inflight[0] ? Math.max(10, confirmAfter - (Date.now() - inflight[0].at)) : 60_000;
      await this.sleep(next);
    }
  }
}
