/**
 * SIEM forwarding against a real rsyslogd with rsyslog-gnutls: RFC 5424 over
 * TLS (RFC 5425) with mutual TLS, the fields rsyslog parses, the three
 * formats, and at-least-once in-order delivery across an outage that does not
 * slow the API.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SiemForwarder } from '../../src/audit/siem.js';
import type { SiemFormat } from '../../src/audit/syslog.js';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { seqOf, TestRsyslog } from '../helpers/rsyslog.js';
import { dialects } from '../helpers/store.js';

describe.each(dialects())('SIEM forwarding to a real rsyslog on %s', (dialect) => {
  let api: TestApi;
  let rsyslog: TestRsyslog;
  const forwarders: SiemForwarder[] = [];
  let member: { token: string; userId: string; projectId: string };

  const forwarder = (format: SiemFormat, destination: string, withClientCert = true) => {
    const f = new SiemForwarder(api.store, {
      host: '127.0.0.1',
      port: rsyslog.port,
      ca: rsyslog.ca.certPem,
      ...(withClientCert ? { cert: rsyslog.client.certPem, key: rsyslog.client.keyPem } : {}),
      format,
      hostname: 'bulwark-test-host',
      destination,
      confirmAfterMs: 300,
      pollMs: 200,
      maxBackoffMs: 500,
    });
    forwarders.push(f);
    f.start(api.platform.audit);
    return f;
  };

  beforeAll(async () => {
    rsyslog = await TestRsyslog.create({ mtls: true });
    await rsyslog.start();
    api = await startTestApi(dialect);
    member = await api.persona('siem-proj', 'siem-member', 'member');
  });
  afterAll(async () => {
    for (const f of forwarders) await f.stop();
    await rsyslog?.close();
    await api?.close();
  });

  const head = async () =>
    Number((await api.store.db.selectFrom('audit_head').select('seq').executeTakeFirstOrThrow()).seq);
  /** Received lines of one destination's format: rfc5424 lines carry SD, the others '-'. */
  const lines5424 = () => rsyslog.received().filter((r) => r.sd.startsWith('[bulwark@32473'));

  it('delivers security events with severity, category and fields rsyslog parses', async () => {
    const f = forwarder('rfc5424', 'rfc5424');
    // Failed authentication, a refused admin action (privilege escalation attempt), a server create, a quota violation.
    const bad = await api.call('POST', '/identity/v3/auth/tokens', null, {
      auth: {
        identity: {
          methods: ['password'],
          password: {
            user: { name: 'siem-member', domain: { id: 'default' }, password: 'wrong-password-1' },
          },
        },
      },
    });
    expect(bad.status).toBe(401);
    const esc = await api.call('POST', '/compute/v2.1/flavors', member.token, {
      flavor: { name: 'sneaky', vcpus: 1, ram: 128, disk: 1 },
    });
    expect(esc.status).toBe(403);
    const { flavorId, imageId } = await api.bootable(member.token, 'siem');
    const created = await api.call('POST', '/compute/v2.1/servers', member.token, {
      server: { name: 'siem-vm', imageRef: imageId, flavorRef: flavorId },
    });
    expect(created.status).toBe(202);
    await api.platform.quotas.set(member.projectId, { instances: 1 });
    const over = await api.call('POST', '/compute/v2.1/servers', member.token, {
      server: { name: 'siem-vm2', imageRef: imageId, flavorRef: flavorId },
    });
    expect(over.status).toBeGreaterThanOrEqual(400);
    const last = await head();
    const got = await rsyslog.waitFor(() => lines5424().some((r) => seqOf(r) === last)).then(lines5424);

    const one = (category: string) => {
      const r = got.find((x) => x.msgId === category);
      if (!r) throw new Error(`no ${category} event among ${got.map((g) => g.msgId).join(',')}`);
      return r;
    };
    const auth = one('authentication.failure');
    expect(auth.pri).toBe(13 * 8 + 4); // log audit, warning
    expect(auth.appName).toBe('bulwark');
    expect(auth.hostname).toBe('bulwark-test-host');
    expect(auth.procId).toBe(String(process.pid));
    expect(auth.sd).toContain('action="identity:issue_token"');
    expect(auth.sd).toContain('user="siem-member"');
    expect(auth.sd).toContain('status="401"');
    const escalation = one('privilege_escalation.attempt');
    expect(escalation.pri).toBe(13 * 8 + 3); // high = err
    expect(escalation.sd).toContain('action="compute:flavors:create"');
    expect(escalation.sd).toContain(`userId="${member.userId}"`);
    expect(one('server.create').sd).toContain(`project="${member.projectId}"`);
    expect(one('quota.violation').msg).toMatch(/Quota exceeded/);
    // Times are the audit row's, RFC 3339, and rsyslog read them as such.
    expect(Date.parse(auth.time)).toBeGreaterThan(Date.now() - 600_000);
    // Tokens never leave: not the member's, not any part of it.
    const raw = rsyslog
      .received()
      .map((r) => `${r.sd} ${r.msg}`)
      .join('\n');
    expect(raw).not.toContain(member.token);
    expect(raw).not.toContain(member.token.slice(0, 16));
    expect((await f.status()).connected).toBe(true);
  });

  it('sends CEF and JSON lines, each destination with its own cursor', async () => {
    forwarder('json', 'json');
    forwarder('cef', 'cef');
    const last = await head();
    const got = await rsyslog.waitFor((r) => {
      const json = r.filter((x) => x.msg.startsWith('{')).map((x) => JSON.parse(x.msg).bulwark.seq as number);
      const cef = r.filter((x) => x.msg.startsWith('CEF:0|'));
      return json.includes(last) && cef.some((x) => x.msg.includes(`cn1=${last} `));
    });
    const json = got
      .filter((x) => x.msg.startsWith('{'))
      .map((x) => JSON.parse(x.msg))
      .find((e) => e.category === 'privilege_escalation.attempt');
    expect(json).toMatchObject({
      typeURI: 'http://schemas.dmtf.org/cloud/audit/1.0/event',
      action: 'create',
      outcome: 'failure',
      initiator: { id: member.userId, name: 'siem-member', project_id: member.projectId },
      observer: { id: 'bulwark-test-host' },
      reason: { reasonType: 'HTTP', reasonCode: '403' },
      severity: 'high',
    });
    const cef = got.find((x) => x.msg.startsWith('CEF:0|') && x.msg.includes('|authentication.failure|'));
    expect(cef?.msg).toMatch(
      /^CEF:0\|Bulwark\|Bulwark\|1\|identity:issue_token\|authentication\.failure\|5\|/,
    );
    expect(cef?.msg).toContain('suser=siem-member');
  });

  it('refuses a client without a certificate: nothing delivered, the cursor stays', async () => {
    const f = forwarder('rfc5424', 'no-client-cert', false);
    await new Promise((r) => setTimeout(r, 2000));
    const s = await f.status();
    expect(s.confirmedSeq).toBe(0);
    expect(s.connectFailures).toBeGreaterThan(0);
    expect(s.lag).toBe(await head());
    await f.stop();
  });

  it('loses nothing across an rsyslog outage, in order, without slowing the API', async () => {
    const f = forwarders[0] as SiemForwarder;
    const refusedAdminCall = async () => {
      const t = performance.now();
      const r = await api.call('POST', '/compute/v2.1/flavors', member.token, {
        flavor: { name: 'x', vcpus: 1, ram: 128, disk: 1 },
      });
      expect(r.status).toBe(403);
      return performance.now() - t;
    };
    const baseline: number[] = [];
    for (let i = 0; i < 200; i++) baseline.push(await refusedAdminCall());
    const before = await head();
    await rsyslog.waitFor(() => lines5424().some((r) => seqOf(r) === before));

    await rsyslog.stop();
    const first = before + 1;
    const during: number[] = [];
    for (let i = 0; i < 1000; i++) during.push(await refusedAdminCall());
    const last = await head();
    expect(last - first + 1).toBe(1000);
    expect((await f.status()).lag).toBeGreaterThanOrEqual(1000);

    await rsyslog.start();
    const got = await rsyslog
      .waitFor(() => lines5424().some((r) => seqOf(r) === last), 60_000)
      .then(lines5424);
    const seqs = got.map(seqOf).filter((s) => s >= first);
    // Every one of the 1,000 arrived (at least once), and first arrivals are in audit order.
    const firstSeen: number[] = [];
    const seen = new Set<number>();
    for (const s of seqs) {
      if (!seen.has(s)) firstSeen.push(s);
      seen.add(s);
    }
    for (let s = first; s <= last; s++) expect(seen.has(s), `seq ${s} missing`).toBe(true);
    expect(firstSeen).toEqual([...firstSeen].sort((a, b) => a - b));
    // The cursor catches up, and the outage cost the API nothing beyond its normal spread.
    await expect.poll(async () => (await f.status()).lag, { timeout: 10_000 }).toBe(0);
    const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * p)] ?? 0;
    expect(pct(during, 0.5)).toBeLessThan(pct(baseline, 0.5) * 2 + 10);
    expect(pct(during, 0.95)).toBeLessThan(pct(baseline, 0.95) * 3 + 25);
  });
});
