import { Type } from '@fastify/type-provider-typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Static } from 'typebox';
import type { WebSocket } from 'ws';
import type { ConsoleSession } from '../console/recordings.js';
import { ConsoleTickets, ticketFromProtocols } from '../dashboard/console-tickets.js';
import { sessionToken } from '../dashboard/session.js';
import { badRequest, forbidden, unauthorized } from '../errors.js';
import { relyingParty } from '../identity/webauthn.js';
import { allows } from '../policy/enforcer.js';
import { BULWARK_PREFIX } from './bulwark.js';
import type { ApiContext } from './server.js';

/** The subprotocol a console client asks for; the server picks it, never the token one. */
export const CONSOLE_PROTOCOL = 'bulwark.console';
const TOKEN_PROTOCOL = 'bulwark.token.';

/**
 * Browsers cannot set headers on a WebSocket, so a console client may offer
 * its token as a subprotocol `bulwark.token.TOKEN` next to `bulwark.console`
 * (the Kubernetes approach): still a header, never the URL.
 */
export function tokenFromProtocols(header: string | string[] | undefined): string | undefined {
  const offered = [header ?? []].flat().flatMap((h) => h.split(','));
  const t = offered.map((p) => p.trim()).find((p) => p.startsWith(TOKEN_PROTOCOL));
  return t ? t.slice(TOKEN_PROTOCOL.length) : undefined;
}

const IdParam = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.-]+$' }),
});
/** The terminal size and nothing else: there is no parameter that turns the recording off. */
const ConsoleQuery = Type.Object(
  {
    cols: Type.Optional(Type.Integer({ minimum: 10, maximum: 500, default: 80 })),
    rows: Type.Optional(Type.Integer({ minimum: 5, maximum: 200, default: 24 })),
  },
  { additionalProperties: false },
);
const ListQuery = Type.Object(
  {
    server: Type.Optional(Type.String({ maxLength: 64 })),
    user: Type.Optional(Type.String({ maxLength: 64 })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
  },
  { additionalProperties: false },
);

/**
 * Serial consoles over a WebSocket and their recordings (docs/console.md):
 *
 * - `GET /bulwark/v1/servers/{id}/console` upgraded to a WebSocket, with the
 *   token in `X-Auth-Token` or, from a browser, the `bulwark.token.TOKEN`
 *   subprotocol (never in the URL, which access logs keep).
 *   Binary or text frames from the client are keystrokes; binary frames back
 *   are the guest's output. The session and its recording are opened before
 *   the upgrade, so refusals (404, 409 quarantined or busy) are plain HTTP.
 * - `GET /bulwark/v1/console/recordings[/{id}[/cast]]`: admins list, show and
 *   replay (the decrypted asciicast v2; every replay is audited).
 */
export async function registerConsoleApi(app: FastifyInstance, ctx: ApiContext): Promise<void> {
  const { consoles } = ctx;
  const sessions = new WeakMap<FastifyRequest, ConsoleSession>();
  // The token each upgrade authenticated with, for the periodic recheck (a ticket stands for one).
  const tokens = new WeakMap<FastifyRequest, string>();
  const tickets = new ConsoleTickets();
  // The dashboard's origins: the public URL's, and the `localhost` one WebAuthn needs on loopback.
  const origins = new Set([new URL(ctx.publicUrl).origin, relyingParty(ctx.publicUrl).origin]);

  app.post(
    `${BULWARK_PREFIX}/servers/:id/console/tickets`,
    { schema: { params: IdParam }, config: { action: 'console:ticket', targetType: 'server' } },
    async (req, reply) => {
      const origin = req.headers.origin;
      if (!origin || !origins.has(origin))
        throw forbidden(
          "Console tickets are for the dashboard's own pages (this request's Origin is not the dashboard's); use `bulwark console SERVER`.",
        );
      const header = req.headers['x-auth-token'];
      const token = typeof header === 'string' && header.length > 0 ? header : sessionToken(req);
      if (token === null) throw unauthorized('The request you have made requires authentication.');
      const { id } = req.params as Static<typeof IdParam>;
      await ctx.compute.servers.get(req.auth!, id); // another project's server: 404, no ticket
      return reply.code(201).send(tickets.issue({ token, userId: req.auth!.userId, serverId: id, origin }));
    },
  );

  app.route({
    method: 'GET',
    url: `${BULWARK_PREFIX}/servers/:id/console`,
    schema: { params: IdParam, querystring: ConsoleQuery },
    config: { action: 'console:connect', targetType: 'server' },
    // A dashboard ticket (above) stands in for the session it was issued to: same server, same Origin, once.
    onRequest: async (req) => {
      const ticket = ticketFromProtocols(req.headers['sec-websocket-protocol']);
      if (req.auth || ticket === undefined) return;
      const { id } = req.params as Static<typeof IdParam>;
      const t = tickets.redeem(ticket, { serverId: id, origin: req.headers.origin });
      const auth = await ctx.identity.validateToken(t.token);
      if (!auth || auth.userId !== t.userId)
        throw unauthorized('Console ticket refused (its session ended): log in again.');
      req.auth = auth;
      tokens.set(req, t.token);
    },
    preHandler: async (req) => {
      if (req.headers.upgrade?.toLowerCase() !== 'websocket')
        throw badRequest('Open this URL as a WebSocket (e.g. `bulwark console SERVER`).');
      if (!req.auth) throw unauthorized('The request you have made requires authentication.');
      const { id } = req.params as Static<typeof IdParam>;
      const q = req.query as Static<typeof ConsoleQuery>;
      const session = await consoles.connect(req.auth, id, { cols: q.cols ?? 80, rows: q.rows ?? 24 });
      sessions.set(req, session);
      // Whatever ends the connection (client gone, upgrade failed) ends the session and closes its recording.
      req.raw.socket.once('close', () => void session.close().catch(() => undefined));
    },
    handler: async () => {
      throw badRequest('Open this URL as a WebSocket (e.g. `bulwark console SERVER`).');
    },
    wsHandler: (socket: WebSocket, req: FastifyRequest) => {
      const session = sessions.get(req);
      if (!session) {
        socket.close(1011, 'no console session');
        return;
      }
      // A session lasts only as long as its token and role would let it start: checked again every few seconds.
      const token =
        tokens.get(req) ??
        req.headers['x-auth-token'] ??
        tokenFromProtocols(req.headers['sec-websocket-protocol']);
      const { id } = req.params as Static<typeof IdParam>;
      const recheck = setInterval(async () => {
        const auth =
          typeof token === 'string' ? await ctx.identity.validateToken(token).catch(() => null) : null;
        const still =
          auth !== null &&
          allows('console:connect', auth, { project_id: auth.projectId, user_id: auth.userId }) &&
          (await ctx.compute.servers.getUnquarantined(auth, id).then(
            () => true,
            () => false,
          ));
        if (!still)
          void session.close('the token or role no longer allows console access').catch(() => undefined);
      }, consoles.recheckMs);
      socket.once('close', () => clearInterval(recheck));
      session.onOutput((data) => socket.send(data, { binary: true }));
      session.onEnd(() => socket.close(1000, 'the guest console closed'));
      socket.on('message', (data: Buffer | ArrayBuffer | Buffer[]) => {
        const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
        session.input(buf);
      });
      socket.on('close', () => void session.close().catch(() => undefined));
    },
  });

  app.get(
    `${BULWARK_PREFIX}/console/recordings`,
    { schema: { querystring: ListQuery }, config: { action: 'console:recordings:list' } },
    async (req) => {
      const q = req.query as Static<typeof ListQuery>;
      return {
        recordings: await consoles.list({
          ...(q.server ? { serverId: q.server } : {}),
          ...(q.user ? { userId: q.user } : {}),
          limit: q.limit ?? 100,
        }),
        retention_days: consoles.retentionDays,
      };
    },
  );
  app.get(
    `${BULWARK_PREFIX}/console/recordings/:id`,
    {
      schema: { params: IdParam },
      config: { action: 'console:recordings:show', targetType: 'console_recording' },
    },
    async (req) => ({ recording: await consoles.get((req.params as Static<typeof IdParam>).id) }),
  );
  app.get(
    `${BULWARK_PREFIX}/console/recordings/:id/cast`,
    {
      schema: { params: IdParam },
      config: { action: 'console:recordings:replay', targetType: 'console_recording' },
    },
    async (req, reply) => {
      const cast = await consoles.replay((req.params as Static<typeof IdParam>).id);
      reply.type('application/x-asciicast');
      return cast;
    },
  );
}
