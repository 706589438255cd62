/**
 * Cold migration and host evacuation with real guests (docs/multi-host.md):
 * a control plane on PostgreSQL and three real `bulwark agent` hosts, each in
 * its own network namespace. `openstack server migrate` (verbatim) stops a
 * tiny guest, moves its encrypted disk to another host, and `openstack server
 * migrate confirm` leaves it there with what it wrote before the move; `migrate
 * revert` brings one back; the refusals change nothing; `bulwark host
 * evacuate` empties a host of a running and a stopped guest.
 */
import { execFile, execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AgentTopology, agentHostsOnly, startAgentTopology } from '../helpers/agent-hosts.js';
import { passwordCliEnv, REPO } from '../helpers/daemon-process.js';
import { imageCreateArgs, waitFor } from '../helpers/guests.js';
import { privateNetwork } from '../helpers/networks.js';

const PG = process.env.BULWARK_TEST_PG !== '0';
const PASS = 'Long-enough-pass-1';

describe.runIf(process.getuid?.() === 0)(
  `cold migration and evacuation on three agent hosts (control plane on ${PG ? 'PostgreSQL' : 'SQLite'})`,
  { timeout: 900_000 },
  () => {
    let t: AgentTopology;
    const os = (...args: string[]) => t.d.os(...args);
    const osJson = (...args: string[]) => t.d.osJson(...args);
    const show = (name: string) => osJson('server', 'show', name);
    const hostOf = async (name: string) => (await show(name))['OS-EXT-SRV-ATTR:host'] as string;
    const marker = `BWCOLD-${randomBytes(8).toString('hex')}`;
    let script = '';
    beforeAll(async () => {
      t = await startAgentTopology({ prefix: 'bwcm', subnet: '10.65.0', postgres: PG });
      await t.joinAll();
      await agentHostsOnly(t.d);
      await os('flavor', 'create', '--vcpus', '1', '--ram', '192', '--disk', '1', 'm1.tiny');
      await os(...imageCreateArgs('tiny', 'bios.raw', ['hw_firmware_type=bios']));
      // A vTPM flavor: swtpm's encrypted state moves with the disk.
      await os(
        'flavor',
        'create',
        '--vcpus',
        '1',
        '--ram',
        '192',
        '--disk',
        '1',
        '--property',
        'hw:tpm_version=2.0',
        '--property',
        'hw:tpm_model=tpm-crb',
        'm1.tpm',
      );
      await privateNetwork(t.d, 'cold-net', '10.66.0.0/24');
      // Every boot: the first writes the marker to the boot disk; later ones print what the disk holds.
      script = join(t.d.dataDir, 'cold-user-data.sh');
      writeFileSync(
        script,
        [
          '#!/bin/sh',
          'mkdir -p /mnt/d; mount -t vfat "$(findfs LABEL=BULWARK)" /mnt/d',
          `if [ -f /mnt/d/marker ]; then echo "BWHAD=$(cat /mnt/d/marker)"; else echo ${marker} > /mnt/d/marker; sync; echo BWWROTE; fi`,
          '',
        ].join('\n'),
      );
    }, 600_000);
    afterAll(() => t?.close(), 300_000);

    /** Waits for `name` to reach `status` (an ERROR on the way fails at once, with its fault). */
    const until = (name: string, status: string, ms = 300_000) =>
      waitFor(
        `${name} ${status}`,
        async () => {
          const s = await show(name);
          if (s.status === 'ERROR' && status !== 'ERROR')
            throw new Error(`${name} ERROR: ${JSON.stringify(s.fault)}`);
          return s.status === status;
        },
        ms,
        2000,
      );
    // The CLI's own --wait would outlive the helper's 120 s limit on a loaded host: the test polls instead.
    const boot = async (name: string, extra: string[] = []) => {
      const r = await t.d.openstack([
        'server',
        'create',
        '--flavor',
        'm1.tiny',
        '--image',
        'tiny',
        '--network',
        'cold-net',
        '--user-data',
        script,
        ...extra,
        name,
      ]);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      await until(name, 'ACTIVE');
      await waitFor(
        `${name} wrote its marker`,
        async () => (await os('console', 'log', 'show', name)).includes('BWWROTE'),
        240_000,
        2000,
      );
    };
    const migrate = async (name: string) => {
      const r = await t.d.openstack(['server', 'migrate', name]);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      await until(name, 'VERIFY_RESIZE');
    };
    /** The bulwark CLI with room for a long wait (its progress line on stderr). */
    const bulwarkLong = (args: string[]) =>
      new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
        execFile(
          'nsenter',
          [`--net=/run/netns/${t.d.netns}`, '--', process.execPath, join(REPO, 'bin', 'bulwark.js'), ...args],
          { env: t.d.env, timeout: 900_000, maxBuffer: 16 * 1024 * 1024 },
          (err, stdout, stderr) =>
            resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
        ),
      );
    const guestDir = (host: string, id: string) => join(t.dirOf.get(host)!, 'instances', id);
    const qemuOn = (host: string, id: string) =>
      execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' })
        .split('\n')
        .some((l) => l.includes(`${guestDir(host, id)}/`));

    it('openstack server migrate + migrate confirm: the guest lands on another host with its disk', async () => {
      await boot('cold-1');
      const id = (await show('cold-1')).id as string;
      const from = await hostOf('cold-1');
      await migrate('cold-1');
      const s = await show('cold-1');
      expect(s.status).toBe('VERIFY_RESIZE');
      const to = s['OS-EXT-SRV-ATTR:host'] as string;
      expect(to).not.toBe(from);
      const migs = await osJson('server', 'migration', 'list', '--server', id);
      expect(migs[0]).toMatchObject({
        Status: 'finished',
        'Source Compute': from,
        'Dest Compute': to,
      });
      // It runs again on the destination, and reads back the marker its first boot wrote on the source.
      await waitFor(
        'guest reads its marker on the destination',
        async () => (await os('console', 'log', 'show', 'cold-1')).includes(`BWHAD=${marker}`),
        240_000,
        2000,
      );
      expect(qemuOn(to, id)).toBe(true);
      expect(qemuOn(from, id)).toBe(false);
      // Until confirmed, the source keeps its copy (a revert needs it).
      expect(existsSync(join(guestDir(from, id), 'disk.qcow2'))).toBe(true);
      const confirmed = await t.d.openstack(['server', 'migrate', 'confirm', 'cold-1']);
      expect(confirmed.code, confirmed.stderr).toBe(0);
      await waitFor(
        'ACTIVE after confirm',
        async () => (await show('cold-1')).status === 'ACTIVE',
        120_000,
        1000,
      );
      expect(await hostOf('cold-1')).toBe(to);
      // The source is clean: no dir, no swtpm, no QEMU; the guest's user stays (the destination on
      // this one machine uses it).
      expect(existsSync(guestDir(from, id))).toBe(false);
      const migs2 = await osJson('server', 'migration', 'list', '--server', id);
      expect(migs2[0]).toMatchObject({ Status: 'confirmed' });
      await os('server', 'delete', '--wait', 'cold-1');
    });

    it('a stopped vTPM server: migrate moves its encrypted TPM state as is; migrate revert brings it back', async () => {
      await boot('cold-2', ['--flavor', 'm1.tpm']);
      const id = (await show('cold-2')).id as string;
      const from = await hostOf('cold-2');
      await os('server', 'stop', 'cold-2');
      await until('cold-2', 'SHUTOFF');
      const permall = (host: string) => join(guestDir(host, id), 'tpm', 'tpm2-00.permall');
      const sha = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');
      const tpmBefore = sha(permall(from));
      await migrate('cold-2');
      const to = await hostOf('cold-2');
      expect(to).not.toBe(from);
      expect((await show('cold-2')).status).toBe('VERIFY_RESIZE');
      expect(existsSync(join(guestDir(to, id), 'disk.qcow2'))).toBe(true);
      // The destination holds the very ciphertext swtpm left on the source (encrypted under the vTPM key).
      expect(sha(permall(to))).toBe(tpmBefore);
      expect(qemuOn(to, id)).toBe(false); // stopped before, stopped there
      const reverted = await t.d.openstack(['server', 'migrate', 'revert', 'cold-2']);
      expect(reverted.code, reverted.stderr).toBe(0);
      await waitFor(
        'SHUTOFF after revert',
        async () => (await show('cold-2')).status === 'SHUTOFF',
        120_000,
        1000,
      );
      expect(await hostOf('cold-2')).toBe(from);
      expect(existsSync(guestDir(to, id))).toBe(false);
      expect(sha(permall(from))).toBe(tpmBefore);
      // It boots on its source with its own disk (and its swtpm opens the state with the key).
      await os('server', 'start', 'cold-2');
      await waitFor(
        'boots on the source with its marker',
        async () => (await os('console', 'log', 'show', 'cold-2')).includes(`BWHAD=${marker}`),
        240_000,
        2000,
      );
      expect(qemuOn(from, id)).toBe(true);
      await os('server', 'delete', '--wait', 'cold-2');
    });

    it('refuses: anti-affinity with no other host (400), a member (403, audited); nothing changes', async () => {
      await os('server', 'group', 'create', '--policy', 'anti-affinity', 'cold-aa');
      const g = await osJson('server', 'group', 'show', 'cold-aa');
      const names = ['cold-aa-1', 'cold-aa-2', 'cold-aa-3'];
      try {
        await refusals(names, g.id as string);
      } finally {
        for (const n of names) await t.d.openstack(['server', 'delete', '--wait', n]);
      }
    });

    const refusals = async (names: string[], group: string) => {
      await Promise.all(names.map((n) => boot(n, ['--hint', `group=${group}`])));
      const hosts = await Promise.all(names.map(hostOf));
      expect(new Set(hosts).size).toBe(3);
      const id = (await show('cold-aa-1')).id as string;
      const noHost = await t.d.openstack(['server', 'migrate', 'cold-aa-1']);
      expect(noHost.code).not.toBe(0);
      expect(noHost.stderr).toMatch(/No valid host was found/);
      expect((await show('cold-aa-1')).status).toBe('ACTIVE');
      expect(await hostOf('cold-aa-1')).toBe(hosts[0]);
      // `--host` (2.56) through the CLI: its own host is refused, and so is a member's host (anti-affinity).
      for (const [host, why] of [
        [hosts[0], /already on host/],
        [hosts[1], /No valid host was found/],
      ] as const) {
        const r = await t.d.openstack([
          '--os-compute-api-version',
          '2.56',
          'server',
          'migrate',
          '--host',
          host as string,
          'cold-aa-1',
        ]);
        expect(r.code).not.toBe(0);
        expect(r.stderr).toMatch(why);
      }
      // A member of the project: Nova's default policy refuses, and the refusal is in the audit log.
      await os('user', 'create', '--password', PASS, 'cold-member');
      await os('role', 'add', '--project', 'admin', '--user', 'cold-member', 'member');
      const asMember = await t.d.openstack(
        ['server', 'migrate', id],
        passwordCliEnv(t.d, 'cold-member', PASS),
      );
      expect(asMember.code).not.toBe(0);
      expect(asMember.stderr).toMatch(/compute:servers:migrate.*HTTP 403/s);
      const denied = JSON.parse(
        (await t.d.bulwark(['audit', 'list', '--outcome', 'denied', '-f', 'json'])).stdout,
      ) as { user_name: string; target_id: string; reason: string }[];
      expect(
        denied.some((a) => a.user_name === 'cold-member' && a.target_id === id && /migration/.test(a.reason)),
      ).toBe(true);
      expect(await hostOf('cold-aa-1')).toBe(hosts[0]);
      const migs = await osJson('server', 'migration', 'list', '--server', id);
      expect(migs).toEqual([]);
    };

    it('bulwark host evacuate empties a host of a running and a stopped guest', async () => {
      // Both on one host: the other two are out of scheduling while they are made.
      const host = 'hv-1';
      for (const h of ['hv-2', 'hv-3']) {
        const r = await t.d.bulwark(['host', 'disable', h]);
        expect(r.code, r.stdout + r.stderr).toBe(0);
      }
      try {
        await boot('evac-1');
        await boot('evac-2');
      } finally {
        for (const h of ['hv-2', 'hv-3']) expect((await t.d.bulwark(['host', 'enable', h])).code).toBe(0);
      }
      expect(await hostOf('evac-1')).toBe(host);
      expect(await hostOf('evac-2')).toBe(host);
      await os('server', 'stop', 'evac-2');
      await until('evac-2', 'SHUTOFF');
      const ev = await bulwarkLong(['host', 'evacuate', host, '-f', 'json']);
      expect(ev.code, ev.stderr + ev.stdout).toBe(0);
      const results = JSON.parse(ev.stdout) as {
        name: string;
        action: string;
        status: string;
        dest_host: string;
      }[];
      expect(results.map((r) => [r.name, r.action, r.status]).sort()).toEqual([
        ['evac-1', 'live-migration', 'done'],
        ['evac-2', 'migration', 'done'],
      ]);
      expect(ev.stderr).toMatch(/2\/2 servers/);
      for (const n of ['evac-1', 'evac-2']) expect(await hostOf(n)).not.toBe(host);
      expect((await show('evac-1')).status).toBe('ACTIVE');
      expect((await show('evac-2')).status).toBe('SHUTOFF');
      const hosts = JSON.parse((await t.d.bulwark(['host', 'list', '-f', 'json'])).stdout) as {
        name: string;
        state: string;
      }[];
      expect(hosts.find((h) => h.name === host)?.state).toBe('disabled');
      const left = execFileSync('ls', [join(t.dirOf.get(host)!, 'instances')], { encoding: 'utf8' });
      expect(left.split('\n').filter((e) => /^[0-9a-f-]{36}$/.test(e))).toEqual([]);
      for (const n of ['evac-1', 'evac-2']) await os('server', 'delete', '--wait', n);
    });
  },
);
