import { spawn } from 'node:child_process';
import { createCipheriv, randomBytes } from 'node:crypto';
import type { Writable } from 'node:stream';
import { BulwarkError } from '../errors.js';
import { isObject, type QmpClient, QmpError } from './qmp.js';
import { sleep } from './run.js';

/**
 * QEMU native LUKS for volumes and disks: qcow2 files whose clusters are
 * encrypted with aes-xts-plain64 (LUKSv1 header inside the qcow2), the way
 * Nova opens encrypted Cinder volumes (no dm-crypt on the host).
 *
 * The key never touches a file, a command line or an environment: qemu-img
 * reads it from a pipe (`secret,file=/dev/stdin`), and a running QEMU gets it
 * over QMP (`object-add` of a `secret` object, base64), once per plug; the
 * secret object is deleted when the volume is unplugged.
 */

/** The LUKS options: AES-256 in XTS mode with plain64 IVs (Cinder's `aes-xts-plain64`, 256-bit key). */
export const LUKS_OPTIONS = [
  'encrypt.format=luks',
  'encrypt.key-secret=sec0',
  'encrypt.cipher-alg=aes-256',
  'encrypt.cipher-mode=xts',
  'encrypt.ivgen-alg=plain64',
  'encrypt.hash-alg=sha256',
].join(',');

/**
 * The LUKS passphrase for a key: its base64 text. QEMU wants a secret used
 * as a passphrase to be UTF-8, and random key bytes are not.
 */
export const luksPassphrase = (key: Buffer): Buffer => Buffer.from(key.toString('base64'), 'ascii');

const TOOL_ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' };

/**
 * Runs qemu-img with `secret` on its stdin, a real pipe (QEMU's secret
 * object reads `file=/dev/stdin` with open(), which a socket such as Node's
 * own stdio channel refuses): `sh -c 'cat | "$@"'` makes the pipe, and the
 * key passes through kernel buffers only. It shows up in neither
 * `/proc/<pid>/cmdline` nor `environ` nor any file.
 */
export async function qemuImgWithSecret(
  args: readonly string[],
  secret: Buffer | null,
  timeoutMs = 120_000,
): Promise<{ code: number; stderr: string; stdout: string }> {
  // Creating LUKS times PBKDF2 on the thread's CPU clock; on a busy or coarse-clocked host the
  // first probe can read zero time and qemu-img gives up. Nothing is written then: try again.
  for (let attempt = 1; ; attempt++) {
    const r = await runQemuImg(args, secret, timeoutMs);
    if (r.code === 0 || attempt >= 5 || !/Unable to get accurate CPU usage/.test(r.stderr)) return r;
  }
}

function runQemuImg(
  args: readonly string[],
  secret: Buffer | null,
  timeoutMs: number,
): Promise<{ code: number; stderr: string; stdout: string }> {
  return new Promise((resolve) => {
    const child = secret
      ? spawn('sh', ['-c', 'cat | "$@"', 'sh', 'qemu-img', ...args], {
          stdio: ['pipe', 'pipe', 'pipe'],
          env: TOOL_ENV,
        })
      : spawn('qemu-img', [...args], { stdio: ['ignore', 'pipe', 'pipe'], env: TOOL_ENV });
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      resolve({ code: -1, stdout, stderr: stderr || err.message });
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
    if (secret) {
      const pipe = child.stdin as Writable;
      pipe.on('error', () => undefined); // qemu-img died first: reported by its exit status
      pipe.end(luksPassphrase(secret));
    }
  });
}

/** qemu-img's `sec0` secret object, read from the pipe `qemuImgWithSecret` makes. */
export const secretObject = ['--object', 'secret,id=sec0,file=/dev/stdin,format=raw'];

export const failed = (what: string, stderr: string) =>
  new BulwarkError('Unavailable', `${what} failed: ${stderr.replace(/^qemu-img: /, '').trim()}`);

/** Creates a qcow2 of `bytes`, LUKS-encrypted with `key` when given. */
export async function createQcow2(path: string, bytes: number, key: Buffer | null): Promise<void> {
  const args = key
    ? ['create', '-q', ...secretObject, '-f', 'qcow2', '-o', LUKS_OPTIONS, path, String(bytes)]
    : ['create', '-q', '-f', 'qcow2', path, String(bytes)];
  const r = await qemuImgWithSecret(args, key);
  if (r.code !== 0) throw failed('Creating the volume', r.stderr);
}

/** Grows a qcow2 (encrypted ones are opened with their key, through image-opts). */
export async function resizeQcow2(path: string, bytes: number, key: Buffer | null): Promise<void> {
  const image = key
    ? ['--image-opts', `driver=qcow2,file.filename=${path.replaceAll(',', ',,')},encrypt.key-secret=sec0`]
    : ['-f', 'qcow2', path];
  const args = ['resize', ...(key ? secretObject : []), ...image, String(bytes)];
  const r = await qemuImgWithSecret(args, key);
  if (r.code !== 0) throw failed('Extending the volume', r.stderr);
}

/**
 * What qemu-img says of a volume file (read as root, no key needed): refused
 * if it names a backing or external data file (a guest's user could have
 * rewritten the header while it was attached), or if its encryption is not
 * what the volume's record says.
 */
export async function checkVolumeFile(path: string, encrypted: boolean): Promise<void> {
  const r = await qemuImgWithSecret(['info', '-f', 'qcow2', '--output=json', '-U', path], null, 60_000);
  if (r.code !== 0) throw failed('Checking the volume', r.stderr);
  let info: unknown;
  try {
    info = JSON.parse(r.stdout);
  } catch {
    throw new BulwarkError('Unavailable', 'The volume file could not be described by qemu-img.');
  }
  if (!isObject(info)) throw new BulwarkError('Unavailable', 'The volume file is damaged.');
  const specific = isObject(info['format-specific']) ? info['format-specific'] : {};
  const data = isObject(specific.data) ? specific.data : {};
  if (info['backing-filename'] !== undefined || data['data-file'] !== undefined)
    throw new BulwarkError('Conflict', 'The volume file names another file; refusing to use it.');
  const luks = isObject(data.encrypt) && data.encrypt.format === 'luks';
  if (encrypted !== luks || (info.encrypted === true) !== encrypted)
    throw new BulwarkError(
      'Conflict',
      encrypted
        ? 'The volume file is not LUKS-encrypted although its type says so; refusing to use it.'
        : 'The volume file is encrypted although its type is not.',
    );
}

/** QMP names of one volume's objects in a guest (node names are at most 31 characters). */
export function volumeNodes(volumeId: string) {
  const tag = `v${volumeId.replaceAll('-', '').slice(0, 16)}`;
  return { secret: `${tag}-key`, file: `${tag}-file`, fmt: `${tag}-fmt`, device: `${tag}-dev` };
}

/**
 * Plugs a volume into a running (or still paused) QEMU: the key as a secret
 * object, then the file and qcow2 nodes (`backing: null`: the header cannot
 * make QEMU open another file), then a virtio-blk device. On failure,
 * whatever was added is removed again, the secret first.
 */
export async function plugVolume(
  qmp: QmpClient,
  volumeId: string,
  path: string,
  key: Buffer | null,
  /** q35: free PCIe root ports to try in turn (the root bus takes no hot-plugged devices). */
  ports: string[] = [],
): Promise<void> {
  const n = volumeNodes(volumeId);
  const done: (() => Promise<unknown>)[] = [];
  try {
    if (key) {
      await qmp.execute('object-add', {
        'qom-type': 'secret',
        id: n.secret,
        // base64 of the passphrase (itself the key's base64): decoded by QEMU into the secret object only.
        data: luksPassphrase(key).toString('base64'),
        format: 'base64',
      });
      done.push(() => qmp.execute('object-del', { id: n.secret }));
    }
    await qmp.execute('blockdev-add', {
      driver: 'file',
      'node-name': n.file,
      filename: path,
      discard: 'unmap',
    });
    done.push(() => qmp.execute('blockdev-del', { 'node-name': n.file }));
    await qmp.execute('blockdev-add', {
      driver: 'qcow2',
      'node-name': n.fmt,
      file: n.file,
      backing: null,
      discard: 'unmap',
      ...(key ? { encrypt: { format: 'luks', 'key-secret': n.secret } } : {}),
    });
    done.push(() => qmp.execute('blockdev-del', { 'node-name': n.fmt }));
    const device = { driver: 'virtio-blk-pci', id: n.device, drive: n.fmt, serial: volumeId.slice(0, 20) };
    if (!ports.length) await qmp.execute('device_add', device);
    else {
      let last: unknown;
      let plugged = false;
      for (const bus of ports) {
        try {
          await qmp.execute('device_add', { ...device, bus });
          plugged = true;
          break;
        } catch (err) {
          last = err; // that port is taken: the next
        }
      }
      if (!plugged)
        throw new BulwarkError(
          'Conflict',
          `No free slot for another volume on this server (${String(last)}).`,
        );
    }
  } catch (err) {
    for (const undo of done.reverse()) await undo().catch(() => undefined);
    throw err;
  }
}

/**
 * Unplugs a volume: `device_del` (the guest must release it; waited for up
 * to `timeoutMs`), then the block nodes and the secret object. Anything
 * already gone is skipped.
 */
export async function unplugVolume(qmp: QmpClient, volumeId: string, timeoutMs = 30_000): Promise<void> {
  const n = volumeNodes(volumeId);
  const present = async () => {
    const devs = await qmp.execute('qom-list', { path: '/machine/peripheral' }).catch(() => []);
    return Array.isArray(devs) && devs.some((d) => isObject(d) && d.name === n.device);
  };
  if (await present()) {
    await qmp.execute('device_del', { id: n.device });
    const deadline = Date.now() + timeoutMs;
    while (await present()) {
      if (Date.now() > deadline)
        throw new BulwarkError(
          'Conflict',
          'The guest did not release the volume (it may be in use inside the guest); try again.',
        );
      await sleep(100);
    }
  }
  const nodes = await qmp.execute('query-named-block-nodes', { flat: true }).catch(() => []);
  const has = (name: string) =>
    Array.isArray(nodes) && nodes.some((b) => isObject(b) && b['node-name'] === name);
  const deadline = Date.now() + timeoutMs;
  if (has(n.fmt)) await blockdevDel(qmp, n.fmt, deadline);
  if (has(n.file)) await blockdevDel(qmp, n.file, deadline);
  await qmp.execute('object-del', { id: n.secret }).catch(() => undefined);
}

/**
 * The device leaves /machine/peripheral before QEMU drops its reference to
 * the block backend (that happens in a later main-loop turn), so a
 * blockdev-del right after can meet "is in use": retry until the deadline.
 */
async function blockdevDel(qmp: QmpClient, node: string, deadline: number): Promise<void> {
  for (;;) {
    try {
      await qmp.execute('blockdev-del', { 'node-name': node });
      return;
    } catch (err) {
      if (!(err instanceof QmpError) || !/is in use/.test(err.message) || Date.now() > deadline) throw err;
      await sleep(50);
    }
  }
}

// ---- encrypted root disks ----------------------------------------------------------------------

/**
 * Creates a guest's root overlay as a LUKS qcow2 over its base image (not
 * opened: `-u`). Only what the guest writes is in the overlay, encrypted;
 * unwritten clusters read through to the (unencrypted, shared) image.
 */
export async function createEncryptedOverlay(
  path: string,
  disk: { imagePath: string; imageFormat: 'raw' | 'qcow2' },
  bytes: number,
  key: Buffer,
): Promise<void> {
  const r = await qemuImgWithSecret(
    [
      'create',
      '-q',
      ...secretObject,
      '-f',
      'qcow2',
      '-F',
      disk.imageFormat,
      '-b',
      disk.imagePath,
      '-u',
      '-o',
      LUKS_OPTIONS,
      path,
      String(bytes),
    ],
    key,
  );
  if (r.code !== 0) throw failed('Creating the encrypted disk', r.stderr);
}

/**
 * Plugs an encrypted root overlay into a paused QEMU (before `cont`): the
 * key as a secret object, the overlay's file and qcow2 nodes over the `base`
 * node the command line made, the I/O throttle if any, and the boot device
 * (`vda`, bootindex 1). The caller resets the machine afterwards so the
 * firmware's boot order includes it.
 */
export async function plugRootDisk(
  qmp: QmpClient,
  overlay: string,
  key: Buffer,
  limits: Record<string, number> | null,
  /** q35: the PCIe root port to plug into (its root bus takes no hot-plugged devices). */
  bus?: string,
): Promise<void> {
  await qmp.execute('object-add', {
    'qom-type': 'secret',
    id: 'disk0-key',
    data: luksPassphrase(key).toString('base64'),
    format: 'base64',
  });
  await qmp.execute('blockdev-add', {
    driver: 'file',
    'node-name': 'disk0-file',
    filename: overlay,
    discard: 'unmap',
  });
  await qmp.execute('blockdev-add', {
    driver: 'qcow2',
    'node-name': 'disk0-fmt',
    file: 'disk0-file',
    backing: 'base',
    discard: 'unmap',
    encrypt: { format: 'luks', 'key-secret': 'disk0-key' },
  });
  let root = 'disk0-fmt';
  if (limits) {
    await qmp.execute('object-add', { 'qom-type': 'throttle-group', id: 'disk0-limits', limits });
    await qmp.execute('blockdev-add', {
      driver: 'throttle',
      'node-name': 'disk0',
      'throttle-group': 'disk0-limits',
      file: 'disk0-fmt',
    });
    root = 'disk0';
  }
  await qmp.execute('device_add', {
    driver: 'virtio-blk-pci',
    id: 'vda',
    drive: root,
    bootindex: 1,
    ...(bus ? { bus } : {}),
  });
}

/**
 * QEMU secret objects `src` and `dst` holding `keys`' passphrases, each
 * AES-256-CBC encrypted (its ciphertext may be on the command line) under a
 * one-off master secret `sec0` that crosses the stdin pipe only
 * (qemuImgWithSecret). The master is 24 random bytes, so its passphrase form
 * (base64) is the 32 bytes AES-256 needs. A null key gives no object.
 */
function wrappedSecrets(keys: { src: Buffer | null; dst: Buffer | null }): {
  master: Buffer;
  args: string[];
} {
  const master = randomBytes(24);
  const aesKey = luksPassphrase(master);
  const args = [...secretObject];
  for (const [id, key] of Object.entries(keys)) {
    if (!key) continue;
    const iv = randomBytes(16);
    const c = createCipheriv('aes-256-cbc', aesKey, iv);
    const data = Buffer.concat([c.update(luksPassphrase(key)), c.final()]).toString('base64');
    args.push(
      '--object',
      `secret,id=${id},data=${data},format=base64,keyid=sec0,iv=${iv.toString('base64')}`,
    );
  }
  return { master, args };
}

/**
 * Copies a stopped guest's root overlay to `target` for a clone (docs/clones.md):
 * a new qcow2 over the same base image holding only what differs from it
 * (`-B`), re-encrypted under the clone's own key (`keys.dst`), never the
 * source's. The plaintext exists only inside qemu-img.
 */
export async function copyRootOverlay(
  source: string,
  base: { imagePath: string; imageFormat: 'raw' | 'qcow2' },
  target: string,
  keys: { src: Buffer | null; dst: Buffer | null },
): Promise<void> {
  const { master, args } = wrappedSecrets(keys);
  const image = [
    'driver=qcow2',
    'file.driver=file',
    `file.filename=${source.replaceAll(',', ',,')}`,
    `backing.driver=${base.imageFormat}`,
    'backing.file.driver=file',
    `backing.file.filename=${base.imagePath.replaceAll(',', ',,')}`,
    ...(keys.src ? ['encrypt.key-secret=src'] : []),
  ].join(',');
  const r = await qemuImgWithSecret(
    [
      'convert',
      ...args,
      '--image-opts',
      image,
      '-O',
      'qcow2',
      '-B',
      base.imagePath,
      '-F',
      base.imageFormat,
      ...(keys.dst ? ['-o', LUKS_OPTIONS.replace('key-secret=sec0', 'key-secret=dst')] : []),
      target,
    ],
    master,
    600_000,
  );
  if (r.code !== 0) throw failed('Copying the disk for the clone', r.stderr);
}
