/**
 * The spec's "Encrypted Volumes" commands, verbatim, through the real
 * `openstack` CLI against the real daemon; the volume is attached to a real
 * guest (TCG), which writes to it, and the pattern is nowhere on the host in
 * clear.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DaemonProcess, startDaemonProcess, stopDaemon } from '../helpers/daemon-process.js';
import { imageCreateArgs, waitFor } from '../helpers/guests.js';
import { filesUnder } from '../helpers/leaks.js';
import { privateNetwork } from '../helpers/networks.js';

describe.runIf(process.getuid?.() === 0)(
  'openstack volumes against bulwark serve (encrypted, real guest)',
  { timeout: 300_000 },
  () => {
    let d: DaemonProcess;
    const tag = randomBytes(8).toString('hex');
    const marker = `bwvol-${tag}-`;
    beforeAll(async () => {
      d = await startDaemonProcess();
    });
    afterAll(() => stopDaemon(d));
    const os = (...args: string[]) => d.os(...args);
    const volumeStatus = async () => {
      const v = await d.osJson('volume', 'show', 'my-encrypted-volume');
      if (v.status === 'error') throw new Error(`volume in error: ${v['bulwark:fault']}`);
      return v.status as string;
    };

    it('refuses encryption the host does not do, and stores none', async () => {
      await os('volume', 'type', 'create', 'encrypted-ssd');
      for (const bad of [
        ['--encryption-provider', 'luks2'],
        ['--encryption-provider', 'luks', '--encryption-cipher', 'aes-cbc-essiv'],
        ['--encryption-provider', 'luks', '--encryption-key-size', '128'],
        ['--encryption-provider', 'luks', '--encryption-control-location', 'back-end'],
      ]) {
        const r = await d.openstack(['volume', 'type', 'set', ...bad, 'encrypted-ssd']);
        expect(r.stdout + r.stderr).toMatch(/not supported|HTTP 400|Failed/);
      }
      const enc = await d.openstack([
        'volume',
        'type',
        'show',
        '--encryption-type',
        'encrypted-ssd',
        '-f',
        'json',
      ]);
      expect(JSON.parse(enc.stdout).encryption ?? {}).toEqual({});
    });

    it('the spec’s commands: encrypted type, encrypted volume, encrypted: True', async () => {
      await os(
        'volume',
        'type',
        'set',
        '--encryption-provider',
        'nova.volume.encryptors.luks.LuksEncryptor',
        '--encryption-cipher',
        'aes-xts-plain64',
        '--encryption-key-size',
        '256',
        '--encryption-control-location',
        'front-end',
        'encrypted-ssd',
      );
      await os('volume', 'create', '--size', '1', '--type', 'encrypted-ssd', 'my-encrypted-volume');
      await waitFor('volume available', async () => (await volumeStatus()) === 'available', 60_000, 1000);
      expect(
        (await os('volume', 'show', 'my-encrypted-volume', '-c', 'encrypted', '-f', 'value')).trim(),
      ).toBe('True');
      const list = await d.osJson('volume', 'list');
      expect(list).toEqual([expect.objectContaining({ Name: 'my-encrypted-volume', Size: 1 })]);
    });

    it('server add volume: the guest writes to it; the pattern and no key are on the host in clear', async () => {
      await os('flavor', 'create', '--vcpus', '1', '--ram', '256', '--disk', '1', 'tiny');
      await os(...imageCreateArgs('tiny-bios', 'bios.raw'));
      const script = join(d.dataDir, 'user-data.sh');
      writeFileSync(
        script,
        [
          '#!/bin/sh',
          `A=bwvol-; B=${tag}; M="$A$B-"`,
          'i=0; while [ ! -b /dev/vdb ]; do sleep 0.2; i=$((i+1)); [ $i -gt 1500 ] && exit 1; done',
          'yes "$M" | head -c 1048576 > /dev/vdb; sync; echo BW-VOL-WRITTEN',
        ].join('\n'),
      );
      await privateNetwork(d, 'vol-net', '10.9.0.0/24');
      await os(
        'server',
        'create',
        '--flavor',
        'tiny',
        '--image',
        'tiny-bios',
        '--network',
        'vol-net',
        '--user-data',
        script,
        '--wait',
        'vm',
      );
      // The server's root overlay is LUKS too, by default.
      const overlays = filesUnder(d.dataDir).filter((f) => f.endsWith('/disk.qcow2'));
      expect(overlays).toHaveLength(1);
      const info = JSON.parse(
        execFileSync('qemu-img', ['info', '-U', '--output=json', overlays[0]!]).toString(),
      );
      expect(info.encrypted).toBe(true);
      await os('server', 'add', 'volume', 'vm', 'my-encrypted-volume');
      expect(await volumeStatus()).toBe('in-use');
      await waitFor(
        'the guest to write',
        async () => (await os('console', 'log', 'show', 'vm')).includes('BW-VOL-WRITTEN'),
        120_000,
        2000,
      );
      const needle = Buffer.from(marker);
      for (const f of filesUnder(d.dataDir)) expect(readFileSync(f).includes(needle), f).toBe(false);
      await os('server', 'remove', 'volume', 'vm', 'my-encrypted-volume');
      await waitFor('volume available', async () => (await volumeStatus()) === 'available', 60_000, 1000);
      await os('volume', 'delete', 'my-encrypted-volume');
      await waitFor(
        'volume gone',
        async () => (await d.openstack(['volume', 'show', 'my-encrypted-volume'])).code !== 0,
        60_000,
        1000,
      );
    });
  },
);
