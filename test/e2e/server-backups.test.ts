/**
 * Whole-server backups (docs/backups.md) with the real `bulwark` and
 * `openstack` CLIs against the real daemon and a real guest (TCG): the guest
 * writes a marker to its (encrypted) root disk and to an encrypted volume; a
 * backup operator backs the running server up; the repository holds no
 * plaintext; the server and volume are destroyed; a member's and the
 * operator's restores are refused and audited; the admin restores to a new
 * server that boots with the data; an in-place restore waits for a second
 * admin and then puts the disks back as they were; a tampered chunk makes
 * verify and restore fail loudly and nothing is made.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type DaemonProcess,
  passwordCliEnv,
  startDaemonProcess,
  stopDaemon,
} from '../helpers/daemon-process.js';
import { guestImage, waitFor } from '../helpers/guests.js';
import { filesUnder } from '../helpers/leaks.js';
import { privateNetwork } from '../helpers/networks.js';

const PASS = 'Long-enough-pass-1';

describe.runIf(process.getuid?.() === 0)(
  'server backups against bulwark serve (root disk + volume, real guest)',
  { timeout: 1_500_000 },
  () => {
    let d: DaemonProcess;
    const tag = randomBytes(8).toString('hex');
    const marker = `bwsrv-${tag}-`;
    const keyDir = mkdtempSync(join(tmpdir(), 'bulwark-recovery-'));
    const recoveryKey = join(keyDir, 'recovery.pem');
    const as = (user: string) => passwordCliEnv(d, user, PASS);
    const os = (...args: string[]) => d.os(...args);
    const bw = async (args: string[], env?: Record<string, string>) => {
      const r = await d.bulwark(args, env);
      if (r.code !== 0) throw new Error(`bulwark ${args.join(' ')}: ${r.stderr}`);
      return r.stdout;
    };
    const serverStatus = async (vm: string) => {
      const s = await d.osJson('server', 'show', vm);
      if (s.status === 'ERROR') throw new Error(`${vm} in ERROR: ${JSON.stringify(s.fault)}`);
      return s.status as string;
    };
    const untilServer = (vm: string, want: string) =>
      waitFor(`${vm} ${want}`, async () => (await serverStatus(vm)) === want, 300_000, 1000);
    const consoleOf = (vm: string) => os('console', 'log', 'show', vm);
    /** The guest's report of boot number `n` (its root disk counts its boots): what it found on its disks. */
    const boot = (vm: string, n: number) =>
      waitFor(
        `${vm} boot ${n} report`,
        async () => {
          const log = await consoleOf(vm);
          const m = log.match(new RegExp(`BW-BOOT:${n}\\r?\\nBW-ROOT:(\\S*)\\r?\\nBW-VOL:(\\S*)`));
          return m ? { root: m[1]!, vol: m[2]! } : undefined;
        },
        300_000,
        2000,
      );
    const audited = async (action: string, outcome?: string) =>
      JSON.parse(
        await bw([
          'audit',
          'list',
          '--action',
          action,
          ...(outcome ? ['--outcome', outcome] : []),
          '-f',
          'json',
        ]),
      ) as { user_name: string; outcome: string; target_id: string; reason: string }[];
    let sb1 = '';
    /** Starts a server backup as `user` (admin: the daemon's own admin) and waits (generously: the shared host is often loaded) until it is done. */
    const backUp = async (vm: string, name: string, user: string, ...more: string[]) => {
      const b = JSON.parse(
        await bw(
          ['server', 'backup', 'create', vm, '--name', name, ...more, '-f', 'json'],
          user === 'admin' ? undefined : as(user),
        ),
      );
      return waitFor(
        `server backup ${name}`,
        async () => {
          const s = JSON.parse(await bw(['server', 'backup', 'show', b.id, '-f', 'json']));
          if (s.status === 'error') throw new Error(`backup ${name} failed: ${s.fail_reason}`);
          return s.status === 'available' ? s : undefined;
        },
        900_000,
        2000,
      );
    };
    /** Waits until a restore from backup `id` has ended; throws its error if it failed. */
    const restored = (id: string) =>
      waitFor(
        `restore from ${id}`,
        async () => {
          const s = JSON.parse(await bw(['server', 'backup', 'show', id, '-f', 'json']));
          if (s.restore_error) throw new Error(`restore failed: ${s.restore_error}`);
          return s.status === 'available';
        },
        900_000,
        2000,
      );

    beforeAll(async () => {
      d = await startDaemonProcess();
    }, 600_000);
    afterAll(async () => {
      await stopDaemon(d);
      rmSync(keyDir, { recursive: true, force: true });
    }, 600_000);

    it('a backup operator backs up a running server (root disk, volume, definition); a member may not', async () => {
      expect(
        (await d.bulwark(['backup', 'repository', 'init', '--recovery-key-out', recoveryKey])).code,
      ).toBe(0);
      for (const [user, role] of [
        ['bob', 'backup-operator'],
        ['carol', 'member'],
        ['admin2', 'admin'],
      ] as const) {
        await os('user', 'create', '--password', PASS, user);
        await os('role', 'add', '--project', 'admin', '--user', user, role);
      }
      await os('volume', 'type', 'create', 'encrypted-ssd');
      await os(
        ...[
          'volume',
          'type',
          'set',
          '--encryption-provider',
          'luks',
          '--encryption-cipher',
          'aes-xts-plain64',
        ],
        ...['--encryption-key-size', '256', '--encryption-control-location', 'front-end', 'encrypted-ssd'],
      );
      await os('volume', 'create', '--size', '1', '--type', 'encrypted-ssd', 'sb-vol');
      // --disk 0: the root disk is the image's size (32 MiB), so the test reads little.
      await os('flavor', 'create', '--vcpus', '1', '--ram', '256', '--disk', '0', 'tiny');
      await os(
        ...['image', 'create', '--disk-format', 'raw', '--container-format', 'bare'],
        ...['--file', guestImage('bios.raw'), 'tiny-bios'],
      );
      await privateNetwork(d, 'sb-net', '10.21.0.0/24');
      // Each boot: count boots on the root disk, report what the disks hold, write the marker where missing.
      const f = join(d.dataDir, 'sb.sh');
      writeFileSync(
        f,
        [
          '#!/bin/sh',
          `A=bwsrv-; B=${tag}; M="$A$B-"`,
          'mkdir -p /mnt/r && mount -t vfat /dev/vda /mnt/r || exit 1',
          'n=$(( $(cat /mnt/r/boots 2>/dev/null || echo 0) + 1 )); echo $n > /mnt/r/boots',
          'r=$(head -c 64 /mnt/r/pattern 2>/dev/null | head -n 1)',
          '[ -n "$r" ] || yes "$M" | head -c 1048576 > /mnt/r/pattern',
          'sync; umount /mnt/r',
          'i=0; while [ ! -b /dev/vdb ]; do sleep 0.2; i=$((i+1)); [ $i -gt 1500 ] && exit 1; done',
          'v=$(head -c 64 /dev/vdb | head -n 1 | tr -d "\\000")',
          '[ -n "$v" ] || { yes "$M" | head -c 2097152 > /dev/vdb; sync; }',
          'echo "BW-BOOT:$n"; echo "BW-ROOT:$r"; echo "BW-VOL:$v"',
        ].join('\n'),
      );
      await os(
        ...['server', 'create', '--flavor', 'tiny', '--image', 'tiny-bios', '--network', 'sb-net'],
        ...['--user-data', f, '--property', 'owner=team-a', '--wait', 'vm'],
      );
      await waitFor(
        'sb-vol available',
        async () => (await d.osJson('volume', 'show', 'sb-vol')).status === 'available',
        120_000,
        1000,
      );
      await os('server', 'add', 'volume', 'vm', 'sb-vol');
      expect(await boot('vm', 1)).toEqual({ root: '', vol: '' });

      const member = await d.bulwark(['server', 'backup', 'create', 'vm', '--name', 'nope'], as('carol'));
      expect(member.code).not.toBe(0);
      expect(member.stderr).toMatch(/server:backups:create|403/);
      const made = await backUp('vm', 'sb1', 'bob');
      expect(made).toMatchObject({
        name: 'sb1',
        status: 'available',
        server_name: 'vm',
        is_incremental: false,
      });
      sb1 = made.id;
      expect(JSON.parse(made.volumes)).toEqual([
        expect.objectContaining({ id: (await d.osJson('volume', 'show', 'sb-vol')).id, size: 1 }),
      ]);
      expect(JSON.parse(made.networks)).toEqual([(await d.osJson('network', 'show', 'sb-net')).id]);
      expect(await serverStatus('vm')).toBe('ACTIVE'); // continued after the read
      // Unchanged: the next backup stores almost nothing new (dedup across backups).
      const incr = await backUp('vm', 'sb1-incr', 'bob', '--incremental');
      expect(incr.is_incremental).toBe(true);
      expect(incr.stored_bytes).toBeLessThan(made.stored_bytes / 10);
      const done = await audited('server:backups:create:done', 'success');
      expect(done.find((a) => a.target_id === sb1)).toMatchObject({ user_name: 'bob' });
    });

    it('no file of the repository holds the marker; verify checks every chunk of every disk', async () => {
      const needle = Buffer.from(marker);
      for (const file of filesUnder(join(d.dataDir, 'backups')))
        expect(readFileSync(file).includes(needle), file).toBe(false);
      const v = JSON.parse(await bw(['server', 'backup', 'verify', 'sb1', '-f', 'json'], as('bob')));
      expect(v).toMatchObject({ ok: true, decrypted: false });
      const full = JSON.parse(
        await bw(['server', 'backup', 'verify', 'sb1', '--recovery-key', recoveryKey, '-f', 'json']),
      );
      expect(full).toMatchObject({ ok: true, decrypted: true });
      expect(JSON.parse(full.disks).map((x: { name: string }) => x.name)).toEqual([
        'root',
        `volume:${(await d.osJson('volume', 'show', 'sb-vol')).id}`,
      ]);
    });

    it('the server and volume are destroyed; non-admins may not restore (audited); the admin restores to a new server', async () => {
      // Deleting the server lets go of its volume (no hot-unplug to wait for), then the volume goes too.
      await os('server', 'delete', '--wait', 'vm');
      await waitFor(
        'sb-vol released',
        async () => (await d.osJson('volume', 'show', 'sb-vol')).status === 'available',
        300_000,
        2000,
      );
      await os('volume', 'delete', 'sb-vol');
      for (const user of ['bob', 'carol']) {
        const r = await d.bulwark(
          ['server', 'backup', 'restore', sb1, '--recovery-key', recoveryKey, '--name', 'stolen'],
          as(user),
        );
        expect(r.code).not.toBe(0);
        expect(r.stderr).toMatch(/403/);
      }
      const denied = await audited('server:backups:restore', 'denied');
      expect(denied.map((a) => a.user_name)).toEqual(expect.arrayContaining(['bob', 'carol']));
      expect(denied.every((a) => a.target_id === sb1)).toBe(true);
      expect((await d.openstack(['server', 'show', 'stolen'])).code).not.toBe(0);

      const r = JSON.parse(
        await bw([
          'server',
          'backup',
          'restore',
          'sb1',
          '--recovery-key',
          recoveryKey,
          '--name',
          'vm2',
          '-f',
          'json',
        ]),
      );
      expect(r.in_place).toBe(false);
      await restored(sb1);
      await untilServer('vm2', 'ACTIVE');
      // The restored guest counts its second boot and finds both markers.
      const seen = await boot('vm2', 2);
      expect(seen.root).toBe(marker);
      expect(seen.vol).toBe(marker);
      const vm2 = await d.osJson('server', 'show', 'vm2');
      expect(vm2.id).toBe(r.server_id);
      expect(JSON.stringify(vm2.properties)).toMatch(new RegExp(`restored_from.*${sb1}`));
      expect(JSON.stringify(vm2.properties)).toMatch(/owner.*team-a/);
      expect(JSON.stringify(vm2.addresses)).toMatch(/sb-net/);
      const vols = (await d.osJson('volume', 'list', '--long')) as { Name: string; Status: string }[];
      const restoredVol = vols.find((v) => v.Name === 'vm2-sb-vol');
      expect(restoredVol?.Status).toBe('in-use');
      expect((await os('volume', 'show', 'vm2-sb-vol', '-c', 'encrypted', '-f', 'value')).trim()).toBe(
        'True',
      );
      const ok = await audited('server:backups:restore:done', 'success');
      expect(ok[0]).toMatchObject({ user_name: 'admin', target_id: sb1 });
    });

    it('in place: held for a second admin (the requester cannot approve), then the disks are as backed up', async () => {
      await os('server', 'stop', 'vm2');
      await untilServer('vm2', 'SHUTOFF');
      const sb2 = await backUp('vm2', 'sb2', 'bob');
      // A third boot changes the root disk (its boot count) after sb2.
      await os('server', 'start', 'vm2');
      await boot('vm2', 3);
      await os('server', 'stop', 'vm2');
      await untilServer('vm2', 'SHUTOFF');

      const plain = await d.bulwark([
        'server',
        'backup',
        'restore',
        'sb2',
        '--in-place',
        '--recovery-key',
        recoveryKey,
        '-f',
        'json',
      ]);
      expect(plain.code, plain.stderr).toBe(0);
      const held = JSON.parse(plain.stdout);
      expect(held).toMatchObject({ kind: 'restore-in-place', status: 'pending' });
      const self = await d.bulwark(['approval', 'approve', held.id, '--reason', 'mine']);
      expect(self.code).not.toBe(0);
      expect(self.stderr).toMatch(/two-person rule/);
      // The approved request runs with the repository unlocked (the key is never stored with it).
      await bw(['backup', 'unlock', '--recovery-key', recoveryKey, '--seconds', '600']);
      const ok = await d.bulwark(
        ['approval', 'approve', held.id, '--reason', 'reviewed', '-f', 'json'],
        as('admin2'),
      );
      expect(ok.code, ok.stderr).toBe(0);
      expect(JSON.parse(ok.stdout)).toMatchObject({ status: 'executed' });
      await restored(sb2.id);
      await bw(['backup', 'lock']);
      const done = await audited('server:backups:restore:done', 'success');
      expect(done[0]).toMatchObject({ target_id: sb2.id });
      expect(done[0]!.reason).toMatch(/in place/);
      // Booted again: the count is back to what sb2 held (2), so this is boot 3 once more, with the data.
      const before = (await consoleOf('vm2')).match(/BW-BOOT:3/g)?.length ?? 0;
      await os('server', 'start', 'vm2');
      await waitFor(
        'vm2 boots from the restored disk',
        async () => ((await consoleOf('vm2')).match(/BW-BOOT:3/g)?.length ?? 0) > before,
        300_000,
        2000,
      );
      const again = await boot('vm2', 3);
      expect(again).toEqual({ root: marker, vol: marker });
      expect(await consoleOf('vm2')).not.toMatch(/BW-BOOT:4/);
    });

    // Self-contained (runs alone with -t "DR drill"): its own tiny server without volumes, so it reads little.
    it('DR drill: the newest backup boots in an isolated network, RPO/RTO reported, everything cleaned up', async () => {
      if (!existsSync(recoveryKey))
        expect(
          (await d.bulwark(['backup', 'repository', 'init', '--recovery-key-out', recoveryKey])).code,
        ).toBe(0);
      if ((await d.openstack(['user', 'show', 'carol'])).code !== 0) {
        await os('user', 'create', '--password', PASS, 'carol');
        await os('role', 'add', '--project', 'admin', '--user', 'carol', 'member');
      }
      await os('flavor', 'create', '--vcpus', '1', '--ram', '256', '--disk', '0', 'dr-tiny');
      await os(
        ...['image', 'create', '--disk-format', 'raw', '--container-format', 'bare'],
        ...['--file', guestImage('bios.raw'), 'dr-bios'],
      );
      await os('server', 'create', '--flavor', 'dr-tiny', '--image', 'dr-bios', '--wait', 'drsrc');
      await backUp('drsrc', 'dr1', 'admin');
      // A protected server with no backup at all: its drill fails with the reason.
      await os('server', 'create', '--flavor', 'dr-tiny', '--image', 'dr-bios', 'nobackup');
      await bw(['dr', 'target', 'set', 'nobackup', '--rpo', '86400', '--rto', '3600']);
      await bw([
        'dr',
        'target',
        'set',
        'drsrc',
        '--rpo',
        '86400',
        '--rto',
        '3600',
        '--boot-marker',
        'BULWARK-GUEST-READY',
      ]);
      const member = await d.bulwark(['dr', 'drill', '--no-wait'], as('carol'));
      expect(member.code).not.toBe(0);
      expect(member.stderr).toMatch(/403/);
      const netsBefore = ((await d.osJson('network', 'list')) as { Name: string }[])
        .map((n) => n.Name)
        .sort();
      const ids = ['drsrc', 'nobackup'];
      const started = JSON.parse(
        await bw([
          'dr',
          'drill',
          '--server',
          ...ids,
          '--no-wait',
          '--recovery-key',
          recoveryKey,
          '-f',
          'json',
        ]),
      ) as { id: string }[];
      expect(started).toHaveLength(2);
      const rows = await waitFor(
        'the drill to finish',
        async () => {
          const all = JSON.parse(await bw(['dr', 'history', '-f', 'json'])) as Record<string, unknown>[];
          const mine = all.filter((r) => started.some((x) => x.id === r.id));
          return mine.every((r) => r.status === 'done') ? mine : undefined;
        },
        1_200_000,
        3000,
      );
      const srcId = (await d.osJson('server', 'show', 'drsrc')).id;
      const ok = rows.find((r) => r.server_id === srcId)!;
      expect(ok, JSON.stringify(rows)).toMatchObject({
        verdict: 'pass',
        rpo_target_s: 86400,
        rto_target_s: 3600,
      });
      expect(ok.rpo_s).toBeGreaterThanOrEqual(0);
      expect(ok.rto_s).toBeGreaterThan(0);
      expect(ok.backup_id).toBeTruthy();
      const none = rows.find((r) => r.server_id !== srcId)!;
      expect(none).toMatchObject({ verdict: 'fail' });
      expect(String(none.reason)).toMatch(/no finished server backup/);
      // Cleaned up: no drill server, volume, group or network is left.
      expect(JSON.stringify(await d.osJson('server', 'list'))).not.toMatch(/dr-drill-/);
      expect(((await d.osJson('network', 'list')) as { Name: string }[]).map((n) => n.Name).sort()).toEqual(
        netsBefore,
      );
      expect(JSON.stringify(await d.osJson('security', 'group', 'list'))).not.toMatch(/dr-drill-/);
      expect(JSON.stringify(await d.osJson('volume', 'list'))).not.toMatch(/dr-drill-/);
      const audit = await audited('dr:drill:done');
      expect(audit.map((a) => a.outcome).sort()).toEqual(['failure', 'success']);
      // The compliance check reads these drills: the drilled server passes, the one without a backup fails.
      const report = JSON.parse(
        await bw(['compliance', 'report', '--framework', 'pci-dss', '--format', 'json']),
      );
      const dr = report.rows.find((r: { control: { id: string } }) => r.control.id === 'dr-drill').result;
      expect(dr.verdict).toBe('fail');
      expect(dr.offenders.map((o: { name: string; detail: string }) => `${o.name}: ${o.detail}`)).toEqual([
        expect.stringMatching(/^nobackup: last drill .* failed: .*no finished server backup/),
      ]);
    });

    it('a tampered chunk: verify and restore fail loudly, nothing is made', async () => {
      const seal = JSON.parse(readFileSync(join(d.dataDir, 'backups', 'backups', `${sb1}.seal`), 'utf8'));
      const files = Object.keys(seal.chunks).map((id) =>
        join(d.dataDir, 'backups', 'chunks', id.slice(0, 2), id),
      );
      const victim = files.sort((a, b) => readFileSync(b).length - readFileSync(a).length)[0]!;
      const blob = readFileSync(victim);
      blob[Math.floor(blob.length / 2)]! ^= 0x01;
      writeFileSync(victim, blob);
      const v = await d.bulwark(['server', 'backup', 'verify', 'sb1']);
      expect(v.code).not.toBe(0);
      expect(v.stderr).toMatch(/integrity check failed.*altered/);
      const servers = (await d.osJson('server', 'list')).length;
      const r = await d.bulwark([
        'server',
        'backup',
        'restore',
        'sb1',
        '--recovery-key',
        recoveryKey,
        '--name',
        'vm3',
      ]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/integrity check failed/);
      const inPlace = await d.bulwark([
        'server',
        'backup',
        'restore',
        'sb1-incr',
        '--in-place',
        '--recovery-key',
        recoveryKey,
      ]);
      // sb1-incr shares all of sb1's chunks: it fails the same way, before any approval is asked for.
      expect(inPlace.code).not.toBe(0);
      expect(inPlace.stderr).toMatch(/integrity check failed/);
      expect((await d.osJson('server', 'list')).length).toBe(servers);
      expect((await d.openstack(['server', 'show', 'vm3'])).code).not.toBe(0);
    });
  },
);
