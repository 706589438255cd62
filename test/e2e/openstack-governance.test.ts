/**
 * VM metadata rules, change history and approvals through the real
 * `openstack` CLI and `bulwark` against the real daemon (docs/metadata.md,
 * docs/approvals.md). One real guest boots (TCG) for the accepted server.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DaemonProcess, startDaemonProcess, stopDaemon } from '../helpers/daemon-process.js';
import { imageCreateArgs } from '../helpers/guests.js';

describe.runIf(process.getuid?.() === 0)(
  'openstack server --property governance',
  { timeout: 300_000 },
  () => {
    let d: DaemonProcess;
    // The volumes pool is a 4 MiB tmpfs of this suite's own (docs/storage-thresholds.md).
    const dataDir = mkdtempSync(join(tmpdir(), 'bulwark-e2e-gov-'));
    const volumesPool = join(dataDir, 'instances', '.volumes');
    let mounted = false;
    beforeAll(async () => {
      mkdirSync(volumesPool, { recursive: true });
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m,mode=0700', 'tmpfs', volumesPool]);
      mounted = true;
      d = await startDaemonProcess({ dataDir });
      await d.os('flavor', 'create', '--vcpus', '1', '--ram', '256', '--disk', '1', 'tiny');
      await d.os(...imageCreateArgs('tiny-bios', 'bios.raw', ['hw_firmware_type=bios']));
    });
    afterAll(async () => {
      if (mounted) execFileSync('umount', ['-l', volumesPool]);
      if (d) await stopDaemon(d);
      else rmSync(dataDir, { recursive: true, force: true });
    });

    const create = (...extra: string[]) =>
      d.openstack(['server', 'create', '--flavor', 'tiny', '--image', 'tiny-bios', ...extra]);

    it('refuses a production server without a ticket, with the reason, and creates nothing', async () => {
      const r = await create('--property', 'environment=production', 'vm-prod');
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/Servers with environment=production require ticket/);
      expect(r.stderr).toMatch(/HTTP 400/);
      const bad = await create('--property', 'created_by=mallory', 'vm-liar');
      expect(bad.code).not.toBe(0);
      expect(bad.stderr).toMatch(/created_by is set by the platform/);
      expect(await d.osJson('server', 'list')).toEqual([]);
    });

    it('takes it with a ticket, records who made it, keeps the rule on set/unset, and shows the history', async () => {
      const r = await create(
        '--property',
        'environment=production',
        '--property',
        'ticket=CHG-1',
        '--property',
        'purpose=web',
        '--wait',
        'vm-prod',
      );
      expect(r.code, r.stderr).toBe(0);
      const show = await d.osJson('server', 'show', 'vm-prod');
      expect(show.properties).toMatchObject({
        environment: 'production',
        ticket: 'CHG-1',
        created_by: 'admin',
      });
      await d.os(
        'server',
        'set',
        '--property',
        'ticket=CHG-2',
        '--property',
        'cost_center=Engineering',
        'vm-prod',
      );
      const unset = await d.openstack(['server', 'unset', '--property', 'ticket', 'vm-prod']);
      expect(unset.code).not.toBe(0);
      expect(unset.stderr).toMatch(/require ticket/);
      const wrong = await d.openstack(['server', 'set', '--property', 'environment=prod', 'vm-prod']);
      expect(wrong.code).not.toBe(0);
      expect(wrong.stderr).toMatch(/must be one of production, staging, development, test/);
      expect((await d.osJson('server', 'show', 'vm-prod')).properties).toMatchObject({
        ticket: 'CHG-2',
        cost_center: 'Engineering',
      });

      const h = await d.bulwark(['server', 'history', 'vm-prod', '-f', 'json']);
      expect(h.code, h.stderr).toBe(0);
      const changes = JSON.parse(h.stdout) as {
        change: string;
        user_name: string;
        diff: Record<string, unknown>;
      }[];
      expect(changes.map((c) => c.change)).toEqual(['create', 'metadata']);
      expect(changes[1]).toMatchObject({
        user_name: 'admin',
        diff: {
          'metadata.ticket': { from: 'CHG-1', to: 'CHG-2' },
          'metadata.cost_center': { from: null, to: 'Engineering' },
        },
      });
    });

    it('guest agent on a real guest: monitoring passes, guest-exec is refused until an admin grants it', async () => {
      await d.os('flavor', 'create', '--vcpus', '1', '--ram', '256', '--disk', '1', 'agent');
      await d.os('flavor', 'set', 'agent', '--property', 'hw:qemu_guest_agent=true');
      const r = await d.openstack([
        'server',
        'create',
        '--flavor',
        'agent',
        '--image',
        'tiny-bios',
        '--wait',
        'vm-agent',
      ]);
      expect(r.code, r.stderr).toBe(0);
      const bw = (...args: string[]) => d.bulwark(['server', 'guest-agent', 'vm-agent', ...args]);
      // qemu-ga starts with the guest's init; ask until it answers.
      let ping = await bw('guest-ping', '-f', 'json');
      for (let i = 0; i < 30 && ping.code !== 0; i++) {
        await new Promise((res) => setTimeout(res, 1000));
        ping = await bw('guest-ping', '-f', 'json');
      }
      expect(ping.code, ping.stderr).toBe(0);
      expect(JSON.parse(ping.stdout)).toEqual({});
      const info = await bw('guest-info', '-f', 'json');
      expect(JSON.parse(info.stdout).version).toMatch(/^\d+\.\d+/);
      const exec = await bw('guest-exec', '--arguments', '{"path": "/bin/sh", "arg": ["-c", "id"]}');
      expect(exec.code).toBe(1);
      expect(exec.stderr).toMatch(
        /guest-exec runs code or touches files in the guest: an admin must grant.*HTTP 403/,
      );
      const until = new Date(Date.now() + 600_000).toISOString();
      const grant = await d.bulwark([
        'server',
        'guest-agent-grant',
        'vm-agent',
        '--command',
        'guest-exec',
        '--expires',
        until,
        '--reason',
        'INC-1',
      ]);
      expect(grant.code, grant.stderr).toBe(0);
      const granted = await bw('guest-exec', '--arguments', '{"path": "/bin/true"}', '-f', 'json');
      expect(granted.code, granted.stderr).toBe(0);
      expect(JSON.parse(granted.stdout).pid).toBeGreaterThan(0);
      // guest-exec-status was not granted: still refused.
      expect((await bw('guest-exec-status', '--arguments', '{"pid": 1}')).code).toBe(1);
      const audit = await d.bulwark([
        'audit',
        'list',
        '--action',
        'compute:guest_agent:guest-exec',
        '-f',
        'json',
      ]);
      expect(JSON.parse(audit.stdout).map((e: { outcome: string }) => e.outcome)).toEqual([
        'success',
        'denied',
      ]);
    });

    it('refuses openstack volume create in a pool past 95% with the reason, and creates nothing', async () => {
      const s = statfsSync(volumesPool);
      const used = (s.blocks - s.bfree) * s.bsize;
      const usable = used + s.bavail * s.bsize;
      writeFileSync(join(volumesPool, 'filler'), Buffer.alloc(Math.ceil(usable * 0.97) - used));
      const r = await d.openstack(['volume', 'create', '--size', '1', 'v-full']);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(
        /Storage pool volumes \(.*\.volumes\) is 9\d(\.\d)?% used .* at or above its 95% limit/,
      );
      expect(await d.osJson('volume', 'list')).toEqual([]);
      rmSync(join(volumesPool, 'filler'));
      const ok = await d.openstack(['volume', 'create', '--size', '1', 'v-ok']);
      expect(ok.code, ok.stderr).toBe(0);
    });

    it('holds a server on a flavor above the size trigger: pending in bulwark approval list, nothing created', async () => {
      await d.os('flavor', 'create', '--vcpus', '32', '--ram', '256', '--disk', '1', 'huge');
      const before = (await d.osJson('server', 'list')).length;
      const r = await d.openstack([
        'server',
        'create',
        '--flavor',
        'huge',
        '--image',
        'tiny-bios',
        'vm-huge',
      ]);
      // The openstack CLI expects a server in the 202; it fails to show one, and nothing was created.
      expect(r.code).not.toBe(0);
      expect((await d.osJson('server', 'list')).length).toBe(before);
      const held = await d.bulwark(['approval', 'list', '--status', 'pending', '-f', 'json']);
      expect(held.code, held.stderr).toBe(0);
      expect(JSON.parse(held.stdout)).toEqual([
        expect.objectContaining({ kind: 'server-create', requester_name: 'admin', status: 'pending' }),
      ]);
      const mine = JSON.parse(held.stdout)[0].id as string;
      const self = await d.bulwark(['approval', 'approve', mine, '--reason', 'mine']);
      expect(self.code).toBe(1);
      expect(self.stderr).toMatch(/two-person rule.*HTTP 403/);
    });
  },
);
