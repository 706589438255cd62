import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { HostReport, HostService } from '../../compute/hosts.js';
import type { PemPair } from '../../pki/ca.js';
import { certFingerprint } from '../../pki/ca.js';
import { parseReport } from './report.js';

export interface AgentServer {
  port: number;
  close(): Promise<void>;
}

/**
 * The control plane's agent endpoint (docs/multi-host.md): mutual TLS only.
 * The TLS layer refuses any client without a certificate from the platform
 * CA (`requestCert` + `rejectUnauthorized`, the CA pinned as the only trust
 * anchor); then the certificate must be the one the host enrolled with
 * (`hosts.cert_fingerprint`), so re-joining a host revokes its old one.
 */
export async function startAgentServer(opts: {
  ca: PemPair;
  /** The control plane's own certificate (server usage, from the same CA). */
  server: PemPair;
  host: string;
  port: number;
  hosts: HostService;
  /** Told after each accepted report (e.g. to audit a host coming back up). */
  onReport?: (host: string, report: HostReport) => void;
  /**
   * An enrolled agent opened its driver channel (`GET /agent/v1/channel`,
   * upgraded): the authenticated socket, for calls both ways (rpc.ts).
   */
  onChannel?: (host: string, io: Duplex) => void;
}): Promise<AgentServer> {
  const srv: Server = createServer(
    {
      key: opts.server.keyPem,
      cert: opts.server.certPem,
      ca: [opts.ca.certPem],
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.3',
    },
    (req, res) => void handle(req, res).catch(() => send(res, 500, { error: 'internal error' })),
  );
  const send = (res: ServerResponse, status: number, body?: unknown) => {
    res.writeHead(status, body === undefined ? {} : { 'content-type': 'application/json' });
    res.end(body === undefined ? undefined : JSON.stringify(body));
  };
  /** The enrolled host the TLS peer is, or why not (status and message). */
  async function whoIs(socket: TLSSocket): Promise<{ name: string } | { status: number; error: string }> {
    const peer = socket.getPeerCertificate();
    // Unreachable with rejectUnauthorized, kept so a config change cannot open the endpoint.
    if (!socket.authorized || !peer?.raw) return { status: 401, error: 'a client certificate is required' };
    const name = typeof peer.subject?.CN === 'string' ? peer.subject.CN : '';
    const host = await opts.hosts.get(name).catch(() => null);
    if (!host || host.local === 1 || host.cert_fingerprint !== certFingerprint(peer.raw))
      return {
        status: 403,
        error: `certificate for ${name || '(no name)'} is not the one this host enrolled with; join it again`,
      };
    return { name };
  }
  // Upgraded channels are not the HTTP server's connections any more: closed here on close().
  const channels = new Set<Duplex>();
  srv.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (head.length) socket.unshift(head);
    channels.add(socket);
    socket.once('close', () => channels.delete(socket));
    void (async () => {
      const who = await whoIs(socket as TLSSocket);
      if ('status' in who || req.url !== '/agent/v1/channel' || !opts.onChannel) {
        const status = 'status' in who ? who.status : 404;
        socket.end(`HTTP/1.1 ${status} Refused\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
        return;
      }
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: bulwark-rpc\r\nConnection: Upgrade\r\n\r\n');
      opts.onChannel(who.name, socket);
    })().catch(() => socket.destroy());
  });
  async function handle(req: IncomingMessage, res: ServerResponse) {
    const who = await whoIs(req.socket as TLSSocket);
    if ('status' in who) return send(res, who.status, { error: who.error });
    const { name } = who;
    if (req.method === 'POST' && req.url === '/agent/v1/heartbeat') {
      let body = '';
      for await (const chunk of req) {
        body += chunk;
        if (body.length > 65_536) return send(res, 413, { error: 'report too large' });
      }
      const report = parseReport(body);
      if (typeof report === 'string') return send(res, 400, { error: report });
      await opts.hosts.heartbeat(name, report);
      opts.onReport?.(name, report);
      return send(res, 204);
    }
    return send(res, 404, { error: `no route ${req.method} ${req.url}` });
  }
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(opts.port, opts.host, () => resolve());
  });
  return {
    port: (srv.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        srv.closeAllConnections();
        for (const c of channels) c.destroy();
        srv.close(() => resolve());
      }),
  };
}
