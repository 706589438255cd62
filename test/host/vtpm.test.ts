import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  cpSync,
  existsSync,
  lstatSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
} from 'node:fs';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BulwarkError } from '../../src/errors.js';
import type { GuestSpec } from '../../src/host/hypervisor.js';
import { createQemuDriver, type QemuDriver } from '../../src/host/qemu-driver.js';
import { swtpmPaths, swtpmProcesses } from '../../src/host/swtpm.js';
import { vmUserName } from '../../src/host/users.js';
import { waitFor } from '../helpers/guests.js';
import { processAlive } from '../helpers/host-leftovers.js';
import { nvDefine, nvRead, nvWrite, rcOf, tpmCall } from '../helpers/tpm.js';
import {
  biosSpec,
  cgroupOf,
  isRoot,
  join,
  makeBaseDir,
  pidsMentioning,
  sh,
  teardownDriver,
  userExists,
  waitConsole,
} from './host-helpers.js';

/**
 * The vTPM for real: swtpm per guest, as the guest's user, in its cgroup,
 * state encrypted with a key that reaches swtpm only through a pipe. The
 * guest talks to /dev/tpm0 with raw TPM 2.0 commands (busybox printf + dd):
 * an NV index it writes survives stop/start and suspend/resume.
 */

describe.runIf(isRoot)('vTPM with encrypted state (real guests, swtpm)', () => {
  let base: string;
  let driver: QemuDriver;
  const ids = new Set<string>();
  const key = randomBytes(32);
  let keyReads = 0;
  const secret = randomBytes(8).toString('hex'); // 16 ASCII bytes: the NV value
  const secretBytes = Buffer.from(secret, 'ascii');

  const newDriver = async () => {
    const d = await createQemuDriver({ baseDir: base, accel: 'tcg', cgroupParent: 'bulwark-test' });
    d.setTpmKeySource(async () => {
      keyReads++;
      return Buffer.from(key); // a copy: the driver wipes what it is given
    });
    return d;
  };
  const define = async (d: QemuDriver, spec: GuestSpec) => {
    ids.add(spec.id);
    await d.define(spec);
    return spec;
  };
  const log = (id: string) => driver.consoleLog(id);
  const count = (text: string, needle: string) => text.split(needle).length - 1;
  const waitLog = (id: string, needle: string, times = 1, timeoutMs = 60_000) =>
    waitConsole(driver, id, needle, times, timeoutMs);

  // The read, also saved in the guest as /tmp/nvread.sh to be typed on the console after a resume.
  const readCall = tpmCall('NVREAD', nvRead());
  const saveReader = `printf '%s\\n' "${readCall.replaceAll('\\', '\\\\').replaceAll('"', '\\"').replaceAll('$', '\\$')}" > /tmp/nvread.sh`;
  const writeScript = [tpmCall('NVDEF', nvDefine()), tpmCall('NVWRITE', nvWrite(secretBytes)), readCall].join(
    '\n',
  );
  const readScript = [readCall, saveReader].join('\n');
  const T = biosSpec({
    name: 'vtpm',
    tpm: { version: '2.0', model: 'tpm-crb' },
    fwCfg: { 'opt/org.bulwark/run': writeScript },
  });

  beforeAll(async () => {
    base = makeBaseDir('vtpm');
    driver = await newDriver();
  });

  afterAll(async () => {
    await teardownDriver(driver, base, ids, async () => {
      for (const pid of (await swtpmProcesses(base)).values())
        for (const p of pid) spawnSync('kill', ['-9', String(p.pid)]);
    });
  });

  it('refuses to start a vTPM guest without its key: no key source, a failing one, a short key', async () => {
    const bare = await createQemuDriver({ baseDir: base, accel: 'tcg', cgroupParent: 'bulwark-test' });
    const R = await define(
      bare,
      biosSpec({ name: 'vtpm-refused', tpm: { version: '2.0', model: 'tpm-crb' } }),
    );
    const noSource = await bare.start(R.id).catch((e: unknown) => e);
    expect(noSource).toBeInstanceOf(BulwarkError);
    expect((noSource as Error).message).toMatch(/vTPM.*no key manager|never kept unencrypted/);

    bare.setTpmKeySource(async () => {
      throw new Error('key manager sealed');
    });
    const failing = await bare.start(R.id).catch((e: unknown) => e);
    expect((failing as Error).message).toMatch(
      /could not be read from the key manager \(key manager sealed\)/,
    );

    bare.setTpmKeySource(async () => randomBytes(16));
    const short = await bare.start(R.id).catch((e: unknown) => e);
    expect((short as Error).message).toMatch(/256 bits/);

    // Nothing ran: no QEMU, no swtpm, no cgroup; the TPM state dir is empty.
    expect(pidsMentioning(`${bare.layout(R.id).dir}/`)).toEqual([]);
    expect((await swtpmProcesses(base)).get(R.id)).toBeUndefined();
    expect(await bare.cgroups.exists(`vm-${R.id}`)).toBe(false);
    expect(readdirSync(swtpmPaths(bare.layout(R.id)).stateDir)).toEqual([]);
    expect(await bare.state(R.id)).toBe('shutoff');
    await bare.undefine(R.id);
    await bare.close();
  });

  it('a tpm-crb 2.0 guest sees /dev/tpm0; swtpm runs as the guest user, in its cgroup', async () => {
    await define(driver, T);
    await driver.start(T.id);
    await waitLog(T.id, 'BULWARK-RUN-END');
    const text = await log(T.id);
    expect(text).toContain('BULWARK-TPM: present');
    expect(rcOf(text, 'NVDEF')).toBe('00000000');
    expect(rcOf(text, 'NVWRITE')).toBe('00000000');
    expect(rcOf(text, 'NVREAD')).toBe('00000000');
    expect(text).toContain(secretBytes.toString('hex'));

    const sw = (await swtpmProcesses(base)).get(T.id) ?? [];
    expect(sw).toHaveLength(1);
    const user = vmUserName(T.id);
    expect(sw[0]?.uid).toBe(Number(sh('id', ['-u', user]).trim()));
    expect(sw[0]?.uid).not.toBe(0);
    expect(cgroupOf(sw[0]!.pid)).toContain(`bulwark-test/vm-${T.id}`);
    const qemu = await driver.processInfo(T.id);
    expect(cgroupOf(qemu!.pid)).toContain(`bulwark-test/vm-${T.id}`);
    const paths = swtpmPaths(driver.layout(T.id));
    const st = lstatSync(paths.stateDir);
    expect(st.uid).toBe(sw[0]?.uid);
    expect(st.mode & 0o777).toBe(0o700);
  });

  it('no key material in any file under the data dir, nor in swtpm/QEMU argv or environment', async () => {
    const needles = [key, Buffer.from(key.toString('hex')), Buffer.from(key.toString('base64'))];
    const files: string[] = [];
    const walk = (d: string) => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        const p = join(d, e.name);
        if (e.isDirectory()) walk(p);
        else if (e.isFile()) files.push(p);
      }
    };
    walk(base);
    expect(files.length).toBeGreaterThan(3);
    for (const f of files) {
      const data = readFileSync(f);
      for (const n of needles) expect(data.includes(n), `${f} holds the key`).toBe(false);
    }
    const sw = (await swtpmProcesses(base)).get(T.id) ?? [];
    const qemu = await driver.processInfo(T.id);
    for (const pid of [sw[0]!.pid, qemu!.pid]) {
      for (const part of ['cmdline', 'environ']) {
        const data = readFileSync(`/proc/${pid}/${part}`);
        for (const n of needles) expect(data.includes(n), `/proc/${pid}/${part} holds the key`).toBe(false);
      }
    }
    const argv = readFileSync(`/proc/${sw[0]!.pid}/cmdline`, 'utf8').split('\0');
    expect(argv).toContain('fd=3,mode=aes-256-cbc,format=binary');
    // The key pipes are closed once read: swtpm holds no fd 3/4 to anything but its own sockets and files.
    expect(readFileSync(`/proc/${sw[0]!.pid}/environ`, 'utf8')).not.toMatch(/KEY/i);
  });

  it('the TPM state on disk is encrypted: no NV value, no TPM markers; swtpm without the key cannot load it', async () => {
    const paths = swtpmPaths(driver.layout(T.id));
    const state = readdirSync(paths.stateDir).filter((f) => f.startsWith('tpm2-'));
    expect(state).toContain('tpm2-00.permall');
    const data = readFileSync(join(paths.stateDir, 'tpm2-00.permall'));
    expect(data.length).toBeGreaterThan(256);
    expect(data.includes(secretBytes)).toBe(false);
    // swtpm's plaintext permanent state is a libtpms blob: these header/marker bytes must not show.
    for (const marker of ['PERSISTENT_ALL', 'libtpms', 'TPM2', secretBytes.toString('hex')])
      expect(data.includes(Buffer.from(marker))).toBe(false);

    // A copy of the state, given to swtpm without the key and with a wrong one: it refuses to start.
    const copy = mkdtempSync('/tmp/bw-vtpm-copy-');
    try {
      cpSync(join(paths.stateDir, 'tpm2-00.permall'), join(copy, 'tpm2-00.permall'));
      const run = (extra: string[], input?: Buffer) =>
        spawnSync(
          'swtpm',
          [
            'socket',
            '--tpm2',
            '--tpmstate',
            `dir=${copy}`,
            '--ctrl',
            `type=unixio,path=${copy}/ctrl.sock`,
            '--flags',
            'not-need-init,startup-clear',
            '--log',
            'fd=1,level=1',
            ...extra,
          ],
          { timeout: 4000, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], ...(input ? { input } : {}) },
        );
      const noKey = run([]);
      expect(noKey.status).toBe(1);
      expect(noKey.stdout).toMatch(/Could not initialize libtpms/);
      const wrong = run(['--key', 'fd=0,mode=aes-256-cbc,format=binary'], randomBytes(32));
      expect(wrong.status).toBe(1);
      expect(wrong.stdout).toMatch(/Could not initialize libtpms/);
      // With the right key the same state loads.
      const right = run(['--key', 'fd=0,mode=aes-256-cbc,format=binary'], key);
      expect(right.stdout).not.toMatch(/Could not|Error/i);
      expect(right.status === 0 || right.signal === 'SIGTERM').toBe(true);
    } finally {
      rmSync(copy, { recursive: true, force: true });
    }
  });

  it('the NV value survives stop/start; swtpm stops with the guest and restarts with it', async () => {
    const readsBefore = keyReads;
    await driver.shutdown(T.id, { timeoutMs: 5000 });
    expect(await driver.state(T.id)).toBe('shutoff');
    await waitFor('swtpm gone', async () => !(await swtpmProcesses(base)).has(T.id), 10_000, 100);
    await driver.define({ ...T, fwCfg: { 'opt/org.bulwark/run': readScript } });
    await driver.start(T.id);
    expect(keyReads).toBe(readsBefore + 1);
    await waitLog(T.id, 'BULWARK-RUN-END', 2);
    const text = await log(T.id);
    const reads = [...text.matchAll(/NVREAD ([0-9a-f]+)/g)].map((m) => m[1] ?? '');
    expect(reads.length).toBeGreaterThanOrEqual(2);
    const last = reads[reads.length - 1] ?? '';
    expect(last.slice(12, 20)).toBe('00000000');
    expect(last).toContain(secretBytes.toString('hex'));
    expect((await swtpmProcesses(base)).get(T.id)).toHaveLength(1);
  });

  it('suspend keeps the TPM state encrypted in the saved image; resume restarts swtpm and the NV value is there', async () => {
    await driver.suspend(T.id);
    expect(await driver.state(T.id)).toBe('suspended');
    expect((await swtpmProcesses(base)).has(T.id)).toBe(false);
    const saved = readFileSync(driver.layout(T.id).savedState);
    expect(saved.length).toBeGreaterThan(1024 * 1024);
    // The TPM's NV lives in its permanent state blob, which swtpm hands QEMU encrypted (--migration-key).
    expect(saved.includes(key)).toBe(false);
    await driver.resume(T.id);
    expect(await driver.state(T.id)).toBe('running');
    expect((await swtpmProcesses(base)).get(T.id)).toHaveLength(1);
    const before = count(await log(T.id), 'NVREAD ');
    await typeOnConsole(driver.layout(T.id).consoleSocket, '\nsh /tmp/nvread.sh\n');
    await waitLog(T.id, 'NVREAD ', before + 1, 30_000);
    const reads = [...(await log(T.id)).matchAll(/NVREAD ([0-9a-f]+)/g)].map((m) => m[1] ?? '');
    const last = reads[reads.length - 1] ?? '';
    expect(last.slice(12, 20)).toBe('00000000');
    expect(last).toContain(secretBytes.toString('hex'));
  });

  it('swtpm dying under a running guest: the guest is stopped and TPM_LOST reported (own child, adopted, found dead at reconcile)', async () => {
    const L = await define(
      driver,
      biosSpec({ name: 'vtpm-lost', tpm: { version: '2.0', model: 'tpm-crb' } }),
    );
    const seen: { event: string; data: unknown }[] = [];
    const listen = (d: QemuDriver) =>
      d.onEvent((id, event, data) => {
        if (id === L.id) seen.push({ event, data });
      });
    const swtpmOf = async () => ((await swtpmProcesses(base)).get(L.id) ?? [])[0];
    const killSwtpmAndWait = async (reason: string) => {
      const qemu = await driver.processInfo(L.id);
      const sw = await swtpmOf();
      expect(qemu && sw).toBeTruthy();
      seen.length = 0;
      process.kill(sw!.pid, 'SIGKILL');
      const lost = await waitFor(
        'TPM_LOST',
        async () => seen.find((e) => e.event === 'TPM_LOST'),
        30_000,
        100,
      );
      expect(lost.data).toEqual({ reason });
      expect(seen.map((e) => e.event)).not.toContain('EXITED');
      expect(processAlive(qemu!.pid)).toBe(false);
      expect(await driver.state(L.id)).toBe('shutoff');
      expect(await swtpmOf()).toBeUndefined();
    };
    let off = listen(driver);
    try {
      // This driver's own swtpm: its exit event.
      await driver.start(L.id);
      await killSwtpmAndWait('it ended with signal SIGKILL');

      // An adopted swtpm (no child of this driver): found gone by the driver's check.
      await driver.start(L.id);
      await driver.close();
      off();
      driver = await newDriver();
      off = listen(driver);
      expect((await driver.reconcile([T.id, L.id])).adopted).toContain(L.id);
      await killSwtpmAndWait('it was found gone');

      // Dead while no driver watched: reconcile stops the guest and names it.
      await driver.start(L.id);
      const qemu = await driver.processInfo(L.id);
      await driver.close();
      off();
      process.kill((await swtpmOf())!.pid, 'SIGKILL');
      await waitFor('swtpm gone', async () => (await swtpmOf()) === undefined, 10_000, 100);
      expect(processAlive(qemu!.pid)).toBe(true);
      driver = await newDriver();
      off = listen(driver);
      const r = await driver.reconcile([T.id, L.id]);
      expect(r.tpmLost).toEqual([L.id]);
      expect(r.adopted).toEqual([T.id]);
      expect(processAlive(qemu!.pid)).toBe(false);
      expect(await driver.state(L.id)).toBe('shutoff');

      // A guest stopped on purpose is no loss: its swtpm ends with it, unreported.
      await driver.start(L.id);
      seen.length = 0;
      await driver.shutdown(L.id, { timeoutMs: 3000 });
      await new Promise((res) => setTimeout(res, 3000));
      expect(seen.map((e) => e.event)).not.toContain('TPM_LOST');
    } finally {
      off();
      await driver.undefine(L.id);
    }
  });

  it('a daemon restart adopts the guest with its swtpm; undefine removes swtpm, state and user', async () => {
    const sw = (await swtpmProcesses(base)).get(T.id) ?? [];
    await driver.close();
    driver = await newDriver();
    const r = await driver.reconcile([T.id]);
    expect(r.adopted).toEqual([T.id]);
    expect((await swtpmProcesses(base)).get(T.id)?.map((p) => p.pid)).toEqual(sw.map((p) => p.pid));
    await driver.undefine(T.id);
    expect((await swtpmProcesses(base)).has(T.id)).toBe(false);
    expect(existsSync(driver.layout(T.id).dir)).toBe(false);
    expect(userExists(vmUserName(T.id))).toBe(false);
    expect(statSync(base).isDirectory()).toBe(true);
  });
});

/** Types on the guest's serial console through its socket. */
function typeOnConsole(path: string, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = connect(path, () => {
      s.write(text, () => setTimeout(() => s.end(() => resolve()), 300));
    });
    s.on('error', reject);
  });
}
