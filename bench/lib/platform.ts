/**
 * An in-process Bulwark (the real platform, API and SQLite store, as the
 * daemon builds them) listening on loopback HTTP, for the API, audit and
 * security-group benches. The hypervisor is the in-memory one unless a part
 * passes another; the dataplane is the caller's (the real nft one, or none).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { buildApi } from '../../src/api/server.js';
import { FakeHypervisor } from '../../src/host/fake-hypervisor.js';
import type { HypervisorDriver } from '../../src/host/hypervisor.js';
import { bootstrapIdentity } from '../../src/identity/bootstrap.js';
import type { DataplaneSync } from '../../src/network/networks.js';
import { buildPlatform, type Platform } from '../../src/platform.js';
import type { AuthContext } from '../../src/policy/context.js';
import { openStore, type Store } from '../../src/store/database.js';

export interface BenchApi {
  app: FastifyInstance;
  store: Store;
  platform: Platform;
  /** http://127.0.0.1:PORT */
  url: string;
  /** A project-scoped admin token and the context it stands for. */
  token: string;
  auth: AuthContext;
  /** A flavor and a 1 MiB raw image in the admin project. */
  bootable(): Promise<{ flavorId: string; imageId: string }>;
  close(): Promise<void>;
}

const noDataplane: DataplaneSync = { sync: async () => undefined };

export async function startBenchApi(
  opts: {
    dataplane?: DataplaneSync;
    driver?: HypervisorDriver;
    /** More routes (a bench's own baseline), added before the server listens. */
    routes?: (app: FastifyInstance) => void;
  } = {},
): Promise<BenchApi> {
  const dir = mkdtempSync(join(tmpdir(), 'bulwark-bench-'));
  const store = await openStore({ url: join(dir, 'bulwark.db') });
  const platform = buildPlatform(store, opts.driver ?? new FakeHypervisor(), opts.dataplane ?? noDataplane, {
    dataDir: dir,
    tokenTtlSeconds: 3600,
    adminProjectName: 'admin',
    hostName: 'bench-host',
    capabilities: { uefi: true, secureBoot: true, tpm: true, cpus: 4 },
    hostCapacity: { vcpus: 4096, ramMiB: 4096 * 1024, diskGiB: 100_000 },
    maxImageBytes: 64 * 1024 * 1024,
    defaultGroupAllowsSameGroup: false,
    identityPolicy: { adminMfaRequired: false },
  });
  const { adminPassword } = await bootstrapIdentity(store, platform.identity);
  if (!adminPassword) throw new Error('bootstrap did not create the admin');
  const app = await buildApi({ store, ...platform, publicUrl: 'http://127.0.0.1' });
  opts.routes?.(app);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  const res = await fetch(`${url}/identity/v3/auth/tokens`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      auth: {
        identity: {
          methods: ['password'],
          password: { user: { name: 'admin', domain: { id: 'default' }, password: adminPassword } },
        },
        scope: { project: { name: 'admin', domain: { id: 'default' } } },
      },
    }),
  });
  if (res.status !== 201) throw new Error(`admin login failed: ${res.status} ${await res.text()}`);
  const token = res.headers.get('x-subject-token') as string;
  const auth = await platform.identity.validateToken(token);
  if (!auth) throw new Error('the admin token does not validate');
  return {
    app,
    store,
    platform,
    url,
    token,
    auth,
    async bootable() {
      const { flavors, images } = platform.compute;
      const flavor = await flavors.create({ name: 'bench-flavor', vcpus: 1, ram: 256, disk: 1 });
      const img = await images.create(auth, {
        name: 'bench-image',
        disk_format: 'raw',
        container_format: 'bare',
        properties: {},
      });
      await images.upload(auth, img.id, Readable.from([Buffer.alloc(1024 * 1024)]));
      return { flavorId: flavor.id, imageId: img.id };
    },
    async close() {
      await platform.compute.servers.settled();
      await app.close();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Calls the API with the admin token; throws unless the status is `expect`. */
export async function call<T = unknown>(
  api: BenchApi,
  method: string,
  path: string,
  body?: unknown,
  expect?: number,
): Promise<T> {
  const res = await fetch(`${api.url}${path}`, {
    method,
    headers: {
      'x-auth-token': api.token,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  if (expect !== undefined && res.status !== expect)
    throw new Error(`${method} ${path}: ${res.status} (expected ${expect}): ${text.slice(0, 300)}`);
  return (text ? JSON.parse(text) : undefined) as T;
}
