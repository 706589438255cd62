import { readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { BulwarkError } from '../../errors.js';
import { createCsr } from '../../pki/ca.js';
import type { GuestFile } from '../guest-transfer.js';
import type { GuestSpec } from '../hypervisor.js';
import type { QemuDriver } from '../qemu-driver.js';
import type { AgentIdentity } from './client.js';
import type { Handler } from './rpc.js';

/** A free TCP port on `host`, for QEMU to listen on (the kernel picks it; QEMU binds it next). */
const freePort = (host: string) =>
  new Promise<number>((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const a = s.address();
      s.close(() => (typeof a === 'object' && a ? resolve(a.port) : reject(new Error('no port'))));
    });
  });

/** The largest part of a file one cold-migration read returns (well under the channel's 32 MiB frame). */
export const CHUNK_MAX = 4 * 1024 * 1024;

/**
 * The agent's live- and cold-migration calls (live-migration.ts). For each migration
 * the agent makes a fresh key and a CSR; the control plane has the platform CA
 * sign it (server usage on the destination, client on the source, named for
 * the host); the key never leaves this host and lives only in the guest's
 * directory while the migration runs. The trust anchor is the CA this agent
 * pinned when it joined, never one from the wire.
 */
export function migrationCalls(driver: QemuDriver, me: AgentIdentity): Record<string, Handler> {
  const keys = new Map<string, string>();
  const tlsFor = (serverId: string, certPem: string) => {
    const keyPem = keys.get(serverId);
    if (!keyPem)
      throw new BulwarkError('Conflict', `no migration key was made for ${serverId} on ${me.name}`);
    keys.delete(serverId);
    return { caPem: me.caPem, certPem, keyPem };
  };
  return {
    'migration.csr': async (serverId: string) => {
      const { csrPem, keyPem } = await createCsr(me.name);
      keys.set(serverId, keyPem);
      return csrPem;
    },
    'migration.prepare': async (spec: GuestSpec, o: { listen: string; peer: string; certPem: string }) => {
      const nbdPort = await freePort(o.listen);
      const migrationPort = await freePort(o.listen);
      await driver.migrationPrepare(spec, {
        listen: o.listen,
        nbdPort,
        migrationPort,
        peer: o.peer,
        tls: tlsFor(spec.id, o.certPem),
      });
      return { nbdPort, migrationPort };
    },
    'migration.send': (
      id: string,
      o: { host: string; nbdPort: number; migrationPort: number; peer: string; certPem: string },
    ) =>
      driver.migrationSend(id, {
        host: o.host,
        nbdPort: o.nbdPort,
        migrationPort: o.migrationPort,
        peer: o.peer,
        tls: tlsFor(id, o.certPem),
      }),
    'migration.progress': (id: string) => driver.migrationProgress(id),
    'migration.finish': (id: string) => driver.migrationFinish(id),
    'migration.cleanup': (id: string) => driver.migrationCleanup(id),
    // Cold migration (guest-transfer.ts): the stopped guest's files at rest, copied through the control plane.
    'coldmig.machine': async () => (await readFile('/etc/machine-id', 'utf8')).trim(),
    'coldmig.list': (id: string) => driver.transferList(id),
    'coldmig.read': (id: string, name: string, offset: number, length: number) =>
      driver.transferRead(id, name, offset, Math.min(length, CHUNK_MAX)),
    'coldmig.write': (id: string, name: string, offset: number, data: Buffer) =>
      driver.transferWrite(id, name, offset, data),
    'coldmig.commit': (id: string, files: GuestFile[]) => driver.transferCommit(id, files),
    'coldmig.release': (id: string, o: { keepUser: boolean }) =>
      driver.release(id, { keepUser: o?.keepUser === true }),
  };
}
