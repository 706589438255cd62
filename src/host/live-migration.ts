import { chown, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BulwarkError } from '../errors.js';
import { placeFile } from './instance-files.js';
import type { InstanceLayout } from './layout.js';
import { isObject, type QmpClient } from './qmp.js';
import { sleep } from './run.js';
import type { VmUser } from './users.js';

/**
 * Live migration between hosts (docs/multi-host.md): QEMU's migration stream
 * and the root disk's NBD block mirror, both over TLS with certificates from
 * the platform CA (`tls-creds-x509`, verify-peer), and on the destination
 * only the source host's certificate admitted (`authz-simple` on its CN).
 * The disk keys never travel in these streams: each side opens its own LUKS
 * overlay with the key it got from the control plane over its agent channel;
 * the mirror carries what the guest sees, inside TLS.
 */

/** A one-migration certificate: the key was made by this agent (never sent), the certificate signed by the CA. */
export interface MigrationTls {
  caPem: string;
  certPem: string;
  keyPem: string;
}

export interface IncomingMigration {
  /** The destination's address the source connects to (its agent's host address). */
  listen: string;
  nbdPort: number;
  migrationPort: number;
  /** The source host's name: the only certificate CN admitted. */
  peer: string;
  tls: MigrationTls;
}

export interface OutgoingMigration {
  host: string;
  nbdPort: number;
  migrationPort: number;
  /** The destination host's name, checked against its server certificate. */
  peer: string;
  tls: MigrationTls;
}

export interface MigrationProgress {
  status: string;
  memoryTotal: number;
  memoryProcessed: number;
  memoryRemaining: number;
  diskTotal: number;
  diskProcessed: number;
}

const TLS_ID = 'mig-tls';
const AUTHZ_ID = 'mig-authz';
const EXPORT = 'disk0';
const ROOT_NODE = 'disk0-fmt';
const TARGET_NODE = 'mig-target';
const MIRROR_JOB = 'mig-mirror';

const tlsDir = (L: InstanceLayout) => join(L.dir, 'migration-tls');

/** The certificate files QEMU's tls-creds-x509 reads, in the guest's own 0700 dir, its user's 0600 files. */
export async function writeTlsDir(
  L: InstanceLayout,
  user: VmUser,
  endpoint: 'server' | 'client',
  tls: MigrationTls,
): Promise<string> {
  const dir = tlsDir(L);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { mode: 0o700 });
  await chown(dir, user.uid, user.gid);
  const put = (name: string, text: string) =>
    placeFile(L, user, join(dir, name), (tmp) => writeFile(tmp, text, { mode: 0o600 }));
  await put('ca-cert.pem', tls.caPem);
  await put(`${endpoint}-cert.pem`, tls.certPem);
  await put(`${endpoint}-key.pem`, tls.keyPem);
  return dir;
}

/** Removes the one-migration key and certificates. */
export function removeTlsDir(L: InstanceLayout): Promise<void> {
  return rm(tlsDir(L), { recursive: true, force: true });
}

/** Destination, QEMU paused with `-incoming defer`: the TLS NBD export of the root disk, then the TLS listener. */
export async function startIncoming(qmp: QmpClient, L: InstanceLayout, o: IncomingMigration): Promise<void> {
  await qmp.execute('object-add', {
    'qom-type': 'tls-creds-x509',
    id: TLS_ID,
    endpoint: 'server',
    dir: tlsDir(L),
    'verify-peer': true,
  });
  await qmp.execute('object-add', { 'qom-type': 'authz-simple', id: AUTHZ_ID, identity: `CN=${o.peer}` });
  await qmp.execute('nbd-server-start', {
    // nbd-server-start takes the legacy (nested) socket address.
    addr: { type: 'inet', data: { host: o.listen, port: String(o.nbdPort) } },
    'tls-creds': TLS_ID,
    'tls-authz': AUTHZ_ID,
  });
  await qmp.execute('block-export-add', {
    type: 'nbd',
    id: EXPORT,
    'node-name': ROOT_NODE,
    name: EXPORT,
    writable: true,
  });
  await qmp.execute('migrate-set-parameters', { 'tls-creds': TLS_ID, 'tls-authz': AUTHZ_ID });
  await qmp.execute('migrate-incoming', { uri: `tcp:${o.listen}:${o.migrationPort}` });
}

/** Destination, after the source finished: the stream has loaded; the export goes; the guest may run. */
export async function finishIncoming(qmp: QmpClient): Promise<void> {
  for (const deadline = Date.now() + 120_000; ; ) {
    const s = await qmp.queryStatus();
    if (s.status !== 'inmigrate') break;
    if (Date.now() > deadline) throw new Error('the migration stream did not finish loading');
    await sleep(100);
  }
  await qmp.execute('block-export-del', { id: EXPORT }).catch(() => undefined);
  await qmp.execute('nbd-server-stop').catch(() => undefined);
  await dropTls(qmp);
}

/** The one-migration TLS objects go, so the guest can migrate again (their ids are fixed). */
async function dropTls(qmp: QmpClient): Promise<void> {
  await qmp
    .execute('migrate-set-parameters', { 'tls-creds': '', 'tls-authz': '', 'tls-hostname': '' })
    .catch(() => undefined);
  await qmp.execute('object-del', { id: AUTHZ_ID }).catch(() => undefined);
  await qmp.execute('object-del', { id: TLS_ID }).catch(() => undefined);
}

const num = (o: unknown, k: string): number =>
  isObject(o) && typeof o[k] === 'number' ? (o[k] as number) : 0;

/** Source: the query QMP gives, as the control plane shows it (os-migrations, server-migrations). */
export async function progressOf(qmp: QmpClient): Promise<MigrationProgress> {
  const m = await qmp.execute('query-migrate');
  const jobs = await qmp.execute('query-block-jobs');
  const job = Array.isArray(jobs) ? jobs.find((j) => isObject(j) && j.device === MIRROR_JOB) : undefined;
  const ram = isObject(m) ? m.ram : undefined;
  return {
    status: isObject(m) && typeof m.status === 'string' ? m.status : job ? 'mirroring' : 'none',
    memoryTotal: num(ram, 'total'),
    memoryProcessed: num(ram, 'transferred'),
    memoryRemaining: num(ram, 'remaining'),
    diskTotal: num(job, 'len'),
    diskProcessed: num(job, 'offset'),
  };
}

/**
 * Source: mirrors the root overlay's own data into the destination's export
 * until in sync (writes then go to both), streams RAM and device state
 * (the vTPM's state with it: QEMU's tpm-emulator carries swtpm's blobs), and
 * returns once the guest is paused here with everything sent; the mirror is
 * then completed without a pivot.
 */
export async function sendOutgoing(qmp: QmpClient, L: InstanceLayout, o: OutgoingMigration): Promise<void> {
  await qmp.execute('object-add', {
    'qom-type': 'tls-creds-x509',
    id: TLS_ID,
    endpoint: 'client',
    dir: tlsDir(L),
    'verify-peer': true,
  });
  try {
    await qmp.execute('blockdev-add', {
      driver: 'nbd',
      'node-name': TARGET_NODE,
      server: { type: 'inet', host: o.host, port: String(o.nbdPort) },
      export: EXPORT,
      'tls-creds': TLS_ID,
      'tls-hostname': o.peer,
    });
    await qmp.execute('blockdev-mirror', {
      'job-id': MIRROR_JOB,
      device: ROOT_NODE,
      target: TARGET_NODE,
      sync: 'top',
      'copy-mode': 'write-blocking',
    });
    for (const deadline = Date.now() + 10 * 60_000; ; ) {
      const jobs = await qmp.execute('query-block-jobs');
      const job = Array.isArray(jobs) ? jobs.find((j) => isObject(j) && j.device === MIRROR_JOB) : undefined;
      if (!job) throw new Error('the disk mirror to the destination stopped');
      if (isObject(job) && job.ready === true) break;
      if (Date.now() > deadline) throw new Error('the disk mirror did not catch up in 10 minutes');
      await sleep(200);
    }
    await qmp.execute('migrate-set-parameters', { 'tls-creds': TLS_ID, 'tls-hostname': o.peer });
    await qmp.execute('migrate', { uri: `tcp:${o.host}:${o.migrationPort}` });
    for (const deadline = Date.now() + 20 * 60_000; ; ) {
      const m = await qmp.execute('query-migrate');
      const status = isObject(m) && typeof m.status === 'string' ? m.status : 'unknown';
      if (status === 'completed') break;
      if (status === 'failed' || status === 'cancelled' || Date.now() > deadline) {
        const desc = isObject(m) && typeof m['error-desc'] === 'string' ? m['error-desc'] : status;
        throw new BulwarkError('Unavailable', `The live migration failed: ${desc}`);
      }
      await sleep(200);
    }
    // Paused here now; the mirror has every write. Cancelling a ready mirror completes it, no pivot.
    await qmp.execute('block-job-cancel', { device: MIRROR_JOB });
    for (const deadline = Date.now() + 60_000; ; ) {
      const jobs = await qmp.execute('query-block-jobs');
      if (!Array.isArray(jobs) || !jobs.some((j) => isObject(j) && j.device === MIRROR_JOB)) break;
      if (Date.now() > deadline) throw new Error('the disk mirror did not finish');
      await sleep(100);
    }
  } catch (err) {
    await qmp.execute('migrate_cancel').catch(() => undefined);
    await qmp.execute('block-job-cancel', { device: MIRROR_JOB, force: true }).catch(() => undefined);
    throw err;
  } finally {
    await qmp.execute('blockdev-del', { 'node-name': TARGET_NODE }).catch(() => undefined);
    await dropTls(qmp);
  }
}
