/**
 * The compliance control `siem-forwarding` (docs/compliance.md) against a
 * real rsyslogd with rsyslog-gnutls: delivered means pass; an outage whose
 * oldest undelivered event is older than the limit fails, naming the
 * destination, the backlog and the forwarder's last error; once rsyslog is
 * back and the backlog delivered, it passes again.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SiemForwarder } from '../../src/audit/siem.js';
import { SIEM_MAX_LAG_SECONDS } from '../../src/compliance/checks.js';
import type { CheckResult } from '../../src/compliance/verdict.js';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { fakeHost } from '../helpers/fake-host.js';
import { TestRsyslog } from '../helpers/rsyslog.js';

describe('compliance: SIEM lagging, with a real rsyslog (SQLite)', () => {
  let api: TestApi;
  let host: Awaited<ReturnType<typeof fakeHost>>;
  let rsyslog: TestRsyslog;
  let forwarder: SiemForwarder;
  let admin: string;
  /** The platform's clock (the compliance checks read it), moved forward to age the backlog. */
  let shift = 0;

  const siemCheck = async (): Promise<CheckResult> => {
    const r = await api.call('POST', '/bulwark/v1/compliance/runs', admin, {});
    expect(r.status).toBe(201);
    const found = (r.json.run.results as CheckResult[]).find((x) => x.control_id === 'siem-forwarding');
    if (!found) throw new Error('no siem-forwarding result');
    return found;
  };

  beforeAll(async () => {
    host = await fakeHost();
    rsyslog = await TestRsyslog.create({ mtls: true });
    await rsyslog.start();
    api = await startTestApi('sqlite', {
      procRoot: host.roots.proc,
      etcRoot: host.roots.etc,
      sysfsRoot: host.roots.sys,
      clock: () => new Date(Date.now() + shift),
    });
    admin = await api.login('admin', api.adminPassword, 'admin');
    forwarder = new SiemForwarder(api.store, {
      host: '127.0.0.1',
      port: rsyslog.port,
      ca: rsyslog.ca.certPem,
      cert: rsyslog.client.certPem,
      key: rsyslog.client.keyPem,
      format: 'rfc5424',
      hostname: 'bulwark-lag-test',
      destination: 'lag-test',
      confirmAfterMs: 300,
      pollMs: 200,
      maxBackoffMs: 500,
    });
    forwarder.start(api.platform.audit);
    api.platform.compliance.attachSiem(() => forwarder.status());
  });
  afterAll(async () => {
    await forwarder?.stop();
    await rsyslog?.close();
    await api?.close();
    await host?.cleanup();
  });

  it('passes while delivered; fails once the oldest undelivered event is too old; passes after catch-up', {
    timeout: 180_000,
  }, async () => {
    await expect.poll(async () => (await forwarder.status()).lag, { timeout: 30_000 }).toBe(0);
    const ok = await siemCheck();
    expect(ok.verdict).toBe('pass');
    expect(ok.observed).toMatchObject({ connected: true });

    await rsyslog.stop();
    // Audited refusals pile up while the SIEM is down.
    for (let i = 0; i < 20; i++)
      expect((await api.call('POST', '/compute/v2.1/flavors', null, { flavor: {} })).status).toBe(401);
    await expect.poll(async () => (await forwarder.status()).connected, { timeout: 30_000 }).toBe(false);
    const young = await siemCheck();
    // A backlog younger than the limit is delivery in progress, not lag.
    expect(young.verdict).toBe('pass');
    expect(Number(young.observed.lag)).toBeGreaterThanOrEqual(20);

    shift = (SIEM_MAX_LAG_SECONDS + 60) * 1000;
    const late = await siemCheck();
    expect(late.verdict).toBe('fail');
    expect(late.offenders).toEqual([expect.objectContaining({ type: 'siem_destination', id: 'lag-test' })]);
    expect(late.offenders[0]?.detail).toMatch(
      /^\d+ events undelivered, oldest \d+ s old \(more than 300 s\)/,
    );
    expect(late.offenders[0]?.detail).toMatch(/last error: /);
    expect(Number(late.observed.lag_seconds)).toBeGreaterThan(SIEM_MAX_LAG_SECONDS);

    shift = 0;
    await rsyslog.start();
    await expect.poll(async () => (await forwarder.status()).lag, { timeout: 60_000 }).toBe(0);
    expect(rsyslog.received().length).toBeGreaterThan(20);
    expect((await siemCheck()).verdict).toBe('pass');
  });
});
