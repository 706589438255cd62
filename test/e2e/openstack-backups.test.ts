/**
 * Backups with the real `openstack` and `bulwark` CLIs against the real
 * daemon and a real guest (TCG): the guest writes a marker to its encrypted
 * volume; a backup operator backs the in-use volume up; the repository holds
 * no plaintext; the volume and the guest are destroyed; the operator's and a
 * member's restores are refused and audited; the admin restores with the
 * recovery key and a new guest reads the marker back; a tampered chunk makes
 * verify and restore fail loudly and leaves the target volume's file as it was.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type DaemonProcess,
  passwordCliEnv,
  startDaemonProcess,
  stopDaemon,
} from '../helpers/daemon-process.js';
import { imageCreateArgs, waitFor } from '../helpers/guests.js';
import { filesUnder } from '../helpers/leaks.js';
import { privateNetwork } from '../helpers/networks.js';

describe.runIf(process.getuid?.() === 0)(
  'volume backups against bulwark serve (encrypted repository, real guest)',
  { timeout: 1_200_000 },
  () => {
    let d: DaemonProcess;
    const tag = randomBytes(8).toString('hex');
    const marker = `bwbak-${tag}-`;
    // The recovery key lives outside the daemon's data dir, as an admin would keep it offline.
    const keyDir = mkdtempSync(join(tmpdir(), 'bulwark-recovery-'));
    const recoveryKey = join(keyDir, 'recovery.pem');
    const as = (user: string) => passwordCliEnv(d, user, 'Long-enough-pass-1');
    beforeAll(async () => {
      d = await startDaemonProcess();
    });
    afterAll(async () => {
      await stopDaemon(d);
      rmSync(keyDir, { recursive: true, force: true });
    });
    const os = (...args: string[]) => d.os(...args);
    const status = async (kind: 'volume' | 'volume backup', name: string) => {
      const v = await d.osJson(...kind.split(' '), 'show', name);
      if (v.status === 'error')
        throw new Error(`${kind} ${name} in error: ${v.fail_reason ?? v['bulwark:fault']}`);
      return v.status as string;
    };
    const until = (kind: 'volume' | 'volume backup', name: string, want: string) =>
      // Generous: the shared test host is often loaded (a 1 GiB volume under TCG, read through qemu-nbd).
      waitFor(`${kind} ${name} ${want}`, async () => (await status(kind, name)) === want, 400_000, 1000);
    const console = (vm: string) => os('console', 'log', 'show', vm);
    /** Boots a tiny guest whose user data waits for /dev/vdb and runs `body` (with $M the marker), then attaches `volume`. */
    const bootWith = async (vm: string, volume: string, body: string[]) => {
      const f = join(d.dataDir, `${vm}.sh`);
      writeFileSync(
        f,
        [
          '#!/bin/sh',
          `A=bwbak-; B=${tag}; M="$A$B-"`,
          'i=0; while [ ! -b /dev/vdb ]; do sleep 0.2; i=$((i+1)); [ $i -gt 1500 ] && exit 1; done',
          ...body,
        ].join('\n'),
      );
      await os(
        ...['server', 'create', '--flavor', 'tiny', '--image', 'tiny-bios', '--network', 'bak-net'],
        ...['--user-data', f, '--wait', vm],
      );
      await os('server', 'add', 'volume', vm, volume);
    };
    const volumeFile = (id: string) => join(d.dataDir, 'instances', '.volumes', `${id}.qcow2`);
    let backupId = '';

    it('the repository is made with a recovery key the daemon never sees', async () => {
      const r = await d.bulwark([
        'backup',
        'repository',
        'init',
        '--recovery-key-out',
        recoveryKey,
        '-f',
        'json',
      ]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/does not keep it/);
      const pem = readFileSync(recoveryKey, 'utf8');
      expect(pem).toMatch(/BEGIN PRIVATE KEY/);
      const body = pem.split('\n').filter((l) => l && !l.startsWith('-----'))[0]!;
      for (const f of filesUnder(d.dataDir))
        expect(readFileSync(f).includes(Buffer.from(body)), f).toBe(false);
      for (const [user, role] of [
        ['bob', 'backup-operator'],
        ['carol', 'member'],
      ] as const) {
        await os('user', 'create', '--password', 'Long-enough-pass-1', user);
        await os('role', 'add', '--project', 'admin', '--user', user, role);
      }
    });

    it('a backup operator backs up the in-use volume of a running guest; a member may not', async () => {
      await os('volume', 'type', 'create', 'encrypted-ssd');
      await os(
        'volume',
        'type',
        'set',
        '--encryption-provider',
        'luks',
        '--encryption-cipher',
        'aes-xts-plain64',
        '--encryption-key-size',
        '256',
        '--encryption-control-location',
        'front-end',
        'encrypted-ssd',
      );
      await os('volume', 'create', '--size', '1', '--type', 'encrypted-ssd', 'data-vol');
      await until('volume', 'data-vol', 'available');
      await os('flavor', 'create', '--vcpus', '1', '--ram', '256', '--disk', '1', 'tiny');
      await os(...imageCreateArgs('tiny-bios', 'bios.raw'));
      await privateNetwork(d, 'bak-net', '10.19.0.0/24');
      // Marker lines, then random bytes: brotli shrinks the lines to almost nothing, so the random MiB is
      // what makes the full backup's stored size something the incremental's can be compared with.
      await bootWith('vm', 'data-vol', [
        '{ yes "$M" | head -c 1048576; head -c 1048576 /dev/urandom; } > /dev/vdb; sync; echo BW-BAK-WRITTEN',
      ]);
      await waitFor(
        'the guest to write',
        async () => (await console('vm')).includes('BW-BAK-WRITTEN'),
        180_000,
        2000,
      );
      // The volume file's last change must be older than the skip's margin when b1's read begins, so
      // that b1's stamp is recorded (src/backups/unchanged.ts).
      await sleep(2500);

      const member = await d.openstack(
        ['volume', 'backup', 'create', '--force', '--name', 'nope', 'data-vol'],
        as('carol'),
      );
      expect(member.code).not.toBe(0);
      expect(member.stderr).toMatch(/volume:backups:create.*HTTP 403/s);
      const without = await d.openstack(
        ['volume', 'backup', 'create', '--name', 'b1', 'data-vol'],
        as('bob'),
      );
      expect(without.stderr).toMatch(/in-use with --force/);

      const made = await d.openstack(
        ['volume', 'backup', 'create', '--force', '--name', 'b1', 'data-vol', '-f', 'json'],
        as('bob'),
      );
      expect(made.code, made.stderr).toBe(0);
      backupId = JSON.parse(made.stdout).id;
      await until('volume backup', 'b1', 'available');
      expect((await os('server', 'show', 'vm', '-c', 'status', '-f', 'value')).trim()).toBe('ACTIVE'); // resumed
      const b1 = await d.osJson('volume', 'backup', 'show', 'b1');
      expect(b1.volume_id).toBe((await d.osJson('volume', 'show', 'data-vol')).id);
      expect(b1.is_incremental).toBe(false);

      // Unchanged: the incremental stores (almost) nothing new.
      await d.openstack(
        ['volume', 'backup', 'create', '--force', '--incremental', '--name', 'b1-incr', 'data-vol'],
        as('bob'),
      );
      await until('volume backup', 'b1-incr', 'available');
      const incr = await d.osJson('volume', 'backup', 'show', 'b1-incr');
      expect(incr.is_incremental).toBe(true);
      const full = (await d.bulwark(['backup', 'show', 'b1', '-f', 'json'])).stdout;
      const incrShow = (await d.bulwark(['backup', 'show', 'b1-incr', '-f', 'json'])).stdout;
      expect(JSON.parse(incrShow)['bulwark:stored_bytes']).toBeLessThan(
        JSON.parse(full)['bulwark:stored_bytes'] / 10,
      );
      // Nothing wrote the volume since b1 read it (the guest idles, paused for each read): its qcow2
      // file's device, inode, size, mtime and ctime are as b1 recorded them, so it is not read again.
      expect(JSON.parse(full)['bulwark:read_bytes']).toBe(1024 ** 3);
      expect(JSON.parse(incrShow)['bulwark:read_bytes']).toBe(0);

      const list = await d.osJson('volume', 'backup', 'list');
      expect(list.map((b: { Name: string }) => b.Name).sort()).toEqual(['b1', 'b1-incr']);
    });

    it('no file of the daemon holds the marker in clear; verify checks every chunk', async () => {
      const needle = Buffer.from(marker);
      const repo = filesUnder(join(d.dataDir, 'backups'));
      expect(repo.some((f) => f.includes('/chunks/'))).toBe(true);
      for (const f of filesUnder(d.dataDir)) expect(readFileSync(f).includes(needle), f).toBe(false);
      const v = await d.bulwark(['backup', 'verify', 'b1', '-f', 'json'], as('bob'));
      expect(v.code, v.stderr).toBe(0);
      expect(JSON.parse(v.stdout)).toMatchObject({ ok: true, decrypted: false });
      const full = await d.bulwark(['backup', 'verify', 'b1', '--recovery-key', recoveryKey, '-f', 'json']);
      expect(full.code, full.stderr).toBe(0);
      expect(JSON.parse(full.stdout)).toMatchObject({ ok: true, decrypted: true });
    });

    it('the guest and its volume are destroyed; restore is refused to non-admins (audited) and needs the recovery key', async () => {
      await os('server', 'remove', 'volume', 'vm', 'data-vol');
      await until('volume', 'data-vol', 'available');
      await os('volume', 'delete', 'data-vol');
      await os('server', 'delete', '--wait', 'vm');
      await waitFor(
        'volume gone',
        async () => (await d.openstack(['volume', 'show', 'data-vol'])).code !== 0,
        60_000,
        1000,
      );

      for (const user of ['bob', 'carol']) {
        const r = await d.openstack(['volume', 'backup', 'restore', 'b1', 'stolen'], as(user));
        expect(r.code).not.toBe(0);
        expect(r.stderr).toMatch(/volume:backups:restore.*HTTP 403/s);
        const k = await d.bulwark(
          ['backup', 'restore', 'b1', '--recovery-key', recoveryKey, '--name', 'stolen'],
          as(user),
        );
        expect(k.code).not.toBe(0);
      }
      const audit = JSON.parse(
        (
          await d.bulwark([
            'audit',
            'list',
            '--action',
            'volume:backups:restore',
            '--outcome',
            'denied',
            '-f',
            'json',
          ])
        ).stdout,
      ) as { user_name: string; target_id: string }[];
      expect(audit.map((a) => a.user_name)).toEqual(expect.arrayContaining(['bob', 'carol']));
      expect(audit.every((a) => a.target_id === backupId)).toBe(true);
      const locked = await d.openstack(['volume', 'backup', 'restore', 'b1', 'restored']);
      expect(locked.stderr).toMatch(/repository is locked/);
      expect((await d.openstack(['volume', 'show', 'stolen'])).code).not.toBe(0);
      expect((await d.openstack(['volume', 'show', 'restored'])).code).not.toBe(0);
    });

    it('the admin restores to a new volume and a new guest reads the data it had', async () => {
      const u = await d.bulwark(['backup', 'unlock', '--recovery-key', recoveryKey, '--seconds', '300']);
      expect(u.code, u.stderr).toBe(0);
      const r = await d.openstack(['volume', 'backup', 'restore', 'b1', 'restored']);
      // python-openstackclient 6.0.0's `volume backup restore` cannot print Cinder's (202) answer; the
      // restore has been accepted by then. Anything else is a real failure.
      if (r.code !== 0) expect(r.stderr).toMatch(/cannot unpack non-iterable VolumeBackupsRestore/);
      await until('volume', 'restored', 'available');
      await waitFor(
        'restore done',
        async () => (await status('volume backup', 'b1')) === 'available',
        60_000,
        1000,
      );
      expect((await os('volume', 'show', 'restored', '-c', 'encrypted', '-f', 'value')).trim()).toBe('True');
      await bootWith('vm2', 'restored', ['echo "BW-READ:$(head -c 64 /dev/vdb)"']);
      const log = await waitFor(
        'the guest to read',
        async () => {
          const l = await console('vm2');
          return l.includes('BW-READ:') ? l : undefined;
        },
        180_000,
        2000,
      );
      // The writer wrote `yes "$M"` lines: the restored volume starts with the marker, line after line.
      expect(log).toMatch(new RegExp(`BW-READ:${marker}\\r?\\n${marker}\\r?\\n`));
      const done = JSON.parse(
        (await d.bulwark(['audit', 'list', '--action', 'volume:backups:restore:done', '-f', 'json'])).stdout,
      ) as { user_name: string; outcome: string; target_id: string }[];
      expect(done[0]).toMatchObject({ user_name: 'admin', outcome: 'success', target_id: backupId });
      await os('server', 'remove', 'volume', 'vm2', 'restored');
      await until('volume', 'restored', 'available');
    });

    it('a tampered chunk: verify and restore fail loudly, the target volume is untouched', async () => {
      const seal = JSON.parse(
        readFileSync(join(d.dataDir, 'backups', 'backups', `${backupId}.seal`), 'utf8'),
      );
      const chunkIds = Object.keys(seal.chunks);
      // Tamper with the chunk that holds the marker (the largest stored one, not the zero chunk).
      const files = chunkIds.map((id) => join(d.dataDir, 'backups', 'chunks', id.slice(0, 2), id));
      const target = files.sort((a, b) => readFileSync(b).length - readFileSync(a).length)[0]!;
      const blob = readFileSync(target);
      blob[Math.floor(blob.length / 2)]! ^= 0x01;
      writeFileSync(target, blob);

      const v = await d.bulwark(['backup', 'verify', 'b1']);
      expect(v.code).not.toBe(0);
      expect(v.stderr).toMatch(/integrity check failed.*altered/);
      const vk = await d.bulwark(['backup', 'verify', 'b1', '--recovery-key', recoveryKey]);
      expect(vk.code).not.toBe(0);

      const restoredId = (await d.osJson('volume', 'show', 'restored')).id as string;
      const before = createHash('sha256')
        .update(readFileSync(volumeFile(restoredId)))
        .digest('hex');
      const inPlace = await d.openstack(['volume', 'backup', 'restore', '--force', 'b1', 'restored']);
      expect(inPlace.code).not.toBe(0);
      expect(inPlace.stderr).toMatch(/integrity check failed/);
      const fresh = await d.bulwark([
        'backup',
        'restore',
        'b1',
        '--recovery-key',
        recoveryKey,
        '--name',
        'fresh',
      ]);
      expect(fresh.code).not.toBe(0);
      expect(fresh.stderr).toMatch(/integrity check failed/);
      expect((await d.openstack(['volume', 'show', 'fresh'])).code).not.toBe(0); // nothing was made
      expect(await status('volume', 'restored')).toBe('available');
      const after = createHash('sha256')
        .update(readFileSync(volumeFile(restoredId)))
        .digest('hex');
      expect(after).toBe(before);
      // The incremental shares that chunk: it fails the same way.
      expect((await d.bulwark(['backup', 'verify', 'b1-incr'])).code).not.toBe(0);
    });
  },
);
