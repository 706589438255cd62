/**
 * `bulwark serve --siem-*` against a real rsyslogd (rsyslog-gnutls, mutual
 * TLS) in the daemon's own network namespace: the real `openstack` CLI's
 * failed login and admin actions arrive as JSON CADF events, and events made
 * while both rsyslog and the daemon were down arrive after both come back
 * (the cursor is in the store).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type DaemonProcess,
  ensureNetns,
  removeNetns,
  startDaemonProcess,
  stopDaemon,
} from '../helpers/daemon-process.js';
import { TestRsyslog } from '../helpers/rsyslog.js';

describe.runIf(process.getuid?.() === 0)('bulwark serve forwarding to rsyslog', { timeout: 300_000 }, () => {
  const netns = `bwsiem-${Math.random().toString(16).slice(2, 10)}`;
  const certs = mkdtempSync(join(tmpdir(), 'bulwark-siem-certs-'));
  let rsyslog: TestRsyslog;
  let d: DaemonProcess | undefined;
  let args: string[];

  beforeAll(async () => {
    await ensureNetns(netns);
    rsyslog = await TestRsyslog.create({ mtls: true, netns });
    await rsyslog.start();
    writeFileSync(join(certs, 'ca.pem'), rsyslog.ca.certPem);
    writeFileSync(join(certs, 'client.pem'), rsyslog.client.certPem);
    writeFileSync(join(certs, 'client.key'), rsyslog.client.keyPem, { mode: 0o600 });
    args = [
      '--siem-target',
      `127.0.0.1:${rsyslog.port}`,
      '--siem-ca',
      join(certs, 'ca.pem'),
      '--siem-client-cert',
      join(certs, 'client.pem'),
      '--siem-client-key',
      join(certs, 'client.key'),
      '--siem-format',
      'json',
    ];
    d = await startDaemonProcess({ netns, extraArgs: args });
  });
  afterAll(async () => {
    await rsyslog?.close();
    await stopDaemon(d); // removes the namespace too
    await removeNetns(netns);
    rmSync(certs, { recursive: true, force: true });
  });

  const events = () =>
    rsyslog
      .received()
      .filter((r) => r.msg.startsWith('{'))
      .map((r) => JSON.parse(r.msg));

  it('sends the CLI’s failed login and admin actions as CADF JSON over mutual TLS', async () => {
    const daemon = d as DaemonProcess;
    const bad = await daemon.openstack(['--os-password', 'not-the-password', 'token', 'issue']);
    expect(bad.code).not.toBe(0);
    await daemon.os('flavor', 'create', '--vcpus', '1', '--ram', '256', '--disk', '1', 'siem-flavor');
    await rsyslog.waitFor(() => events().some((e) => e.bulwark.action === 'compute:flavors:create'));
    const failed = events().find((e) => e.category === 'authentication.failure');
    expect(failed).toMatchObject({
      typeURI: 'http://schemas.dmtf.org/cloud/audit/1.0/event',
      action: 'authenticate',
      outcome: 'failure',
      initiator: { name: 'admin', host: { address: '127.0.0.1' } },
      severity: 'medium',
    });
    const created = events().find((e) => e.bulwark.action === 'compute:flavors:create');
    expect(created).toMatchObject({ action: 'create', outcome: 'success', initiator: { name: 'admin' } });
    const seqs = events().map((e) => e.bulwark.seq as number);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
  });

  it('delivers what was written while rsyslog was down, after a daemon restart too', async () => {
    await rsyslog.stop();
    const daemon = d as DaemonProcess;
    for (const name of ['while-down-1', 'while-down-2'])
      await daemon.os('flavor', 'create', '--vcpus', '1', '--ram', '256', '--disk', '1', name);
    await daemon.kill();
    d = await startDaemonProcess({ netns, dataDir: daemon.dataDir, extraArgs: args });
    await rsyslog.start();
    const got = await rsyslog.waitFor(
      () => events().filter((e) => e.bulwark.action === 'compute:flavors:create').length >= 3,
      60_000,
    );
    expect(got.length).toBeGreaterThan(0);
    const seqs = events().map((e) => e.bulwark.seq as number);
    const first: number[] = [];
    for (const s of seqs) if (!first.includes(s)) first.push(s);
    expect(first).toEqual([...first].sort((a, b) => a - b));
    // No gaps: every sequence number from 1 to the last one received.
    const max = Math.max(...first);
    expect(first).toEqual(Array.from({ length: max }, (_, i) => i + 1));
  });
});
