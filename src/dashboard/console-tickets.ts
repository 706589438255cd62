import { randomBytes } from 'node:crypto';
import { unauthorized } from '../errors.js';
import { sha256Hex } from '../util/ids.js';

/** The subprotocol prefix a browser offers a console ticket in, beside `bulwark.console`. */
export const TICKET_PROTOCOL = 'bulwark.ticket.';
/** Long enough to open the WebSocket right after asking; a ticket is spent by its first use. */
export const TICKET_TTL_MS = 30_000;

interface Ticket {
  token: string;
  userId: string;
  serverId: string;
  origin: string;
  expires: number;
}

/** The ticket a browser offered as a `bulwark.ticket.TICKET` subprotocol, if any. */
export function ticketFromProtocols(header: string | string[] | undefined): string | undefined {
  const offered = [header ?? []].flat().flatMap((h) => h.split(','));
  const t = offered.map((p) => p.trim()).find((p) => p.startsWith(TICKET_PROTOCOL));
  return t ? t.slice(TICKET_PROTOCOL.length) : undefined;
}

/**
 * Console tickets for the dashboard (docs/dashboard.md). The page's session is
 * an HttpOnly cookie that counts only with the CSRF header, and a browser
 * WebSocket can send no header; so the page asks (POST, CSRF-checked) for a
 * ticket bound to its session's token, its user, one server and its Origin,
 * and offers it as a subprotocol on the upgrade. A ticket works once, for 30 s,
 * only from the same Origin and for the same server; a foreign page can neither
 * get one (no CSRF header) nor use one (its Origin differs). Kept in memory
 * (hashed): a daemon restart voids them, which only costs a retry.
 */
export class ConsoleTickets {
  private readonly tickets = new Map<string, Ticket>();

  issue(t: Omit<Ticket, 'expires'>): { ticket: string; expires_at: string } {
    const now = Date.now();
    for (const [k, v] of this.tickets) if (v.expires <= now) this.tickets.delete(k);
    const ticket = randomBytes(32).toString('base64url');
    const expires = now + TICKET_TTL_MS;
    this.tickets.set(sha256Hex(ticket), { ...t, expires });
    return { ticket, expires_at: new Date(expires).toISOString() };
  }

  /** The session token a ticket stands for; the ticket is spent whether or not it fits. */
  redeem(ticket: string, at: { serverId: string; origin: string | undefined }): Ticket {
    const key = sha256Hex(ticket);
    const t = this.tickets.get(key);
    this.tickets.delete(key);
    const why = !t
      ? 'unknown or already used'
      : t.expires <= Date.now()
        ? 'expired'
        : t.serverId !== at.serverId
          ? 'issued for another server'
          : t.origin !== at.origin
            ? 'offered from another origin'
            : null;
    if (why || !t) throw unauthorized(`Console ticket refused (${why}): ask for a new one.`);
    return t;
  }
}
