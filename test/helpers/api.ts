import { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { buildApi } from '../../src/api/server.js';
import { HostEnrollment } from '../../src/compute/host-enrollment.js';
import type { CreateServerInput } from '../../src/compute/servers.js';
import { FakeHypervisor } from '../../src/host/fake-hypervisor.js';
import { bootstrapIdentity } from '../../src/identity/bootstrap.js';
import type { IdentityPolicy } from '../../src/identity/config.js';
import type { IdentityService } from '../../src/identity/service.js';
import { type DataplaneSync, syncGroups } from '../../src/network/networks.js';
import { createCa, type PemPair } from '../../src/pki/ca.js';
import { buildPlatform, type Platform, type PlatformOptions } from '../../src/platform.js';
import type { AuthContext } from '../../src/policy/context.js';
import type { Dialect, Store } from '../../src/store/database.js';
import { openStore } from '../../src/store/database.js';
import { type TestDb, testDb } from './store.js';

type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE' | 'HEAD';

export const PUBLIC_URL = 'https://bulwark.test:8443';
export const PASSWORD = 'correct-horse-battery';

/** An in-process API on a fresh database, with helpers to log in and call it. */
export interface TestApi {
  app: FastifyInstance;
  store: Store;
  identity: IdentityService;
  platform: Platform;
  driver: FakeHypervisor;
  /** The platform CA agents enroll with, and the enrollment service using it. */
  ca: PemPair;
  enrollment: HostEnrollment;
  /** Every firewall sync the API asked for, with its reason. */
  dataplane: { reasons: string[] };
  db: TestDb;
  adminPassword: string;
  /** Logs in and returns the token. */
  login(user: string, password: string, project?: string): Promise<string>;
  /** The context a token stands for, to call domain services directly in tests. */
  authOf(token: string): AuthContext;
  call(
    method: Method,
    url: string,
    token?: string | null,
    body?: unknown,
  ): Promise<{ status: number; json: any; headers: Record<string, unknown> }>;
  /** A flavor and an uploaded 1 MiB raw image, owned by the token's project, to boot fake servers from. */
  bootable(token: string, name: string, ramMiB?: number): Promise<{ flavorId: string; imageId: string }>;
  /** Creates a project, a user with `role` on it, and returns a token for them. */
  persona(
    project: string,
    user: string,
    role: string,
  ): Promise<{ token: string; userId: string; projectId: string }>;
  close(): Promise<void>;
  /** The largest list page the API was built with, when the suite set one. */
  maxListLimit?: number;
}

/** The platform options every API test runs with (a host that can do UEFI, Secure Boot and TPM). */
export const testPlatformOptions = (dataDir: string): PlatformOptions => ({
  dataDir,
  tokenTtlSeconds: 3600,
  adminProjectName: 'admin',
  hostName: 'test-host',
  capabilities: { uefi: true, secureBoot: true, tpm: true, cpus: 4 },
  // A declared size, so API tests do not depend on this machine's (x4 vCPU overcommit: 256 vCPUs).
  hostCapacity: { vcpus: 64, ramMiB: 256 * 1024, diskGiB: 4096 },
  maxImageBytes: 64 * 1024 * 1024,
  defaultGroupAllowsSameGroup: false,
  // Suites about other rooms log the admin in with a password only; test/api/mfa.test.ts keeps admin MFA on.
  identityPolicy: { adminMfaRequired: false },
});

export async function startTestApi(
  dialect: Dialect,
  {
    maxListLimit,
    ...extra
  }: Partial<Omit<PlatformOptions, 'identityPolicy'>> & {
    identityPolicy?: Partial<IdentityPolicy>;
    /** The API's largest list page (Nova's max_limit; default 1000). */
    maxListLimit?: number;
  } = {},
  /** A real dataplane behind the recorded syncs (test/net/sg-incremental.test.ts); none by default. */
  real?: DataplaneSync,
): Promise<TestApi> {
  const db = await testDb(dialect);
  const store = await openStore({ url: db.url, ...(db.adminUrl ? { adminUrl: db.adminUrl } : {}) });
  const driver = new FakeHypervisor();
  const dataplane = {
    reasons: [] as string[],
    sync: async (reason: string) => {
      dataplane.reasons.push(reason);
      await real?.sync(reason);
    },
    ...(real
      ? {
          syncGroups: async (ids: readonly string[], reason: string) => {
            dataplane.reasons.push(reason);
            await syncGroups(real, ids, reason);
          },
        }
      : {}),
  };
  const base = testPlatformOptions(db.dir);
  const platform = buildPlatform(store, driver, dataplane, {
    ...base,
    ...extra,
    identityPolicy: { ...base.identityPolicy, ...extra.identityPolicy },
  });
  const { identity } = platform;
  const { adminPassword } = await bootstrapIdentity(store, identity);
  if (!adminPassword) throw new Error('bootstrap did not create admin');
  // A platform CA of its own, so agent enrollment runs as in the daemon.
  const ca = await createCa('Bulwark test CA');
  const enrollment = new HostEnrollment(store, platform.compute.hosts, ca);
  const app = await buildApi({
    store,
    ...platform,
    enrollment,
    publicUrl: PUBLIC_URL,
    ...(maxListLimit ? { maxListLimit } : {}),
  });
  await app.ready();
  const contexts = new Map<string, AuthContext>();

  const call: TestApi['call'] = async (method, url, token, body) => {
    const res = await app.inject({
      method,
      url,
      headers: {
        ...(token ? { 'x-auth-token': token } : {}),
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { payload: typeof body === 'string' ? body : JSON.stringify(body) }),
    });
    let json: unknown;
    try {
      json = res.body ? JSON.parse(res.body) : undefined;
    } catch {
      json = res.body;
    }
    return { status: res.statusCode, json, headers: res.headers };
  };

  const login: TestApi['login'] = async (user, password, project) => {
    const res = await call('POST', '/identity/v3/auth/tokens', null, {
      auth: {
        identity: {
          methods: ['password'],
          password: { user: { name: user, domain: { id: 'default' }, password } },
        },
        ...(project ? { scope: { project: { name: project, domain: { id: 'default' } } } } : {}),
      },
    });
    if (res.status !== 201)
      throw new Error(`login ${user} failed: ${res.status} ${JSON.stringify(res.json)}`);
    const token = String(res.headers['x-subject-token']);
    const auth = await identity.validateToken(token);
    if (auth) contexts.set(token, auth);
    return token;
  };

  const adminToken = await login('admin', adminPassword, 'admin');

  const persona: TestApi['persona'] = async (projectName, userName, role) => {
    let project = (await identity.listProjects({ name: projectName }))[0];
    project ??= await identity.createProject({ name: projectName, domainId: 'default' });
    const user = await identity.createUser({ name: userName, domainId: 'default', password: PASSWORD });
    const r = (await identity.listRoles({ name: role }))[0];
    if (!r) throw new Error(`no role ${role}`);
    await identity.grant(project.id, user.id, r.id);
    return { token: await login(userName, PASSWORD, projectName), userId: user.id, projectId: project.id };
  };

  const bootable: TestApi['bootable'] = async (token, name, ramMiB = 256) => {
    const auth = contexts.get(token);
    if (!auth) throw new Error('unknown test token');
    const { flavors, images } = platform.compute;
    const flavor = await flavors.create({ name: `${name}-flavor`, vcpus: 1, ram: ramMiB, disk: 1 });
    const img = await images.create(auth, {
      name: `${name}-image`,
      disk_format: 'raw',
      container_format: 'bare',
      properties: {},
    });
    await images.upload(auth, img.id, Readable.from([Buffer.alloc(1024 * 1024)]));
    return { flavorId: flavor.id, imageId: img.id };
  };

  return {
    ...(maxListLimit ? { maxListLimit } : {}),
    app,
    store,
    identity,
    bootable,
    platform,
    driver,
    dataplane,
    db,
    ca,
    enrollment,
    adminPassword,
    login,
    authOf(token) {
      const a = contexts.get(token);
      if (!a) throw new Error('unknown test token');
      return a;
    },
    call: (m, u, t = adminToken, b) => call(m, u, t, b),
    persona,
    async close() {
      await platform.compute.servers.settled();
      await platform.snapshots.snapshots.settled();
      await app.close();
      await store.close();
      await db.drop();
    },
  };
}

/** The newest audit row of `action`. */
export const lastAuditEvent = (api: TestApi, action: string) =>
  api.store.db
    .selectFrom('audit_events')
    .selectAll()
    .where('action', '=', action)
    .orderBy('seq', 'desc')
    .executeTakeFirst();

/** The audit events of one action and outcome, oldest first: who, on what, and why. */
export const auditedEvents = (api: TestApi, action: string, outcome: string) =>
  api.store.db
    .selectFrom('audit_events')
    .select(['user_name', 'target_id', 'reason'])
    .where('action', '=', action)
    .where('outcome', '=', outcome)
    .orderBy('seq')
    .execute();

/** A server request for tests, with the fixture image and flavor filled in by the caller. */
export const serverRequest = (imageRef: string, flavorRef: string, name = 'vm'): CreateServerInput => ({
  name,
  imageRef,
  flavorRef,
  metadata: {},
  hints: {},
  userData: undefined,
  networks: undefined,
  securityGroups: undefined,
});

/**
 * Hosts the scheduler places `token`'s servers on, each driven by its own
 * fake hypervisor (the local host disabled), with no quota in the way: for
 * the migration suites' control-plane rules.
 */
export async function fakeHosts(api: TestApi, token: string, drivers: Map<string, FakeHypervisor>) {
  await api.platform.quotas.set(api.authOf(token).projectId as string, { instances: -1, cores: -1, ram: -1 });
  await api.platform.compute.registerLocalHost();
  await api.platform.compute.hosts.setState('test-host', 'disabled');
  for (const [name, driver] of drivers) {
    await api.platform.compute.hosts.register({
      name,
      capacity: { vcpus: 4, ramMiB: 1024, diskGiB: 100 },
      features: ['uefi'],
    });
    api.platform.compute.servers.attachHost(name, driver);
  }
}
