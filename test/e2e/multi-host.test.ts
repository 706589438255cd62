/**
 * Multi-host with real guests (docs/multi-host.md): a control plane on
 * PostgreSQL and three test hypervisor hosts, each the real `bulwark agent`
 * in its own network namespace, driven over its mutual-TLS channel. The
 * spec's anti-affinity commands, verbatim with the real `openstack` CLI: three
 * members boot real tiny guests on three different hosts, the fourth is
 * ERROR "No valid host was found"; ten concurrent creates into the
 * three-slot group never co-locate. Then live migration over TLS: a running
 * guest moves between hosts with `openstack server migrate --live-migration`
 * (and `--host`), keeps what it wrote on its disk, runs on, and a capture of
 * the hosts' network shows none of the pattern it keeps in RAM or on disk.
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tapName } from '../../src/network/model.js';
import { type AgentTopology, startAgentTopology } from '../helpers/agent-hosts.js';
import { imageCreateArgs, waitFor } from '../helpers/guests.js';

const PG = process.env.BULWARK_TEST_PG !== '0';

describe.runIf(process.getuid?.() === 0)(
  `three agent hosts with real guests (control plane on ${PG ? 'PostgreSQL' : 'SQLite'})`,
  { timeout: 900_000 },
  () => {
    let t: AgentTopology;
    const os = (...args: string[]) => t.d.os(...args);
    const osJson = (...args: string[]) => t.d.osJson(...args);
    const show = (name: string) => osJson('server', 'show', name);
    beforeAll(async () => {
      t = await startAgentTopology({ prefix: 'bwmg', subnet: '10.63.0', postgres: PG });
      await t.joinAll();
      // Only the agents' hosts take guests here.
      const local = JSON.parse((await t.d.bulwark(['host', 'list', '-f', 'json'])).stdout).find(
        (h: { local: boolean }) => h.local,
      ) as { name: string };
      expect((await t.d.bulwark(['host', 'disable', local.name])).code).toBe(0);
      // Ten burst members (seven ERROR still count) and the others: beyond the default 10 instances.
      await os('quota', 'set', '--instances', '-1', '--cores', '-1', '--ram', '-1', 'admin');
      await os('flavor', 'create', '--vcpus', '1', '--ram', '192', '--disk', '1', 'm1.tiny');
      await os(...imageCreateArgs('tiny', 'bios.raw', ['hw_firmware_type=bios']));
      await os('network', 'create', 'private-net');
      await os(
        'subnet',
        'create',
        '--network',
        'private-net',
        '--subnet-range',
        '10.64.0.0/24',
        'private-subnet',
      );
    }, 600_000);
    afterAll(() => t?.close(), 300_000);

    const create = (name: string, group: string) =>
      t.d.openstack([
        'server',
        'create',
        '--flavor',
        'm1.tiny',
        '--image',
        'tiny',
        '--network',
        'private-net',
        '--hint',
        `group=${group}`,
        name,
      ]);
    const nft = (ns: string) =>
      execFileSync('nsenter', [`--net=/run/netns/${ns}`, '--', 'nft', 'list', 'ruleset'], {
        encoding: 'utf8',
      });

    it('three anti-affinity members boot real guests on three agent hosts; the fourth is ERROR, no valid host', async () => {
      await os('server', 'group', 'create', '--policy', 'anti-affinity', 'production-web-tier');
      const g = await osJson('server', 'group', 'show', 'production-web-tier');
      const names = ['web-node-01', 'web-node-02', 'web-node-03', 'web-node-04'];
      for (const n of names) expect((await create(n, g.id)).code).toBe(0);
      const placed = new Map<string, string>();
      for (const n of names.slice(0, 3)) {
        await waitFor(`${n} ACTIVE`, async () => (await show(n)).status === 'ACTIVE', 240_000, 2000);
        const s = await show(n);
        placed.set(n, s['OS-EXT-SRV-ATTR:host']);
        await waitFor(
          `${n} guest boots`,
          async () => (await os('console', 'log', 'show', n)).includes('BULWARK-GUEST-READY'),
          240_000,
          2000,
        );
      }
      expect(new Set(placed.values())).toEqual(new Set(['hv-1', 'hv-2', 'hv-3']));
      const failed = await show('web-node-04');
      expect(failed.status).toBe('ERROR');
      expect(JSON.stringify(failed.fault)).toMatch(
        /No valid host was found\. There are not enough hosts available\./,
      );
      // Each guest's QEMU runs under its agent's data dir, and that host's nftables hold its port's rules.
      for (const [n, host] of placed) {
        const id = (await show(n)).id as string;
        const ps = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' });
        expect(ps.split('\n').some((l) => l.includes(`${t.dirOf.get(host)}/instances/${id}`))).toBe(true);
        const ports = await osJson('port', 'list', '--server', id);
        const ns = t.hosts.find((h) => h.name === host)!.ns;
        const rules = nft(ns);
        expect(rules).toMatch(/table inet bulwark/);
        expect(rules).toContain(tapName(ports[0].ID as string));
        // Another host's ruleset knows nothing of this guest's device.
        const other = t.hosts.find((h) => h.name !== host)!.ns;
        expect(nft(other)).not.toContain(tapName(ports[0].ID as string));
      }
      for (const n of names) await os('server', 'delete', '--wait', n);
    });

    it('ten concurrent creates into a three-slot anti-affinity group: three placed on three hosts, seven ERROR', async () => {
      await os('server', 'group', 'create', '--policy', 'anti-affinity', 'burst');
      const g = await osJson('server', 'group', 'show', 'burst');
      const names = Array.from({ length: 10 }, (_, i) => `burst-${i}`);
      const res = await Promise.all(names.map((n) => create(n, g.id)));
      try {
        for (const r of res) expect(r.code, r.stderr).toBe(0);
        const final = await waitFor(
          'all settled',
          async () => {
            const list = (await osJson('server', 'list', '--long')) as {
              Name: string;
              Status: string;
              Host: string;
            }[];
            const mine = list.filter((s) => s.Name.startsWith('burst-'));
            return mine.length === 10 && mine.every((s) => s.Status === 'ACTIVE' || s.Status === 'ERROR')
              ? mine
              : undefined;
          },
          300_000,
          2000,
        );
        const active = final.filter((s) => s.Status === 'ACTIVE');
        expect(active).toHaveLength(3);
        expect(new Set(active.map((s) => s.Host))).toEqual(new Set(['hv-1', 'hv-2', 'hv-3']));
        for (const s of final.filter((x) => x.Status === 'ERROR'))
          expect(JSON.stringify((await show(s.Name)).fault)).toMatch(/No valid host was found/);
      } finally {
        await Promise.all(names.map((n) => t.d.openstack(['server', 'delete', '--wait', n])));
      }
    });

    it('openstack server migrate --live-migration moves a running guest over TLS: disk kept, no plaintext on the wire', async () => {
      const mem = `BWMEM-${randomBytes(12).toString('hex')}`;
      const disk = `BWDISK-${randomBytes(12).toString('hex')}`;
      // The guest keeps `mem` in RAM (tmpfs) and `disk` in a file on its boot disk's FAT, then reports
      // every 2 s what it reads back from the disk with the page cache dropped (so from the disk itself).
      const script = join(t.d.dataDir, 'migrate-user-data.sh');
      writeFileSync(
        script,
        [
          '#!/bin/sh',
          'i=0; : > /run/mem; while [ $i -lt 4000 ]; do echo ' + mem + ' >> /run/mem; i=$((i+1)); done',
          'mkdir -p /mnt/d; mount -t vfat "$(findfs LABEL=BULWARK)" /mnt/d',
          `echo ${disk} > /mnt/d/pattern; sync`,
          '( while true; do sync; echo 3 > /proc/sys/vm/drop_caches; echo "BWCHECK disk=$(cat /mnt/d/pattern) mem=$(grep -c BWMEM /run/mem)"; sleep 2; done ) &',
          '',
        ].join('\n'),
      );
      const created = await t.d.openstack([
        'server',
        'create',
        '--flavor',
        'm1.tiny',
        '--image',
        'tiny',
        '--network',
        'private-net',
        '--user-data',
        script,
        '--wait',
        'mover',
      ]);
      expect(created.code, created.stderr).toBe(0);
      const id = (await show('mover')).id as string;
      const from = (await show('mover'))['OS-EXT-SRV-ATTR:host'] as string;
      await waitFor(
        'guest reports',
        async () => (await os('console', 'log', 'show', 'mover')).includes(`BWCHECK disk=${disk} mem=4000`),
        240_000,
        2000,
      );
      // Capture everything the hosts send each other (they meet on the control plane's bridge).
      const pcap = join(t.d.dataDir, 'migration.pcap');
      const cap = spawn(
        'nsenter',
        [`--net=/run/netns/${t.d.netns}`, '--', 'tcpdump', '-i', 'br0', '-s', '0', '-U', '-w', pcap, 'tcp'],
        { stdio: 'ignore' },
      );
      try {
        await new Promise((r) => setTimeout(r, 1500));
        const moved = await t.d.openstack(['server', 'migrate', '--live-migration', '--wait', 'mover']);
        expect(moved.code, moved.stderr).toBe(0);
        const to = (await show('mover'))['OS-EXT-SRV-ATTR:host'] as string;
        expect(to).not.toBe(from);
        expect((await show('mover')).status).toBe('ACTIVE');
        const migs = await osJson('server', 'migration', 'list', '--server', id);
        expect(migs[0]).toMatchObject({ Status: 'completed', 'Source Compute': from, 'Dest Compute': to });
        // The guest runs on at the destination, and reads its disk pattern back from the mirrored disk.
        // (The console log is the destination's now: only lines the guest printed after the move.)
        await waitFor(
          'guest reports after the move',
          async () => (await os('console', 'log', 'show', 'mover')).includes(`BWCHECK disk=${disk} mem=4000`),
          120_000,
          2000,
        );
        // Its QEMU runs under the destination agent's dir only; the destination holds its port's rules.
        const ps = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).split('\n');
        expect(ps.some((l) => l.includes(`${t.dirOf.get(to)}/instances/${id}`))).toBe(true);
        expect(ps.some((l) => l.includes(`${t.dirOf.get(from)}/instances/${id}`))).toBe(false);
        const port = (await osJson('port', 'list', '--server', id))[0].ID as string;
        expect(nft(t.hosts.find((h) => h.name === to)!.ns)).toContain(tapName(port));
        expect(nft(t.hosts.find((h) => h.name === from)!.ns)).not.toContain(tapName(port));
        // And on again (another scheduler pick: never the host it is on).
        const again = await t.d.openstack(['server', 'migrate', '--live-migration', '--wait', 'mover']);
        expect(again.code, again.stderr).toBe(0);
        expect((await show('mover'))['OS-EXT-SRV-ATTR:host']).not.toBe(to);
      } finally {
        cap.kill('SIGINT');
        await new Promise((r) => cap.once('exit', r));
      }
      const wire = readFileSync(pcap);
      // Two migrations' worth of RAM and disk crossed the bridge, all of it inside TLS.
      expect(wire.length).toBeGreaterThan(1_000_000);
      expect(wire.includes(Buffer.from(mem))).toBe(false);
      expect(wire.includes(Buffer.from(disk))).toBe(false);
      rmSync(pcap, { force: true });
      await os('server', 'delete', '--wait', 'mover');
    });
  },
);
