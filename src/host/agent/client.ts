import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { type ConnectionOptions, connect, type PeerCertificate } from 'node:tls';
import type { HostReport } from '../../compute/hosts.js';
import { certFingerprint, createCsr } from '../../pki/ca.js';

/** What an enrolled agent holds: its name, key and certificate, and the platform CA it trusts. */
export interface AgentIdentity {
  name: string;
  keyPem: string;
  certPem: string;
  caPem: string;
}

const toPem = (der: Buffer) =>
  `-----BEGIN CERTIFICATE-----\n${der.toString('base64').replace(/.{1,64}/g, '$&\n')}-----END CERTIFICATE-----\n`;

/**
 * The control plane's CA, taken from its TLS chain only if its SHA-256 is
 * `caHash` (given with the join token, out of band): the agent trusts
 * nothing it has not pinned before it sends the token.
 */
export function fetchPinnedCa(url: string, caHash: string): Promise<string> {
  const want = caHash.replace(/^sha256:/, '').toLowerCase();
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    // Unverified on purpose: this connection only reads the chain; nothing is sent on it.
    const s = connect({ host: u.hostname, port: Number(u.port || 443), rejectUnauthorized: false }, () => {
      let c: PeerCertificate | undefined = s.getPeerCertificate(true);
      const seen = new Set<string>();
      while (c?.raw && !seen.has(c.fingerprint256)) {
        seen.add(c.fingerprint256);
        if (certFingerprint(c.raw) === want) {
          s.end();
          return resolve(toPem(c.raw));
        }
        c = (c as PeerCertificate & { issuerCertificate?: PeerCertificate }).issuerCertificate;
      }
      s.end();
      reject(new Error(`the control plane at ${url} did not present the CA sha256:${want}; check --ca-hash`));
    });
    s.once('error', reject);
  });
}

function call(
  url: URL,
  tls: ConnectionOptions,
  body: unknown,
): Promise<{ status: number; json: Record<string, unknown> | undefined }> {
  return new Promise((resolve, reject) => {
    const payload = JSON.stringify(body);
    const req = request(
      url,
      {
        method: 'POST',
        agent: false,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
        ...tls,
      },
      (res) => {
        let text = '';
        res.on('data', (c) => {
          text += c;
        });
        res.on('end', () => {
          let json: Record<string, unknown> | undefined;
          try {
            json = text ? (JSON.parse(text) as Record<string, unknown>) : undefined;
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, json });
        });
      },
    );
    req.once('error', reject);
    req.setTimeout(15_000, () => req.destroy(new Error(`no answer from ${url.host} in 15 s`)));
    req.end(payload);
  });
}

/** Joins with a one-time token: a fresh key (never sent), a CSR, and the certificate the CA signs for it. */
export async function joinControlPlane(opts: {
  controlPlane: string;
  token: string;
  caHash: string;
  report: HostReport;
}): Promise<AgentIdentity> {
  const caPem = await fetchPinnedCa(opts.controlPlane, opts.caHash);
  const { csrPem, keyPem } = await createCsr('bulwark-agent');
  const res = await call(
    new URL('/bulwark/v1/agent/join', opts.controlPlane),
    { ca: [caPem], rejectUnauthorized: true },
    { join: { token: opts.token, csr: csrPem, ...opts.report } },
  );
  const host = res.json?.host as { name?: unknown; certificate?: unknown } | undefined;
  if (res.status !== 200 || typeof host?.name !== 'string' || typeof host.certificate !== 'string') {
    const why = JSON.stringify(res.json ?? {});
    throw new Error(`the control plane refused the join (HTTP ${res.status}): ${why}`);
  }
  return { name: host.name, keyPem, certPem: host.certificate, caPem };
}

/** Mutual TLS as the agent: its certificate, the pinned platform CA the only trust anchor. */
const mtls = (id: AgentIdentity): ConnectionOptions => ({
  key: id.keyPem,
  cert: id.certPem,
  ca: [id.caPem],
  rejectUnauthorized: true,
  minVersion: 'TLSv1.3',
});

/** Sends one report over mutual TLS. */
export async function sendHeartbeat(endpoint: string, id: AgentIdentity, report: HostReport): Promise<void> {
  const res = await call(new URL('/agent/v1/heartbeat', endpoint), mtls(id), report);
  if (res.status !== 204)
    throw new Error(`heartbeat refused (HTTP ${res.status}): ${JSON.stringify(res.json ?? {})}`);
}

/**
 * Opens the driver channel: `GET /agent/v1/channel` upgraded, over mutual
 * TLS; the control plane then calls the agent's driver on it (host-service.ts).
 */
export function openChannel(endpoint: string, id: AgentIdentity): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    const req = request(new URL('/agent/v1/channel', endpoint), {
      method: 'GET',
      agent: false,
      headers: { connection: 'Upgrade', upgrade: 'bulwark-rpc' },
      ...mtls(id),
    });
    req.once('upgrade', (_res, socket: Socket, head: Buffer) => {
      // Bytes that came with the 101 (the control plane's first call) belong to the channel.
      if (head.length) socket.unshift(head);
      socket.setTimeout(0);
      socket.setKeepAlive(true, 5_000);
      resolve(socket);
    });
    req.once('response', (res) => {
      res.resume();
      reject(new Error(`the control plane refused the channel (HTTP ${res.statusCode})`));
    });
    req.once('error', reject);
    req.setTimeout(15_000, () => req.destroy(new Error(`no answer from ${endpoint} in 15 s`)));
    req.end();
  });
}

/** The identity files in an agent's data dir: key 0600, certificates 0644. */
export function saveIdentity(dir: string, id: AgentIdentity): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileSync(join(dir, 'agent.key'), id.keyPem, { mode: 0o600 });
  writeFileSync(join(dir, 'agent.crt'), id.certPem, { mode: 0o644 });
  writeFileSync(join(dir, 'ca.crt'), id.caPem, { mode: 0o644 });
  writeFileSync(join(dir, 'agent-name'), `${id.name}\n`, { mode: 0o644 });
}

export function loadIdentity(dir: string): AgentIdentity | null {
  const f = (n: string) => join(dir, n);
  if (!['agent.key', 'agent.crt', 'ca.crt', 'agent-name'].every((n) => existsSync(f(n)))) return null;
  return {
    name: readFileSync(f('agent-name'), 'utf8').trim(),
    keyPem: readFileSync(f('agent.key'), 'utf8'),
    certPem: readFileSync(f('agent.crt'), 'utf8'),
    caPem: readFileSync(f('ca.crt'), 'utf8'),
  };
}
