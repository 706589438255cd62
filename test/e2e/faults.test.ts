/**
 * Fault injection (issue 14 item 5, docs/reliability.md), against the real
 * daemon on its own PostgreSQL cluster with a real guest (TCG):
 *   - QEMU killed (-9) under a running guest: SHUTOFF with a fault that says
 *     so, a `server:crashed` audit event; `server start` brings it back;
 *   - nft refusing the rule batch (a wrapper in front of the real nft on the
 *     daemon's PATH): the change answers 503 saying the ports are cut off,
 *     the lockdown table is in force (fail closed), and once nft works again
 *     the daemon applies the stored rules and lifts the lockdown by itself;
 *   - PostgreSQL restarted under the daemon: requests answer 503 naming the
 *     database (never a hang, never a 500), and work again with no restart;
 *   - the data dir's filesystem full (a small tmpfs): refusals with the reason,
 *     and creates work again once space is freed.
 * SIEM down is covered by test/e2e/siem.test.ts (forwarding resumes from its cursor).
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DaemonHttp, daemonHttp } from '../helpers/daemon-http.js';
import {
  type DaemonProcess,
  removeDaemon,
  startDaemonProcess,
  stopDaemon,
} from '../helpers/daemon-process.js';
import { reportFigures } from '../helpers/figures.js';
import { imageCreateArgs, waitFor } from '../helpers/guests.js';
import { guestProcesses, killGuests, nftTables } from '../helpers/host-leftovers.js';
import { type PgCluster, startPgCluster } from '../setup/postgres.js';

const survived: string[] = [];

describe.runIf(process.getuid?.() === 0)('fault injection', { timeout: 600_000 }, () => {
  let pg: PgCluster;
  let d: DaemonProcess;
  let http: DaemonHttp;
  let token = '';
  const tools = mkdtempSync(join(tmpdir(), 'bwfault-'));
  const nftBroken = join(tools, 'nft-broken');
  const seen = new Set<string>();

  beforeAll(async () => {
    // A wrapper in front of the real nft: while the flag file exists, it refuses every batch but the lockdown,
    // both `nft -f FILE` runs and the lines fed to the dataplane's long-lived `nft -i` (each batch line is
    // swapped for one nft refuses; its end marker, `describe meta mark`, passes).
    writeFileSync(
      join(tools, 'nft'),
      [
        '#!/bin/sh',
        'if [ "$1" = "-i" ]; then',
        '  while IFS= read -r l; do',
        `    if [ -e ${nftBroken} ] && [ "$l" != "describe meta mark" ]; then l="injected-failure (test/e2e/faults.test.ts)"; fi`,
        `    printf '%s\\n' "$l"`,
        '  done | /usr/sbin/nft "$@"',
        '  exit',
        'fi',
        `if [ -e ${nftBroken} ]; then`,
        '  for a in "$@"; do f="$a"; done',
        '  if [ -f "$f" ] && ! grep -q _lockdown "$f"; then',
        '    echo "Error: Could not process rule: injected failure (test/e2e/faults.test.ts)" >&2; exit 1',
        '  fi',
        'fi',
        'exec /usr/sbin/nft "$@"',
      ].join('\n'),
    );
    chmodSync(join(tools, 'nft'), 0o755);
    pg = await startPgCluster();
    d = await startDaemonProcess({
      extraArgs: ['--database-url', pg.socketUrl],
      env: { PATH: `${tools}:${process.env.PATH}` },
    });
    http = await daemonHttp(d, { timeoutMs: 90_000 });
    token = await http.login();
    await d.os('flavor', 'create', '--vcpus', '1', '--ram', '256', '--disk', '1', 'tiny');
    await d.os(...imageCreateArgs('tiny-bios', 'bios.raw'));
    await d.os('network', 'create', 'fault-net');
    await d.os(
      'subnet',
      'create',
      '--network',
      'fault-net',
      '--subnet-range',
      '10.78.0.0/24',
      'fault-subnet',
    );
    const vm = await d.osJson(
      'server',
      'create',
      '--flavor',
      'tiny',
      '--image',
      'tiny-bios',
      '--network',
      'fault-net',
      '--wait',
      'vm',
    );
    seen.add(vm.id);
  });

  afterAll(async () => {
    rmSync(nftBroken, { force: true });
    await http?.close();
    const dataDir = d?.dataDir;
    try {
      await stopDaemon(d);
    } finally {
      if (dataDir) killGuests(dataDir, seen);
      pg?.stop();
      rmSync(tools, { recursive: true, force: true });
      reportFigures('fault-injection', { faultsSurvived: survived.length, faults: survived });
    }
  });

  const api = (method: string, path: string, body?: unknown) => http.call(method, path, token, body);
  const show = async () => (await api('GET', '/compute/v2.1/servers/detail')).json.servers[0];
  const events = async (action: string) =>
    (await api('GET', `/bulwark/v1/audit/events?action=${encodeURIComponent(action)}`)).json
      .events as unknown[];

  it('QEMU killed under a running guest: SHUTOFF with a fault, audited; start brings it back', async () => {
    const qemu = guestProcesses(d.dataDir).find((p) => p.kind === 'qemu');
    expect(qemu).toBeDefined();
    process.kill(qemu?.pid as number, 'SIGKILL');
    const s = await waitFor(
      'SHUTOFF',
      async () => ((await show()).status === 'SHUTOFF' ? show() : false),
      60_000,
      500,
    );
    expect(s.fault.message).toMatch(/QEMU process ended without being asked to .*server start/);
    expect(await events('server:crashed')).toHaveLength(1);
    expect(guestProcesses(d.dataDir)).toEqual([]);
    await d.os('server', 'start', 'vm');
    const back = await waitFor(
      'ACTIVE again',
      async () => ((await show()).status === 'ACTIVE' ? show() : false),
      120_000,
      1000,
    );
    expect(back.fault).toBeUndefined();
    expect(guestProcesses(d.dataDir).filter((p) => p.kind === 'qemu')).toHaveLength(1);
    survived.push('qemu-crash');
  });

  it('nft refusing the rules: 503 with the reason, ports locked down, lifted by itself once nft works', async () => {
    const group = (await api('GET', '/network/v2.0/security-groups')).json.security_groups.find(
      (g: { name: string }) => g.name === 'default',
    );
    writeFileSync(nftBroken, '');
    const r = await api('POST', '/network/v2.0/security-group-rules', {
      security_group_rule: {
        security_group_id: group.id,
        direction: 'ingress',
        protocol: 'tcp',
        port_range_min: 2222,
        port_range_max: 2222,
        remote_ip_prefix: '10.78.0.0/24',
        ethertype: 'IPv4',
      },
    });
    expect(r.status).toBe(503);
    expect(r.json.NeutronError.message).toMatch(
      /could not enforce it.*cut off until the rules apply.*retries/,
    );
    // Fail closed: the lockdown table cuts every VM port, and the new rule is not in force.
    expect(nftTables(d)).toContain('inet bulwark_lockdown');
    const inNs = (args: string[]) =>
      execFileSync('nsenter', [`--net=/run/netns/${d.netns}`, '--', '/usr/sbin/nft', ...args], {
        encoding: 'utf8',
      });
    // The rule is an element of the group's (address . protocol . port) set (docs/network.md).
    expect(inNs(['list', 'table', 'inet', 'bulwark'])).not.toMatch(/10\.78\.0\.0\/24 \. tcp \. 2222/);
    rmSync(nftBroken);
    // No operator action: the background retry applies the stored rule and lifts the lockdown.
    await waitFor(
      'lockdown lifted',
      async () => !nftTables(d).includes('inet bulwark_lockdown'),
      60_000,
      1000,
    );
    expect(inNs(['list', 'table', 'inet', 'bulwark'])).toMatch(/10\.78\.0\.0\/24 \. tcp \. 2222/);
    expect(await events('dataplane:lockdown')).toHaveLength(1);
    expect(await events('dataplane:lockdown_lifted')).toHaveLength(1);
    survived.push('nft-failing');
  });

  it('PostgreSQL restarted under the daemon: 503 naming the database, then served again with no restart', async () => {
    const restart = pg.restart(8000);
    try {
      await new Promise((r) => setTimeout(r, 2000));
      const t0 = Date.now();
      const during = await api('GET', '/compute/v2.1/servers/detail');
      expect(Date.now() - t0).toBeLessThan(30_000);
      expect(during.status, JSON.stringify(during.json)).toBe(503);
      expect(JSON.stringify(during.json)).toMatch(/database is unavailable.*reconnects on its own/);
    } finally {
      await restart;
    }
    const after = await waitFor(
      'served again',
      async () => {
        const r = await api('GET', '/compute/v2.1/servers/detail');
        return r.status === 200 ? r : false;
      },
      60_000,
      1000,
    );
    expect(after.json.servers).toHaveLength(1);
    // Writes too, and the audit chain they extend still verifies.
    const g = await api('POST', '/network/v2.0/security-groups', { security_group: { name: 'after-pg' } });
    expect(g.status).toBe(201);
    const v = await api('GET', '/bulwark/v1/audit/verify');
    expect(v.json.verification.ok).toBe(true);
    survived.push('postgres-restart');
  });
});

describe.runIf(process.getuid?.() === 0)('fault injection: data dir full', { timeout: 300_000 }, () => {
  let d: DaemonProcess | undefined;
  let http: DaemonHttp;
  let token = '';
  const mnt = join(tmpdir(), `bwfull-${randomBytes(4).toString('hex')}`);
  const filler = join(mnt, 'filler');

  beforeAll(async () => {
    mkdirSync(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=96m,mode=0711', 'tmpfs', mnt]);
    d = await startDaemonProcess({ dataDir: mnt });
    http = await daemonHttp(d, { timeoutMs: 60_000 });
    token = await http.login();
  });

  afterAll(async () => {
    await http?.close();
    if (d) {
      await d.kill();
      await removeDaemon(d).catch(() => undefined);
    }
    if (existsSync(mnt)) {
      execFileSync('umount', ['-l', mnt]);
      rmSync(mnt, { recursive: true, force: true });
    }
  });

  const api = (method: string, path: string, body?: unknown) => http.call(method, path, token, body);

  it('refuses with the reason while full, and works again once space is freed', async () => {
    // Fill the filesystem to the last block.
    try {
      execFileSync('dd', ['if=/dev/zero', `of=${filler}`, 'bs=1M', 'count=200'], { stdio: 'ignore' });
    } catch {
      // ENOSPC: full, as wanted
    }
    const vol = await api('POST', '/volume/v3/volumes', { volume: { size: 1, name: 'full' } });
    // Refused by the storage threshold (507), or, when not even its audit row fits, a 503 saying the disk is full.
    const volText = JSON.stringify(vol.json);
    if (vol.status === 507)
      expect(volText).toMatch(/Storage pool volumes .* is 100% used.*Free space in the pool/);
    else {
      expect(vol.status, volText).toBe(503);
      expect(volText).toMatch(/audit log could not be written.*filesystem is full.*Free space there/);
    }
    // A write the database cannot make: a clear 503, never a 500 or a hang (or it fit in free pages: 201).
    const g = await api('POST', '/network/v2.0/security-groups', { security_group: { name: 'when-full' } });
    if (g.status !== 201) {
      expect(g.status).toBe(503);
      expect(JSON.stringify(g.json)).toMatch(/filesystem is full.*Free space there/);
    }
    rmSync(filler);
    const again = await api('POST', '/volume/v3/volumes', { volume: { size: 1, name: 'room-again' } });
    expect(again.status).toBe(202);
    await waitFor(
      'volume available',
      async () =>
        (await api('GET', `/volume/v3/volumes/${again.json.volume.id}`)).json.volume.status === 'available',
      60_000,
      500,
    );
    expect(
      (await api('POST', '/network/v2.0/security-groups', { security_group: { name: 'room' } })).status,
    ).toBe(201);
    survived.push('disk-full');
    reportFigures('fault-injection-disk-full', { faultsSurvived: 1 });
  });
});
