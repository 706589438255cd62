/**
 * Volume snapshots through the real `openstack` CLI against the real daemon
 * (encrypted volume, real qemu-img internal snapshots), verbatim:
 * `openstack volume snapshot create --volume VOL --description "..." NAME`,
 * list, show, delete; refused without a description; the lifecycle policy
 * (`bulwark snapshot policy set`) refuses past the count or prunes the oldest.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DaemonProcess, startDaemonProcess, stopDaemon } from '../helpers/daemon-process.js';
import { waitFor } from '../helpers/guests.js';

describe.runIf(process.getuid?.() === 0)(
  'openstack volume snapshots against bulwark serve',
  { timeout: 300_000 },
  () => {
    let d: DaemonProcess;
    let volumeId: string;
    beforeAll(async () => {
      d = await startDaemonProcess();
    });
    afterAll(() => stopDaemon(d));
    const os = (...args: string[]) => d.os(...args);
    const volumeFile = () => join(d.dataDir, 'instances', '.volumes', `${volumeId}.qcow2`);
    const fileSnapshots = () =>
      (JSON.parse(execFileSync('qemu-img', ['info', '-U', '--output=json', volumeFile()]).toString())
        .snapshots ?? []) as { name: string }[];
    const available = (id: string) =>
      waitFor(
        `snapshot ${id} available`,
        async () => {
          const s = await d.osJson('volume', 'snapshot', 'show', id);
          if (s.status === 'error') throw new Error(`snapshot in error: ${s['bulwark:fault']}`);
          return s.status === 'available';
        },
        60_000,
        1000,
      );

    it('an encrypted volume to snapshot', async () => {
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
      volumeId = (await d.osJson('volume', 'create', '--size', '1', '--type', 'encrypted-ssd', 'db-data')).id;
      await waitFor(
        'volume available',
        async () => (await d.osJson('volume', 'show', 'db-data')).status === 'available',
        60_000,
        1000,
      );
    });

    it('refuses a snapshot without a description, and creates nothing', async () => {
      const r = await d.openstack(['volume', 'snapshot', 'create', '--volume', 'db-data', 'pre-upgrade']);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/needs a description/);
      expect(r.stderr).toMatch(/HTTP 400/);
      expect(await d.osJson('volume', 'snapshot', 'list')).toEqual([]);
      expect(fileSnapshots()).toEqual([]);
      const audit = await d.bulwark(['audit', 'list', '--action', 'volume:snapshots:create', '-f', 'json']);
      expect(JSON.parse(audit.stdout)[0]).toMatchObject({ outcome: 'failure', status: 400 });
    });

    it('the spec’s command verbatim: named <purpose>-<UTC time>, inside the encrypted file', async () => {
      const s = await d.osJson(
        'volume',
        'snapshot',
        'create',
        '--volume',
        'db-data',
        '--description',
        'Before the schema upgrade',
        'pre-upgrade',
      );
      expect(s.name).toMatch(/^pre-upgrade-\d{8}T\d{6}Z$/);
      expect(s.description).toBe('Before the schema upgrade');
      await available(s.id);
      const list = await d.osJson('volume', 'snapshot', 'list');
      expect(list).toEqual([
        expect.objectContaining({ ID: s.id, Name: s.name, Status: 'available', Size: 1 }),
      ]);
      expect(fileSnapshots().map((x) => x.name)).toEqual([`bw-${s.id}`]);
      const info = JSON.parse(
        execFileSync('qemu-img', ['info', '-U', '--output=json', volumeFile()]).toString(),
      );
      expect(info.encrypted).toBe(true);
      // Cinder's rule: the volume is not deleted while it has snapshots.
      const del = await d.openstack(['volume', 'delete', 'db-data']);
      expect(del.code).not.toBe(0);
      await os('volume', 'snapshot', 'delete', s.id);
      await waitFor(
        'snapshot gone',
        async () => (await d.osJson('volume', 'snapshot', 'list')).length === 0,
        60_000,
        1000,
      );
      expect(fileSnapshots()).toEqual([]);
    });

    it('the lifecycle policy warns, refuses past the count, and with prune-oldest prunes (audited)', async () => {
      const set = await d.bulwark([
        'snapshot',
        'policy',
        'set',
        '--max-count',
        '2',
        '--max-age-days',
        '30',
        '-f',
        'json',
      ]);
      expect(set.code, set.stderr).toBe(0);
      expect(JSON.parse(set.stdout).effective).toEqual({
        max_count: 2,
        max_age_days: 30,
        prune_oldest: false,
      });
      const ids: string[] = [];
      for (const n of ['nightly', 'weekly']) {
        const s = await d.osJson(
          'volume',
          'snapshot',
          'create',
          '--volume',
          'db-data',
          '--description',
          n,
          n,
        );
        await available(s.id);
        ids.push(s.id);
      }
      const refused = await d.openstack([
        'volume',
        'snapshot',
        'create',
        '--volume',
        'db-data',
        '--description',
        'x',
        'x',
      ]);
      expect(refused.code).not.toBe(0);
      expect(refused.stderr).toMatch(/allows 2/);
      expect(fileSnapshots()).toHaveLength(2);
      const own = await d.bulwark(['snapshot', 'policy', 'set', '--volume', 'db-data', '--prune-oldest']);
      expect(own.code, own.stderr).toBe(0);
      const made = await d.bulwark([
        'snapshot',
        'create',
        'monthly',
        '--volume',
        'db-data',
        '--description',
        'm',
        '-f',
        'json',
      ]);
      expect(made.code, made.stderr).toBe(0);
      expect(made.stderr).toMatch(/Warning: .*2 of 2/);
      await available(JSON.parse(made.stdout).id);
      const left = (await d.osJson('volume', 'snapshot', 'list')).map((s: { ID: string }) => s.ID);
      expect(left.sort()).toEqual([ids[1], JSON.parse(made.stdout).id].sort());
      expect(fileSnapshots()).toHaveLength(2);
      const audit = JSON.parse(
        (await d.bulwark(['audit', 'list', '--action', 'snapshot:prune', '-f', 'json'])).stdout,
      );
      expect(audit[0]).toMatchObject({ target_id: ids[0], user_name: 'bulwark', outcome: 'success' });
      const listed = JSON.parse(
        (await d.bulwark(['snapshot', 'list', '--volume', 'db-data', '-f', 'json'])).stdout,
      );
      expect(listed).toHaveLength(2);
    });
  },
);
