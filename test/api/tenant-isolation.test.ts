/**
 * Tenant isolation: a member (and a backup operator) of project B tries every
 * registered route on project A's resources, by id and by name, and uses them
 * in its own creates (as network, port, image, flavor, group hint, security
 * group, remote group, volume, subnet, backup source). The routes come from the
 * API's own route table, so a new route is walked without an edit here (a
 * route with a parameter this suite cannot classify fails it).
 *
 * What counts as a leak: B's answer about A's resource differs from its answer
 * about a resource that does not exist (status or body, ids normalised), or any
 * answer to B carries a name or id of A's that B did not send, or the store
 * changed (every table but the audit log, before and after the walk).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RouteInfo } from '../../src/api/context.js';
import { generateRecoveryKey } from '../../src/backups/crypto.js';
import type { AuthContext } from '../../src/policy/context.js';
import { PASSWORD, serverRequest, startTestApi, type TestApi } from '../helpers/api.js';
import { reportFigures } from '../helpers/figures.js';
import { type JsonSchema, minimalValue } from '../helpers/schema-sample.js';
import { dialects } from '../helpers/store.js';
import { diffSnapshots, type StoreSnapshot, snapshotStore } from '../helpers/store-snapshot.js';

/** Tables a refused request may append to by design: the audit log and its chain head. */
const AUDIT_TABLES = ['audit_events', 'audit_head'];

type Kind =
  | 'project'
  | 'user'
  | 'credential'
  | 'appCred'
  | 'sg'
  | 'sgRule'
  | 'server'
  | 'attachedVolume'
  | 'group'
  | 'flavor'
  | 'image'
  | 'network'
  | 'subnet'
  | 'port'
  | 'router'
  | 'volume'
  | 'backup'
  | 'volSnap'
  | 'serverSnap'
  | 'secret'
  | 'approval'
  | 'grant'
  | 'recording'
  | 'schedule'
  | 'serverSchedule'
  | 'serverBackup'
  | 'drill';

/** Path segments before `:id` naming a resource no project owns (cloud-wide, admin-run): not tenant data. */
const GLOBAL_SEGMENTS = new Set([
  'domains',
  'roles',
  'bulwark-zones',
  'bulwark-zone-rules',
  'types',
  'templates',
  'metadata-rules',
  'accounts',
  'reviews',
  'hosts',
  // host evacuations: cloud-wide, admin-only
  'evacuations',
  'approval-triggers',
  // compliance runs: cloud-wide, admin-only
  'runs',
]);

/** The resource a `:id` names, from the path segment before it. */
const BY_SEGMENT: Record<string, Kind> = {
  projects: 'project',
  users: 'user',
  credentials: 'credential',
  application_credentials: 'appCred',
  'os-security-groups': 'sg',
  'security-groups': 'sg',
  'security-group-rules': 'sgRule',
  servers: 'server',
  profiles: 'server',
  'os-server-groups': 'group',
  flavors: 'flavor',
  images: 'image',
  networks: 'network',
  subnets: 'subnet',
  ports: 'port',
  routers: 'router',
  volumes: 'volume',
  backups: 'backup',
  'server-backups': 'serverBackup',
  drills: 'drill',
  // a DR target is named by its server's id
  targets: 'server',
  snapshots: 'volSnap',
  secrets: 'secret',
  'os-quota-sets': 'project',
  quotas: 'project',
  approvals: 'approval',
  grants: 'grant',
  recordings: 'recording',
  'backup-schedules': 'schedule',
  'server-backup-schedules': 'serverSchedule',
  // an admin's view of a user's second factors: A's TOTP credential is one
  'mfa-devices': 'credential',
};

type Param = { kind: Kind } | { global: string };

const uniq = (p: string) => `${p}-${randomBytes(3).toString('hex')}`;

describe.each(dialects())('tenant isolation on %s', (dialect) => {
  let api: TestApi;
  /** Every name of project A's resources carries this marker: any answer to B holding it leaks. */
  const M = `isoleak${randomBytes(4).toString('hex')}`;
  const a = {} as Record<Kind, { id: string; name?: string }>;
  const b = {} as { token: string; opToken: string; projectId: string; server: string; network: string };
  const bRes = {} as {
    port: string;
    router: string;
    sg: string;
    image: string;
    flavor: string;
    subnet: string;
  };
  let memberRole = '';
  let before: StoreSnapshot;
  const figures = {
    routes: 0,
    attempts: 0,
    compared: 0,
    reached: 0,
    lists: 0,
    uses: 0,
    leaks: 0,
    skipped_global: 0,
  };
  const leaks: string[] = [];

  beforeAll(async () => {
    api = await startTestApi(dialect);
    const ma = await api.persona('iso-a', `${M}-user`, 'member');
    const mb = await api.persona('iso-b', 'iso-b-member', 'member');
    const op = await api.persona('iso-b', 'iso-b-operator', 'backup-operator');
    const admin = api.authOf(await api.login('admin', api.adminPassword, 'admin'));
    Object.assign(b, { token: mb.token, opToken: op.token, projectId: mb.projectId });
    memberRole = (await api.identity.listRoles({ name: 'member' }))[0]!.id;
    for (const p of [ma.projectId, mb.projectId])
      await api.platform.quotas.set(p, { instances: -1, cores: -1, ram: -1, volumes: -1, gigabytes: -1 });
    const A = api.authOf(ma.token);
    const B = api.authOf(mb.token);
    a.project = { id: ma.projectId, name: 'iso-a' };
    a.user = { id: ma.userId, name: `${M}-user` };
    const { flavors, images, servers, groups, guestAgent } = api.platform.compute;
    const image = async (auth: AuthContext, name: string) => {
      const img = await images.create(auth, {
        name,
        disk_format: 'raw',
        container_format: 'bare',
        properties: {},
      });
      await images.upload(auth, img.id, Readable.from([Buffer.alloc(1024 * 1024)]));
      return img.id;
    };
    const publicFlavor = await flavors.create({ name: uniq('iso-pub'), vcpus: 1, ram: 256, disk: 1 });
    a.flavor = {
      id: (await flavors.create({ name: `${M}-flavor`, vcpus: 1, ram: 256, disk: 1, isPublic: false })).id,
      name: `${M}-flavor`,
    };
    a.image = { id: await image(A, `${M}-image`), name: `${M}-image` };
    const { networks, securityGroups, routers } = api.platform.network;
    a.network = { id: (await networks.createNetwork(A, { name: `${M}-net` })).id, name: `${M}-net` };
    a.subnet = {
      id: (
        await networks.createSubnet(A, {
          name: `${M}-subnet`,
          networkId: a.network.id,
          ipVersion: 4,
          cidr: '10.61.0.0/24',
        })
      ).id,
      name: `${M}-subnet`,
    };
    a.sg = { id: (await securityGroups.create(A, { name: `${M}-sg` })).id, name: `${M}-sg` };
    a.sgRule = {
      id: (
        await securityGroups.createRule(A, a.sg.id, {
          direction: 'ingress',
          protocol: 'tcp',
          port_range_min: 22,
          port_range_max: 22,
        })
      ).id,
    };
    a.port = {
      id: (
        await networks.createPort(A, { networkId: a.network.id, name: `${M}-port` }, (ids) =>
          securityGroups.resolveForPort(A, ids),
        )
      ).id,
      name: `${M}-port`,
    };
    a.router = { id: (await routers.create(A, { name: `${M}-router` })).id, name: `${M}-router` };
    a.server = {
      id: (
        await servers.create(A, {
          ...serverRequest(a.image.id, publicFlavor.id, `${M}-server`),
          metadata: { k: 'v' },
        })
      ).id,
      name: `${M}-server`,
    };
    a.group = {
      id: (await groups.create(A, { name: `${M}-group`, policy: 'anti-affinity' })).id,
      name: `${M}-group`,
    };
    await servers.settled();
    const { volumes } = api.platform.volume;
    const volume = async (name: string) => {
      const v = await volumes.create(A, { size: 1, name });
      await volumes.settled();
      return v.id;
    };
    a.volume = { id: await volume(`${M}-volume`), name: `${M}-volume` };
    a.attachedVolume = { id: await volume(`${M}-attached`), name: `${M}-attached` };
    await volumes.attach(A, a.server.id, a.attachedVolume.id);
    const { snapshots } = api.platform.snapshots;
    a.volSnap = {
      id: (await snapshots.create(A, 'volume', a.volume.id, { name: `${M}-vsnap`, description: 'isolation' }))
        .snapshot.id,
      name: `${M}-vsnap`,
    };
    a.serverSnap = {
      id: (await snapshots.create(A, 'server', a.server.id, { name: `${M}-ssnap`, description: 'isolation' }))
        .snapshot.id,
      name: `${M}-ssnap`,
    };
    await snapshots.settled();
    const rk = generateRecoveryKey();
    await api.platform.backups.initRepository(admin, rk.publicKey);
    await api.platform.backups.unlock(admin, rk.privateKeyPem, 3600);
    const backup = await api.platform.backups.createVolumeBackup(admin, {
      volumeId: a.volume.id,
      name: `${M}-backup`,
    });
    await api.platform.backups.settled();
    a.backup = { id: backup.id, name: `${M}-backup` };
    const serverBackup = await api.platform.backups.createServerBackup(admin, {
      serverId: a.server.id,
      name: `${M}-sbackup`,
    });
    await api.platform.backups.settled();
    a.serverBackup = { id: serverBackup.id, name: `${M}-sbackup` };
    // The fake guest's console shows BULWARK-GUEST-READY, never the default marker `login:`.
    await api.platform.dr.setPolicy(admin, a.server.id, {
      rpoS: 86400,
      rtoS: 3600,
      bootMarker: 'BULWARK-GUEST-READY',
    });
    // A real drill of A's server: restored into its own isolated network, booted, cleaned up.
    const run = await api.platform.dr.drill(admin, [a.server.id], rk.privateKeyPem);
    await api.platform.dr.settled();
    a.drill = { id: run.drills[0]!.id };
    const drill = await api.store.db
      .selectFrom('dr_drills')
      .selectAll()
      .where('id', '=', a.drill.id)
      .executeTakeFirstOrThrow();
    expect(drill, drill.reason ?? '').toMatchObject({ status: 'done', verdict: 'pass' });
    a.schedule = {
      id: (await api.platform.backupScheduler.create(admin, { sourceId: a.volume.id, intervalMinutes: 60 }))
        .id,
    };
    a.serverSchedule = {
      id: (
        await api.platform.backupScheduler.create(admin, {
          kind: 'server',
          sourceId: a.server.id,
          intervalMinutes: 60,
        })
      ).id,
    };
    a.secret = {
      id: await api.platform.keys.createKey(a.project.id, {
        name: `${M}-secret`,
        bits: 256,
        purpose: 'isolation',
      }),
      name: `${M}-secret`,
    };
    api.platform.approvals.register('isolation-test', async (_r, payload) => payload);
    a.approval = {
      id: (await api.platform.approvals.submit(A, 'isolation-test', { n: 1 }, `${M} approval`)).id,
    };
    a.grant = {
      id: (
        await guestAgent.grant(admin, a.server.id, {
          commands: ['guest-exec'],
          expiresAt: new Date(Date.now() + 3600_000).toISOString(),
          reason: 'isolation',
        })
      ).id,
    };
    const blob = 'A'.repeat(32);
    a.credential = {
      id: (await api.platform.credentials.create({ userId: a.user.id, projectId: null, type: 'totp', blob }))
        .id,
    };
    a.appCred = {
      id: (await api.platform.applicationCredentials.create(A, { name: `${M}-appcred` })).row.id,
      name: `${M}-appcred`,
    };
    const session = await api.platform.consoles.connect(A, a.server.id, { cols: 80, rows: 24 });
    a.recording = { id: session.recordingId };
    await session.close();
    await api.call('PUT', `/bulwark/v1/snapshot-policies/servers/${a.server.id}`, ma.token, {
      snapshot_policy: { max_count: 5, max_age_days: 30 },
    });
    // Project B's own resources, to aim A's at (attach A's volume to B's server, A's subnet to B's router...).
    bRes.flavor = publicFlavor.id;
    bRes.image = await image(B, 'iso-b-image');
    b.network = (await networks.createNetwork(B, { name: 'iso-b-net' })).id;
    bRes.subnet = (
      await networks.createSubnet(B, {
        name: 'iso-b-sub',
        networkId: b.network,
        ipVersion: 4,
        cidr: '10.62.0.0/24',
      })
    ).id;
    bRes.port = (
      await networks.createPort(B, { networkId: b.network }, (ids) => securityGroups.resolveForPort(B, ids))
    ).id;
    bRes.router = (await routers.create(B, { name: 'iso-b-router' })).id;
    bRes.sg = (await securityGroups.create(B, { name: 'iso-b-sg' })).id;
    b.server = (await servers.create(B, serverRequest(bRes.image, publicFlavor.id, 'iso-b-server'))).id;
    await servers.settled();
    before = await snapshotStore(api.store, AUDIT_TABLES);
  }, 300_000);

  afterAll(async () => {
    if (api) {
      reportFigures(`tenant-isolation (${dialect})`, figures);
      await api.close();
    }
  });

  /** What a route parameter names: one of A's resources, or something cloud-wide. */
  function classify(url: string, param: string): Param {
    if (param === 'project_id') return { kind: 'project' };
    if (param === 'user_id') return { kind: 'user' };
    if (param === 'volume_id') return { kind: 'attachedVolume' };
    if (param === 'grant_id') return { kind: 'grant' };
    if (param === 'role_id') return { global: memberRole };
    if (param === 'key') return { global: url.includes('extra_specs') ? 'quota:disk_read_bytes_sec' : 'k' };
    if (param === 'encryption_id') return { global: 'provider' };
    if (param === 'kind') return { global: 'template-version' };
    if (url.startsWith('/dashboard')) return { global: 'x' };
    if (url.startsWith('/bulwark/v1/webauthn/')) return { global: 'AAAA' };
    const segment = url.split('/').at(url.split('/').indexOf(`:${param}`) - 1) ?? '';
    if (GLOBAL_SEGMENTS.has(segment)) return { global: param === 'name' ? 'default' : randomUUID() };
    if (segment === 'snapshots' && url.startsWith('/bulwark/v1/')) return { kind: 'serverSnap' };
    const kind = BY_SEGMENT[segment];
    if (!kind)
      throw new Error(
        `tenant isolation: classify ${param} in ${url} (a resource of a project, or cloud-wide)`,
      );
    return { kind };
  }

  /** A value of the same shape that names nothing. */
  const twinOf = (v: string) =>
    /^[0-9a-f]{8}-/.test(v)
      ? randomUUID()
      : /^[0-9a-f]{32}$/.test(v)
        ? randomBytes(16).toString('hex')
        : `${v}-gone`;

  const normalise = (body: string, values: Record<string, string>) => {
    let out = body.replace(/req-[0-9a-f-]{36}/g, 'req-X');
    for (const [v, label] of Object.entries(values).sort((x, y) => y[0].length - x[0].length))
      out = out.split(v).join(label);
    return out;
  };

  /** Ids of A's that an answer to B must never hold (unless B sent them). */
  const aIds = () => Object.values(a).map((r) => r.id);

  /** Why an answer to B leaks A's data: it names A's marker or holds an id of A's, beyond the values B sent. */
  function carriesA(body: string, sent: readonly string[]): string | null {
    let rest = body;
    for (const v of [...sent].sort((x, y) => y.length - x.length)) rest = rest.split(v).join('');
    if (rest.includes(M)) return `names ${M}: ${body.slice(0, 200)}`;
    for (const id of aIds()) if (rest.includes(id)) return `holds id ${id}: ${body.slice(0, 200)}`;
    return null;
  }

  const send = async (
    token: string,
    method: string,
    url: string,
    route: Pick<RouteInfo, 'schema'> | null,
    body?: unknown,
  ) => {
    const headers: Record<string, string> = { 'x-auth-token': token };
    let payload: string | Buffer | undefined;
    if (method === 'PUT' && url.endsWith('/file')) {
      headers['content-type'] = 'application/octet-stream';
      payload = Buffer.alloc(4096);
    } else if (method === 'PATCH' && url.startsWith('/image/')) {
      headers['content-type'] = 'application/openstack-images-v2.1-json-patch';
      payload = JSON.stringify([{ op: 'replace', path: '/name', value: 'stolen' }]);
    } else {
      const b0 = body ?? (route?.schema?.body ? minimalValue(route.schema.body as JsonSchema) : undefined);
      if (b0 !== undefined) {
        headers['content-type'] = 'application/json';
        payload = JSON.stringify(b0);
      }
    }
    const res = await api.app.inject({
      method: method as 'GET',
      url,
      headers,
      ...(payload ? { payload } : {}),
    });
    return {
      status: res.statusCode,
      body: res.body,
      sent: `${url} ${typeof payload === 'string' ? payload : ''}`,
    };
  };

  /** B's request about A's values against the same request about values that name nothing. */
  async function compare(
    token: string,
    method: string,
    build: (v: (x: string) => string) => { url: string; body?: unknown },
    route: Pick<RouteInfo, 'schema'> | null,
    what: string,
  ) {
    const real: Record<string, string> = {};
    const twin: Record<string, string> = {};
    const useReal = (x: string) => {
      real[x] = '<V>';
      return x;
    };
    const r1 = build(useReal);
    const twins = new Map<string, string>();
    const useTwin = (x: string) => {
      const t = twins.get(x) ?? twinOf(x);
      twins.set(x, t);
      twin[t] = '<V>';
      return t;
    };
    const r2 = build(useTwin);
    const ra = await send(token, method, r1.url, route, r1.body);
    const rb = await send(token, method, r2.url, route, r2.body);
    figures.attempts += 2;
    figures.compared++;
    if (ra.status !== 400 && ra.status !== 403 && ra.status !== 401) figures.reached++;
    const na = normalise(ra.body, real);
    const nb = normalise(rb.body, twin);
    const why =
      ra.status >= 500
        ? `server error ${ra.status}`
        : ra.status !== rb.status
          ? `status ${ra.status} for A's, ${rb.status} for none`
          : na !== nb
            ? `answer differs: ${na.slice(0, 160)} | ${nb.slice(0, 160)}`
            : carriesA(ra.body, Object.keys(real));
    if (why) {
      figures.leaks++;
      leaks.push(`${what}: ${method} ${r1.url}: ${why}`);
    }
  }

  it("B cannot list, show, change, delete, attach, back up or restore A's resources by id or by name", {
    timeout: 600_000,
  }, async () => {
    const routes = api.app.routeTable;
    figures.routes = routes.length;
    for (const route of routes) {
      const params = [...route.url.matchAll(/:(\w+)/g)].map((m) => m[1]!);
      if (route.url.includes('*')) params.push('*');
      if (params.length === 0) continue;
      const classes = params.map((p) => (p === '*' ? ({ global: 'x' } as Param) : classify(route.url, p)));
      if (classes.every((c) => 'global' in c)) {
        figures.skipped_global++;
        continue;
      }
      const fill = (use: (x: string) => string, by: 'id' | 'name', projectOf: 'A' | 'B') =>
        route.url
          .replace(/:(\w+)/g, (_, p: string) => {
            const c = classes[params.indexOf(p)]!;
            if ('global' in c) return c.global;
            // A project id in a Cinder URL scopes the request: B's own, with A's resource after it.
            if (p === 'project_id' && projectOf === 'B') return b.projectId;
            const r = a[c.kind];
            return use(by === 'name' && r.name ? r.name : r.id);
          })
          .replace('*', 'x');
      const variants: ['id' | 'name', 'A' | 'B'][] = [['id', 'A']];
      if (classes.some((c) => 'kind' in c && a[c.kind].name)) variants.push(['name', 'A']);
      if (params.includes('project_id') && params.length > 1) variants.push(['id', 'B']);
      for (const token of [b.token, b.opToken])
        for (const [by, proj] of variants)
          await compare(token, route.method, (use) => ({ url: fill(use, by, proj) }), route, `by ${by}`);
    }
    expect(leaks).toEqual([]);
  });

  it("B's lists and name filters show nothing of A's", { timeout: 300_000 }, async () => {
    const lists = api.app.routeTable.filter(
      (r) =>
        r.method === 'GET' &&
        (!r.url.includes(':') || r.url.startsWith('/volume/v3/:project_id')) &&
        !r.url.includes('*'),
    );
    const names = Object.values(a).flatMap((r) => (r.name ? [r.name] : []));
    for (const route of lists) {
      const base = route.url.replace(':project_id', b.projectId);
      // Each query with the value it sends (a link may echo it back: that is not a leak).
      const queries: [string, string[]][] = [
        ['', []],
        ['?all_tenants=1', []],
        [`?project_id=${a.project.id}`, [a.project.id]],
        [`?tenant_id=${a.project.id}`, [a.project.id]],
        ...names.map((n): [string, string[]] => [
          `?name=${encodeURIComponent(n)}`,
          [n, encodeURIComponent(n)],
        ]),
      ];
      for (const token of [b.token, b.opToken])
        for (const [q, sent] of queries) {
          const res = await send(token, 'GET', `${base}${q}`, null);
          figures.attempts++;
          figures.lists++;
          const why = res.status >= 500 ? `server error ${res.status}` : carriesA(res.body, sent);
          if (why) {
            figures.leaks++;
            leaks.push(`list: GET ${base}${q}: ${why}`);
          }
        }
    }
    expect(leaks).toEqual([]);
  });

  it("B cannot use A's resources in its own creates: network, port, image, flavor, group, security group, remote group, volume, subnet", {
    timeout: 300_000,
  }, async () => {
    const uses: [string, string, string, (v: (x: string) => string) => { url: string; body?: unknown }][] = [
      [
        "server from A's private image",
        'member',
        'POST',
        (v) => ({
          url: '/compute/v2.1/servers',
          body: {
            server: { name: uniq('b'), imageRef: v(a.image.id), flavorRef: bRes.flavor, networks: 'none' },
          },
        }),
      ],
      [
        "server with A's private flavor",
        'member',
        'POST',
        (v) => ({
          url: '/compute/v2.1/servers',
          body: {
            server: { name: uniq('b'), imageRef: bRes.image, flavorRef: v(a.flavor.id), networks: 'none' },
          },
        }),
      ],
      [
        "server on A's network",
        'member',
        'POST',
        (v) => ({
          url: '/compute/v2.1/servers',
          body: {
            server: {
              name: uniq('b'),
              imageRef: bRes.image,
              flavorRef: bRes.flavor,
              networks: [{ uuid: v(a.network.id) }],
            },
          },
        }),
      ],
      [
        "server on A's port",
        'member',
        'POST',
        (v) => ({
          url: '/compute/v2.1/servers',
          body: {
            server: {
              name: uniq('b'),
              imageRef: bRes.image,
              flavorRef: bRes.flavor,
              networks: [{ port: v(a.port.id) }],
            },
          },
        }),
      ],
      [
        "server in A's security group (by name)",
        'member',
        'POST',
        (v) => ({
          url: '/compute/v2.1/servers',
          body: {
            server: {
              name: uniq('b'),
              imageRef: bRes.image,
              flavorRef: bRes.flavor,
              networks: [{ uuid: b.network }],
              security_groups: [{ name: v(a.sg.name!) }],
            },
          },
        }),
      ],
      [
        "server with A's server group as hint",
        'member',
        'POST',
        (v) => ({
          url: '/compute/v2.1/servers',
          body: {
            server: { name: uniq('b'), imageRef: bRes.image, flavorRef: bRes.flavor, networks: 'none' },
            'os:scheduler_hints': { group: v(a.group.id) },
          },
        }),
      ],
      [
        "port on A's network",
        'member',
        'POST',
        (v) => ({ url: '/network/v2.0/ports', body: { port: { network_id: v(a.network.id) } } }),
      ],
      [
        "port with A's security group",
        'member',
        'POST',
        (v) => ({
          url: '/network/v2.0/ports',
          body: { port: { network_id: b.network, security_groups: [v(a.sg.id)] } },
        }),
      ],
      [
        "B's port moved into A's security group",
        'member',
        'PUT',
        (v) => ({
          url: `/network/v2.0/ports/${bRes.port}`,
          body: { port: { security_groups: [v(a.sg.id)] } },
        }),
      ],
      [
        "subnet on A's network",
        'member',
        'POST',
        (v) => ({
          url: '/network/v2.0/subnets',
          body: { subnet: { network_id: v(a.network.id), ip_version: 4, cidr: '10.63.0.0/24' } },
        }),
      ],
      [
        "rule added to A's security group",
        'member',
        'POST',
        (v) => ({
          url: '/network/v2.0/security-group-rules',
          body: {
            security_group_rule: {
              security_group_id: v(a.sg.id),
              direction: 'ingress',
              protocol: 'tcp',
              port_range_min: 80,
              port_range_max: 80,
            },
          },
        }),
      ],
      [
        "A's security group as remote group",
        'member',
        'POST',
        (v) => ({
          url: '/network/v2.0/security-group-rules',
          body: {
            security_group_rule: {
              security_group_id: bRes.sg,
              direction: 'ingress',
              remote_group_id: v(a.sg.id),
            },
          },
        }),
      ],
      [
        "A's subnet on B's router",
        'member',
        'PUT',
        (v) => ({
          url: `/network/v2.0/routers/${bRes.router}/add_router_interface`,
          body: { subnet_id: v(a.subnet.id) },
        }),
      ],
      [
        "A's port on B's router",
        'member',
        'PUT',
        (v) => ({
          url: `/network/v2.0/routers/${bRes.router}/add_router_interface`,
          body: { port_id: v(a.port.id) },
        }),
      ],
      [
        "A's security group added to B's server (by name)",
        'member',
        'POST',
        (v) => ({
          url: `/compute/v2.1/servers/${b.server}/action`,
          body: { addSecurityGroup: { name: v(a.sg.name!) } },
        }),
      ],
      [
        "A's volume attached to B's server",
        'member',
        'POST',
        (v) => ({
          url: `/compute/v2.1/servers/${b.server}/os-volume_attachments`,
          body: { volumeAttachment: { volumeId: v(a.volume.id) } },
        }),
      ],
      [
        "snapshot of A's volume",
        'member',
        'POST',
        (v) => ({
          url: '/volume/v3/snapshots',
          body: { snapshot: { volume_id: v(a.volume.id), name: uniq('b'), description: 'isolation' } },
        }),
      ],
      [
        "backup of A's volume (B's backup operator)",
        'operator',
        'POST',
        (v) => ({
          url: '/volume/v3/backups',
          body: { backup: { volume_id: v(a.volume.id), name: uniq('b') } },
        }),
      ],
      [
        "backup of A's volume by name (B's backup operator)",
        'operator',
        'POST',
        (v) => ({
          url: '/volume/v3/backups',
          body: { backup: { volume_id: v(a.volume.name!), name: uniq('b') } },
        }),
      ],
      [
        "verify A's backup (B's backup operator)",
        'operator',
        'POST',
        (v) => ({
          url: `/bulwark/v1/backups/${v(a.backup.id)}/verify`,
          body: {},
        }),
      ],
      [
        "token scoped to A's project",
        'member',
        'POST',
        (v) => ({
          url: '/identity/v3/auth/tokens',
          body: {
            auth: {
              identity: {
                methods: ['password'],
                password: { user: { name: 'iso-b-member', domain: { id: 'default' }, password: PASSWORD } },
              },
              scope: { project: { id: v(a.project.id) } },
            },
          },
        }),
      ],
    ];
    for (const [what, who, method, build] of uses) {
      figures.uses++;
      await compare(who === 'operator' ? b.opToken : b.token, method, build, null, `use: ${what}`);
    }
    expect(leaks).toEqual([]);
  });

  it('the walk changed nothing in the store (every table but the audit log)', async () => {
    await api.platform.compute.servers.settled();
    const changes = diffSnapshots(before, await snapshotStore(api.store, AUDIT_TABLES));
    figures.leaks += changes.length;
    expect(changes).toEqual([]);
  });
});
