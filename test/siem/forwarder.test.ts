/**
 * The forwarder against misbehaving peers (the real receiver is rsyslog, in
 * rsyslog.test.ts): a SIEM with a certificate from another CA is refused
 * (the CA is pinned), and one that never finishes the handshake is dropped
 * and retried, with nothing confirmed either way.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SiemForwarder } from '../../src/audit/siem.js';
import { systemEvent } from '../../src/audit/writer.js';
import { createCa, issueCertificate } from '../../src/pki/ca.js';
import { startTestApi, type TestApi } from '../helpers/api.js';

describe('SIEM forwarder refusals', () => {
  let api: TestApi;
  const servers: Server[] = [];
  const sockets: Socket[] = [];
  beforeAll(async () => {
    api = await startTestApi('sqlite');
    await api.platform.audit.append(systemEvent({ action: 'test:event', reason: null }));
  });
  afterAll(async () => {
    for (const s of sockets) s.destroy();
    for (const s of servers) await new Promise((r) => s.close(r));
    await api?.close();
  });
  const listen = async (srv: Server) => {
    servers.push(srv);
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    return (srv.address() as { port: number }).port;
  };
  const run = async (port: number, ca: string) => {
    const f = new SiemForwarder(api.store, {
      host: '127.0.0.1',
      port,
      ca,
      format: 'rfc5424',
      hostname: 'h',
      destination: `d-${port}`,
      maxBackoffMs: 200,
      ioTimeoutMs: 300,
    });
    f.start(api.platform.audit);
    await new Promise((r) => setTimeout(r, 1500));
    const s = await f.status();
    await f.stop();
    return s;
  };

  it('refuses a SIEM whose certificate is not from the pinned CA', async () => {
    const pinned = await createCa('pinned');
    const other = await createCa('other');
    const cert = await issueCertificate(other, {
      commonName: '127.0.0.1',
      names: ['127.0.0.1'],
      usage: 'server',
    });
    let received = 0;
    const port = await listen(
      createTlsServer({ key: cert.keyPem, cert: cert.certPem }, (s) => {
        sockets.push(s);
        s.on('data', (b: Buffer) => {
          received += b.length;
        });
      }),
    );
    const s = await run(port, pinned.certPem);
    expect(s.confirmedSeq).toBe(0);
    expect(s.connectFailures).toBeGreaterThan(0);
    expect(s.lastError, String(s.lastError)).toMatch(/certificate/i);
    expect(received).toBe(0);
  });

  it('drops a peer that never completes the handshake, and keeps retrying', async () => {
    const ca = await createCa('ca');
    let accepted = 0;
    const port = await listen(
      createServer((s) => {
        accepted += 1;
        sockets.push(s); // says nothing, reads nothing
      }),
    );
    const s = await run(port, ca.certPem);
    expect(s.lastError).toMatch(/handshake in time/);
    expect(accepted).toBeGreaterThanOrEqual(2);
    expect(s.confirmedSeq).toBe(0);
    expect(s.connected).toBe(false);
  });
});
