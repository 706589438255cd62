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
import { execFile, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tapName } from '../../src/network/model.js';
import { type AgentTopology, agentHostsOnly, startAgentTopology } from '../helpers/agent-hosts.js';
import { imageCreateArgs, waitFor } from '../helpers/guests.js';
import { guestProcesses, instanceDirs, taps, vmUser, vmUserExists } from '../helpers/host-leftovers.js';
import { privateNetwork } from '../helpers/networks.js';
import { nvDefine, nvRead, nvWrite, rcOf, tpmCall } from '../helpers/tpm.js';

const PG = process.env.BULWARK_TEST_PG !== '0';
const GATEWAY = '10.64.0.1';
const GUEST_IP = '10.64.0.50';

/** A TCP probe: connects, sends a line, exits 0 on any answer (httpd's reply, the echo), else 1 or 2. */
const PROBE =
  "const s=require('node:net').connect({host:process.argv[1],port:Number(process.argv[2])});" +
  "s.setTimeout(3000,()=>process.exit(2));s.on('connect',()=>s.write('GET / HTTP/1.0\\r\\n\\r\\n'));" +
  "s.on('data',()=>process.exit(0));s.on('error',()=>process.exit(1));";
/** Whether the guest's `port` answers a connection from the host namespace `ns`. */
const answers = (ns: string, port: number) =>
  new Promise<boolean>((resolve) =>
    execFile(
      'nsenter',
      [`--net=/run/netns/${ns}`, '--', process.execPath, '-e', PROBE, GUEST_IP, String(port)],
      { timeout: 10_000 },
      (err) => resolve(!err),
    ),
  );

describe.runIf(process.getuid?.() === 0)(
  `three agent hosts with real guests (control plane on ${PG ? 'PostgreSQL' : 'SQLite'})`,
  { timeout: 1_800_000 },
  () => {
    let t: AgentTopology;
    const os = (...args: string[]) => t.d.os(...args);
    const osJson = (...args: string[]) => t.d.osJson(...args);
    const show = (name: string) => osJson('server', 'show', name);
    beforeAll(async () => {
      t = await startAgentTopology({ prefix: 'bwmg', subnet: '10.63.0', postgres: PG });
      await t.joinAll();
      await agentHostsOnly(t.d);
      // Ten burst members (seven ERROR still count) and the others: beyond the default 10 instances.
      await os('quota', 'set', '--instances', '-1', '--cores', '-1', '--ram', '-1', 'admin');
      await os('flavor', 'create', '--vcpus', '1', '--ram', '192', '--disk', '1', 'm1.tiny');
      await os(
        ...['flavor', 'create', '--vcpus', '1', '--ram', '192', '--disk', '1'],
        ...['--property', 'hw:tpm_version=2.0', '--property', 'hw:tpm_model=tpm-tis', 'm1.tpm'],
      );
      await os(...imageCreateArgs('tiny', 'bios.raw', ['hw_firmware_type=bios']));
      await privateNetwork(t.d, 'private-net', '10.64.0.0/24');
    }, 600_000);
    afterAll(() => t?.close(), 300_000);

    // The CLI gets up to 10 min: ten at once, or a --wait over a migration, on a loaded 2-core host.
    const LONG = 600_000;
    const create = (name: string, group: string) =>
      t.d.openstack(
        [
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
        ],
        undefined,
        LONG,
      );
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
        await Promise.all(
          names.map((n) => t.d.openstack(['server', 'delete', '--wait', n], undefined, LONG)),
        );
      }
    });

    it('openstack server migrate --live-migration moves a running guest over TLS: disk, RAM, TPM and firewall behaviour kept, the source cleaned up, no plaintext on the wire', async () => {
      const mem = `BWMEM-${randomBytes(12).toString('hex')}`;
      const disk = `BWDISK-${randomBytes(12).toString('hex')}`;
      const nv = Buffer.from(randomBytes(8).toString('hex'), 'ascii'); // 16 ASCII bytes into a TPM NV index
      // Agent hosts run no DHCP server: the guest takes its port's fixed address itself (below).
      await os('security', 'group', 'create', 'mover-web');
      await os(
        ...['security', 'group', 'rule', 'create', 'mover-web', '--protocol', 'tcp', '--dst-port', '80'],
        ...['--remote-ip', '0.0.0.0/0', '--ingress'],
      );
      await os(
        ...['port', 'create', '--network', 'private-net', '--security-group', 'mover-web'],
        ...['--fixed-ip', `subnet=private-subnet,ip-address=${GUEST_IP}`, 'mover-port'],
      );
      // The guest keeps `mem` in RAM (tmpfs), `disk` in a file on its boot disk's FAT and `nv` in its
      // TPM, then reports every 2 s what it reads back from the disk with the page cache dropped (so
      // from the disk itself) and from the TPM. It answers on tcp/80 (httpd) and tcp/7 (echo).
      const script = join(t.d.dataDir, 'migrate-user-data.sh');
      writeFileSync(
        script,
        [
          '#!/bin/sh',
          `ip addr add ${GUEST_IP}/24 dev eth0; ip route replace default via ${GATEWAY}`,
          `i=0; : > /run/mem; while [ $i -lt 4000 ]; do echo ${mem} >> /run/mem; i=$((i+1)); done`,
          'mkdir -p /mnt/d; mount -t vfat "$(findfs LABEL=BULWARK)" /mnt/d',
          `echo ${disk} > /mnt/d/pattern; sync`,
          tpmCall('NVDEF', nvDefine()),
          tpmCall('NVWRITE', nvWrite(nv)),
          '( while true; do',
          'sync; echo 3 > /proc/sys/vm/drop_caches; echo "BWCHECK disk=$(cat /mnt/d/pattern) mem=$(grep -c BWMEM /run/mem)"',
          tpmCall('NVREAD', nvRead()),
          'sleep 2; done ) &',
          '',
        ].join('\n'),
      );
      const created = await t.d.openstack(
        [
          ...['server', 'create', '--flavor', 'm1.tpm', '--image', 'tiny', '--port', 'mover-port'],
          ...['--user-data', script, '--wait', 'mover'],
        ],
        undefined,
        LONG,
      );
      expect(created.code, created.stderr).toBe(0);
      const id = (await show('mover')).id as string;
      const from = (await show('mover'))['OS-EXT-SRV-ATTR:host'] as string;
      const hostNs = (name: string) => t.hosts.find((h) => h.name === name)!.ns;
      const dirOf = (name: string) => t.dirOf.get(name)!;
      const log = () => os('console', 'log', 'show', 'mover');
      /** The guest reports its disk and RAM patterns, and its TPM's NV index read back (the last read). */
      const reportsAll = async () => {
        const text = await log();
        const reads = text.split('NVREAD ').length - 1;
        return (
          text.includes(`BWCHECK disk=${disk} mem=4000`) &&
          reads > 0 &&
          rcOf(text, 'NVREAD', reads) === '00000000' &&
          [...text.matchAll(/NVREAD ([0-9a-f]+)/g)].at(-1)?.[1]?.includes(nv.toString('hex')) === true
        );
      };
      await waitFor('guest reports', reportsAll, 240_000, 2000);
      const console0 = await log();
      expect(rcOf(console0, 'NVDEF')).toBe('00000000');
      expect(rcOf(console0, 'NVWRITE')).toBe('00000000');
      const uid = execFileSync('id', ['-u', vmUser(id)], { encoding: 'utf8' }).trim();

      // Firewall behaviour with packets, from the host the guest runs on: 80 answers, 7 does not.
      await waitFor('tcp/80 answers on the source', () => answers(hostNs(from), 80), 120_000, 1000);
      expect(await answers(hostNs(from), 7)).toBe(false);

      // Capture everything the hosts send each other (they meet on the control plane's bridge).
      const pcap = join(t.d.dataDir, 'migration.pcap');
      const cap = spawn(
        'nsenter',
        [`--net=/run/netns/${t.d.netns}`, '--', 'tcpdump', '-i', 'br0', '-s', '0', '-U', '-w', pcap, 'tcp'],
        { stdio: 'ignore' },
      );
      let to: string;
      let third: string;
      try {
        await new Promise((r) => setTimeout(r, 1500));
        const moved = await t.d.openstack(
          ['server', 'migrate', '--live-migration', '--wait', 'mover'],
          undefined,
          LONG,
        );
        expect(moved.code, moved.stderr).toBe(0);
        to = (await show('mover'))['OS-EXT-SRV-ATTR:host'] as string;
        expect(to).not.toBe(from);
        expect((await show('mover')).status).toBe('ACTIVE');
        const migs = await osJson('server', 'migration', 'list', '--server', id);
        expect(migs[0]).toMatchObject({ Status: 'completed', 'Source Compute': from, 'Dest Compute': to });
        // The guest runs on at the destination and reads back its disk pattern from the mirrored disk
        // and its NV index from the destination's swtpm. (The console log is the destination's now:
        // only lines the guest printed after the move.)
        await waitFor('guest reports after the move', reportsAll, 120_000, 2000);
        // Its QEMU and swtpm run under the destination agent's dir only. The TPM state reached the
        // destination's swtpm inside the TLS stream, and it keeps it encrypted on disk there.
        const on = (host: string) => guestProcesses(dirOf(host)).filter((p) => p.id === id);
        expect(
          on(to)
            .map((p) => p.kind)
            .sort(),
        ).toEqual(['qemu', 'swtpm']);
        const tpmDir = join(dirOf(to), 'instances', id, 'tpm');
        const stateFiles = readdirSync(tpmDir).map((f) => readFileSync(join(tpmDir, f)));
        expect(stateFiles.length).toBeGreaterThan(0);
        for (const f of stateFiles) {
          expect(f.includes(nv)).toBe(false);
          expect(f.includes(Buffer.from('libtpms'))).toBe(false);
        }
        // The source keeps nothing of the guest: no process, files, TPM state, tap or rules. The user
        // stays, unchanged: on this one machine the destination's guest runs as it.
        expect(on(from)).toEqual([]);
        expect(instanceDirs(dirOf(from))).not.toContain(id);
        const port = (await osJson('port', 'list', '--server', id))[0].ID as string;
        expect(taps({ netns: hostNs(from) })).not.toContain(tapName(port));
        expect(taps({ netns: hostNs(to) })).toContain(tapName(port));
        expect(nft(hostNs(to))).toContain(tapName(port));
        expect(nft(hostNs(from))).not.toContain(tapName(port));
        expect(execFileSync('id', ['-u', vmUser(id)], { encoding: 'utf8' }).trim()).toBe(uid);

        // The same firewall behaviour on the destination's nftables; nothing reaches it via the source.
        await waitFor('tcp/80 answers on the destination', () => answers(hostNs(to), 80), 60_000, 1000);
        expect(await answers(hostNs(to), 7)).toBe(false);
        expect(await answers(hostNs(from), 80)).toBe(false);
        // A rule added after the move is enforced there.
        await os(
          ...['security', 'group', 'rule', 'create', 'mover-web', '--protocol', 'tcp', '--dst-port', '7'],
          ...['--remote-ip', '0.0.0.0/0', '--ingress'],
        );
        await waitFor('tcp/7 answers once allowed', () => answers(hostNs(to), 7), 60_000, 1000);

        // And on again, to a host named on the command line (the CLI needs 2.30 for --host).
        third = t.hosts.map((h) => h.name).find((h) => h !== from && h !== to)!;
        const again = await t.d.openstack(
          [
            ...['--os-compute-api-version', '2.30', 'server', 'migrate', '--live-migration'],
            ...['--host', third, '--wait', 'mover'],
          ],
          undefined,
          LONG,
        );
        expect(again.code, again.stderr).toBe(0);
        expect((await show('mover'))['OS-EXT-SRV-ATTR:host']).toBe(third);
        await waitFor('guest reports after the second move', reportsAll, 120_000, 2000);
        await waitFor(
          'tcp/7 and tcp/80 answer on the third host',
          async () => (await answers(hostNs(third), 7)) && (await answers(hostNs(third), 80)),
        );
        expect(on(to)).toEqual([]);
      } finally {
        cap.kill('SIGINT');
        await new Promise((r) => cap.once('exit', r));
      }
      const wire = readFileSync(pcap);
      // Two migrations' worth of RAM and disk crossed the bridge, all of it inside TLS.
      expect(wire.length).toBeGreaterThan(1_000_000);
      expect(wire.includes(Buffer.from(mem))).toBe(false);
      expect(wire.includes(Buffer.from(disk))).toBe(false);
      expect(wire.includes(nv)).toBe(false);
      rmSync(pcap, { force: true });
      await os('server', 'delete', '--wait', 'mover');
      // Deleting it where it runs removes the user; no agent keeps anything of it.
      expect(vmUserExists(id)).toBe(false);
      for (const h of t.hosts) {
        expect(guestProcesses(dirOf(h.name)).filter((p) => p.id === id)).toEqual([]);
        expect(instanceDirs(dirOf(h.name))).not.toContain(id);
      }
    });
  },
);
