/**
 * The spec's security-group commands, verbatim, through the real `openstack`
 * CLI, enforced on real guests: a server and two client guests that probe it
 * every second and print what got through on their serial consoles.
 */
import { statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DaemonProcess, startDaemonProcess, stopDaemon } from '../helpers/daemon-process.js';
import { guestImage, waitFor } from '../helpers/guests.js';

const SERVER_IP = '10.0.0.10';
const CLIENT_A = '10.0.0.20'; // inside 10.0.0.0/8
const CLIENT_B = '172.16.0.20'; // outside it

/** Static addressing (no DHCP needed), then the guest's own script. */
const script = (ip: string, prefix: number, gw: string, body: string) => `#!/bin/sh
ip link set eth0 up
ip addr add ${ip}/${prefix} dev eth0
ip route add default via ${gw}
${body}
`;

/** The server: echo services on 443 and 8080. */
const serverScript = script(
  SERVER_IP,
  24,
  '10.0.0.1',
  `nc -ll -p 443 -e cat </dev/null >/dev/null 2>&1 &
nc -ll -p 8080 -e cat </dev/null >/dev/null 2>&1 &`,
);

/**
 * A client: every second, one line with what reached the server on 443 and 8080,
 * and whether a ping to the gateway from a spoofed source came back. A long
 * echo connection to 443, kept open, prints STREAM lines while it lives.
 */
const clientScript = (ip: string, prefix: number, gw: string) =>
  script(
    ip,
    prefix,
    gw,
    `ip addr add ${ip.replace(/\.20$/, '.99')}/32 dev eth0
( sleep 1; while :; do
  a=$(echo ping | nc -w 2 ${SERVER_IP} 443 2>/dev/null | head -c 4)
  h=$(echo ping | nc -w 2 ${SERVER_IP} 8080 2>/dev/null | head -c 4)
  ping -c 1 -W 1 -I ${ip.replace(/\.20$/, '.99')} ${gw} >/dev/null 2>&1 && s=yes || s=no
  echo "PROBE 443=\${a:-none} 8080=\${h:-none} spoof=$s"
  sleep 1
done ) &
( while :; do (while :; do echo tick; sleep 1; done) | nc -w 2 ${SERVER_IP} 443 | while read l; do echo "STREAM $l"; done; sleep 1; done ) &`,
  );

// Each openstack CLI call takes seconds; probes are read from the consoles through it.
describe.runIf(process.getuid?.() === 0)(
  'security groups with the openstack CLI on real guests',
  { timeout: 300_000 },
  () => {
    let d: DaemonProcess;
    beforeAll(async () => {
      d = await startDaemonProcess();
    });
    afterAll(() => stopDaemon(d));

    const os = (...args: string[]) => d.os(...args);

    const osJson = (...args: string[]) => d.osJson(...args);
    const consoleOf = (name: string) => os('console', 'log', 'show', name);
    const probesOf = async (name: string) =>
      (await consoleOf(name)).split('\n').filter((l) => l.startsWith('PROBE '));
    /** Waits until a client's new probe lines (after the ones seen now) satisfy `ok` twice in a row. */
    const expectProbes = async (name: string, ok: (line: string) => boolean, what: string) => {
      const seen = (await probesOf(name)).length;
      return waitFor(
        `${name}: ${what}`,
        async () => {
          const fresh = (await probesOf(name)).slice(seen + 1);
          return fresh.length >= 2 && fresh.slice(-2).every(ok) ? fresh.at(-1) : undefined;
        },
        90_000,
        1000,
      );
    };
    const userData = (name: string, text: string) => {
      const file = join(d.dataDir, `${name}.sh`);
      writeFileSync(file, text);
      return file;
    };
    const boot = async (name: string, nic: string, text: string, ...extra: string[]) => {
      await os(
        'server',
        'create',
        '--flavor',
        'tiny',
        '--image',
        'tiny-bios',
        '--nic',
        nic,
        '--user-data',
        userData(name, text),
        ...extra,
        name,
      );
    };

    it('sets up a flavor, an image and a network with two subnets', async () => {
      await os('flavor', 'create', '--vcpus', '1', '--ram', '128', '--disk', '1', 'tiny');
      await os('image', 'create', '--disk-format', 'raw', '--file', guestImage('bios.raw'), 'tiny-bios');
      await os('network', 'create', 'private-net');
      await os('subnet', 'create', '--network', 'private-net', '--subnet-range', '10.0.0.0/24', 'sub-a');
      await os('subnet', 'create', '--network', 'private-net', '--subnet-range', '172.16.0.0/24', 'sub-b');
    });

    it('runs the spec commands verbatim', async () => {
      await os('security', 'group', 'create', 'web-servers', '--description', 'Web server security group');
      await os(
        'security',
        'group',
        'rule',
        'create',
        'web-servers',
        '--protocol',
        'tcp',
        '--dst-port',
        '443',
        '--remote-ip',
        '10.0.0.0/8',
        '--ingress',
      );
      await os(
        'security',
        'group',
        'rule',
        'create',
        'web-servers',
        '--protocol',
        'tcp',
        '--dst-port',
        '22',
        '--remote-ip',
        '192.168.100.0/24',
        '--ingress',
      );
      const rules = await osJson('security', 'group', 'rule', 'list', 'web-servers');
      expect(rules).toEqual(
        expect.arrayContaining([
          expect.objectContaining({
            'IP Protocol': 'tcp',
            'Port Range': '443:443',
            'IP Range': '10.0.0.0/8',
          }),
          expect.objectContaining({
            'IP Protocol': 'tcp',
            'Port Range': '22:22',
            'IP Range': '192.168.100.0/24',
          }),
        ]),
      );
    });

    it('boots the server and two clients; the default group lets nothing in', async () => {
      await boot('my-instance', `net-id=private-net,v4-fixed-ip=${SERVER_IP}`, serverScript);
      await boot(
        'client-a',
        `net-id=private-net,v4-fixed-ip=${CLIENT_A}`,
        clientScript(CLIENT_A, 24, '10.0.0.1'),
      );
      await boot(
        'client-b',
        `net-id=private-net,v4-fixed-ip=${CLIENT_B}`,
        clientScript(CLIENT_B, 24, '172.16.0.1'),
      );
      for (const name of ['my-instance', 'client-a', 'client-b'])
        await waitFor(
          `${name} ACTIVE`,
          async () => (await os('server', 'show', name, '-f', 'value', '-c', 'status')).trim() === 'ACTIVE',
          120_000,
          1000,
        );
      // Egress and its replies: each client reaches the host's gateway from its own address.
      await expectProbes('client-a', (l) => l.includes('443=none') && l.includes('8080=none'), 'nothing in');
      await expectProbes('client-b', (l) => l.includes('443=none') && l.includes('8080=none'), 'nothing in');
    });

    it('server add security group: 443 from 10.0.0.0/8 passes, 8080 and other sources do not', async () => {
      await os('server', 'add', 'security', 'group', 'my-instance', 'web-servers');
      expect((await osJson('server', 'show', 'my-instance')).security_groups).toEqual(
        expect.arrayContaining([{ name: 'default' }, { name: 'web-servers' }]),
      );
      // The echoed reply proves the reply direction of an allowed connection passes.
      await expectProbes(
        'client-a',
        (l) => l.includes('443=ping') && l.includes('8080=none'),
        '443 open from A',
      );
      await expectProbes(
        'client-b',
        (l) => l.includes('443=none') && l.includes('8080=none'),
        '443 closed from B',
      );
      await waitFor(
        'an open stream from A',
        async () => (await consoleOf('client-a')).includes('STREAM tick'),
        30_000,
        1000,
      );
    });

    it('a spoofed source address is dropped at the port, the real one passes', async () => {
      // The probe pings the gateway from an address the port does not own.
      await expectProbes('client-a', (l) => l.includes('spoof=no'), 'spoofed ping dropped');
    });

    it('remote_group_id follows membership changes', async () => {
      await os('security', 'group', 'create', 'web-clients');
      await os(
        'security',
        'group',
        'rule',
        'create',
        'web-servers',
        '--protocol',
        'tcp',
        '--dst-port',
        '8080',
        '--remote-group',
        'web-clients',
        '--ingress',
      );
      await expectProbes('client-b', (l) => l.includes('8080=none'), 'no member yet');
      await os('server', 'add', 'security', 'group', 'client-b', 'web-clients');
      await expectProbes('client-b', (l) => /8080=ping/.test(l), 'B is a member');
      await expectProbes('client-a', (l) => l.includes('8080=none'), 'A is not');
      await os('server', 'remove', 'security', 'group', 'client-b', 'web-clients');
      await expectProbes('client-b', (l) => l.includes('8080=none'), 'B left');
    });

    it('bulwark server quarantine: suspends the guest, cuts the open connection, keeps evidence', async () => {
      const streams = async () => (await consoleOf('client-a')).split('STREAM tick').length;
      const before = await streams();
      await waitFor('the stream flows', async () => (await streams()) > before + 1, 30_000, 1000);
      const r = await d.bulwark([
        'server',
        'quarantine',
        'my-instance',
        '--reason',
        'beaconing to a known C2 address',
        '-f',
        'json',
      ]);
      expect(r.code, r.stderr).toBe(0);
      expect(
        JSON.parse(r.stdout).map((x: { step: string; outcome: string }) => `${x.step}:${x.outcome}`),
      ).toEqual(['suspend:success', 'isolate:success', 'snapshot:success']);
      expect((await osJson('server', 'show', 'my-instance')).status).toBe('PAUSED');
      // The open connection stops dead, and nothing new gets in.
      await expectProbes('client-a', (l) => l.includes('443=none'), 'nothing reaches the quarantined server');
      const cut = await streams();
      await new Promise((res) => setTimeout(res, 5000));
      expect(await streams()).toBe(cut);
      const show = JSON.parse(
        (await d.bulwark(['server', 'quarantine-show', 'my-instance', '-f', 'json'])).stdout,
      ) as { snapshot: { dir: string; files: { name: string; bytes: number; sha256: string }[] } };
      const mem = show.snapshot.files.find((f) => f.name === 'memory.elf');
      expect(mem?.bytes).toBeGreaterThan(128 * 1024 * 1024);
      for (const f of show.snapshot.files) {
        const st = statSync(join(show.snapshot.dir, f.name));
        expect([st.uid, st.mode & 0o777]).toEqual([0, 0o600]);
      }
      // An admin lifts it (owners cannot: test/api/quarantine.test.ts) and the guest serves again.
      expect((await d.bulwark(['server', 'unquarantine', 'my-instance'])).code).toBe(0);
      await os('server', 'unpause', 'my-instance');
      await expectProbes('client-a', (l) => l.includes('443=ping'), '443 open again after the lift');
    });

    it('removing the group closes the port again', async () => {
      await os('server', 'remove', 'security', 'group', 'my-instance', 'web-servers');
      await expectProbes('client-a', (l) => l.includes('443=none'), '443 closed again');
    });
  },
);
