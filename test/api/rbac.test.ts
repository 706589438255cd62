/**
 * The RBAC matrix: every route the API registers × every persona, each answer
 * checked against the policy table. A new route needs a sample here (params
 * and, for writes, a body) or this test fails: the matrix grows with the API.
 */
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateRecoveryKey } from '../../src/backups/crypto.js';
import { createCsr } from '../../src/pki/ca.js';
import { POLICY, type RuleTerm } from '../../src/policy/rules.js';
import { sha256Hex } from '../../src/util/ids.js';
import { PASSWORD, PUBLIC_URL, serverRequest, startTestApi, type TestApi } from '../helpers/api.js';
import { reportFigures } from '../helpers/figures.js';

type Persona = 'admin' | 'member' | 'reader' | 'operator' | 'other' | 'expired' | 'none' | 'breakglass';
/** The break-glass persona holds an open emergency session: a short admin token (identity/break-glass.ts). */
const PERSONAS: Persona[] = [
  'none',
  'expired',
  'other',
  'reader',
  'operator',
  'member',
  'admin',
  'breakglass',
];

interface Fixture {
  token: string | null;
  userId: string | null;
  projectId: string | null;
  login?: () => Promise<string>;
  password?: string;
}

/**
 * Where policy allows a persona but the handler refuses it on purpose, with the answer it must give.
 * Each is a rule of its own, checked here as strictly as policy's answers.
 */
const HANDLER_REFUSALS: Record<string, { status: number; message: RegExp }> = {
  // A break-glass account has a sealed secret, no password: there is no original password to match.
  'POST /identity/v3/users/:id/password as breakglass': { status: 401, message: /original password/ },
  // The emergency session never closes a review: another administrator must (identity/break-glass.ts).
  'POST /bulwark/v1/break-glass/reviews/:id/close as breakglass': {
    status: 403,
    message: /cannot close its own review/,
  },
};

const uniq = (p: string) => `${p}-${randomBytes(4).toString('hex')}`;

describe('RBAC matrix', () => {
  let api: TestApi;
  const who = {} as Record<Persona, Fixture>;
  let projectA: string;
  let memberRole: string;
  const fixtures = {
    flavor: '',
    image: '',
    server: '',
    network: '',
    subnet: '',
    port: '',
    backup: '',
    complianceRun: '',
    serverBackup: '',
  };
  const serverInput = () => serverRequest(fixtures.image, fixtures.flavor, uniq('s'));

  beforeAll(async () => {
    api = await startTestApi('sqlite');
    const m = await api.persona('proj-a', 'rbac-member', 'member');
    const r = await api.persona('proj-a', 'rbac-reader', 'reader');
    const op = await api.persona('proj-a', 'rbac-operator', 'backup-operator');
    const o = await api.persona('proj-b', 'rbac-other', 'member');
    const e = await api.persona('proj-a', 'rbac-expired', 'member');
    await api.store.db
      .updateTable('tokens')
      .set({ expires_at: '2000-01-01T00:00:00.000Z' })
      .where('id_hash', '=', sha256Hex(e.token))
      .execute();
    const admin = (await api.call('GET', '/identity/v3/users?name=admin')).json.users[0].id as string;
    projectA = m.projectId;
    // The walk creates many throwaway resources in project A: no quota may refuse them (docs/quotas.md).
    await api.platform.quotas.set(projectA, {
      instances: -1,
      cores: -1,
      ram: -1,
      volumes: -1,
      gigabytes: -1,
      security_groups: -1,
      security_group_rules: -1,
    });
    memberRole = (await api.identity.listRoles({ name: 'member' }))[0]!.id;
    api.platform.approvals.register('rbac-test', async (_requester, payload) => payload);
    const again =
      (user: string, project: string, password = PASSWORD) =>
      () =>
        api.login(user, password, project);
    who.admin = {
      token: await api.login('admin', api.adminPassword, 'admin'),
      userId: admin,
      projectId: (await api.identity.listProjects({ name: 'admin' }))[0]!.id,
      login: again('admin', 'admin', api.adminPassword),
      password: api.adminPassword,
    };
    who.member = {
      token: m.token,
      userId: m.userId,
      projectId: m.projectId,
      login: again('rbac-member', 'proj-a'),
      password: PASSWORD,
    };
    who.reader = {
      token: r.token,
      userId: r.userId,
      projectId: r.projectId,
      login: again('rbac-reader', 'proj-a'),
      password: PASSWORD,
    };
    who.operator = {
      token: op.token,
      userId: op.userId,
      projectId: op.projectId,
      login: again('rbac-operator', 'proj-a'),
      password: PASSWORD,
    };
    who.other = {
      token: o.token,
      userId: o.userId,
      projectId: o.projectId,
      login: again('rbac-other', 'proj-b'),
      password: PASSWORD,
    };
    who.expired = { token: e.token, userId: e.userId, projectId: e.projectId };
    // An emergency session of its own account, so the walk never spends the shared sample's account.
    const bgAdmin = api.authOf(who.admin.token as string);
    const bgName = uniq('rbac-bg');
    const { account, secret } = await api.platform.breakGlass.createAccount(bgAdmin, bgName);
    const bgLogin = async () =>
      (
        await api.platform.breakGlass.use({
          name: bgName,
          secret,
          reason: 'RBAC matrix walk, emergency persona',
          sourceIp: null,
        })
      ).token;
    who.breakglass = {
      token: await bgLogin(),
      userId: account.user_id,
      projectId: who.admin.projectId,
      login: bgLogin,
    };
    who.none = { token: null, userId: null, projectId: null };
    const member = api.authOf(m.token);
    const { flavors, images, servers } = api.platform.compute;
    fixtures.flavor = (await flavors.create({ name: 'rbac-flavor', vcpus: 1, ram: 256, disk: 1 })).id;
    const img = await images.create(member, {
      name: 'rbac-image',
      disk_format: 'raw',
      container_format: 'bare',
      properties: {},
    });
    await images.upload(member, img.id, Readable.from([Buffer.alloc(1024 * 1024)]));
    fixtures.image = img.id;
    fixtures.server = (await servers.create(member, serverInput())).id;
    const { networks, securityGroups } = api.platform.network;
    fixtures.network = (await networks.createNetwork(member, { name: 'rbac-net' })).id;
    fixtures.subnet = (
      await networks.createSubnet(member, {
        name: 'rbac-sub',
        networkId: fixtures.network,
        ipVersion: 4,
        cidr: '10.7.0.0/24',
      })
    ).id;
    fixtures.port = (
      await networks.createPort(member, { networkId: fixtures.network }, (ids) =>
        securityGroups.resolveForPort(member, ids),
      )
    ).id;
    await servers.settled();
    // Backups (docs/backups.md): a repository, unlocked so restores can run.
    const rk = generateRecoveryKey();
    recoveryPem = rk.privateKeyPem;
    recoveryPublic = rk.publicKey;
    const adminAuth = api.authOf(who.admin.token as string);
    await api.platform.backups.initRepository(adminAuth, rk.publicKey);
    await api.platform.backups.unlock(adminAuth, rk.privateKeyPem, 3600);
  });
  afterAll(async () => api?.close());
  let recoveryPem = '';
  let recoveryPublic = '';

  /** Fresh throwaway resources for writes, so no request in the walk damages the fixtures. */
  const throwaway = {
    project: async () => (await api.identity.createProject({ name: uniq('tmp'), domainId: 'default' })).id,
    // No password: nobody logs in as a throwaway user, and each argon2 hash costs the walk ~0.1 s.
    user: async () => (await api.identity.createUser({ name: uniq('tmp'), domainId: 'default' })).id,
    role: async () => (await api.identity.createRole({ name: uniq('tmp') })).id,
    domain: async () => (await api.identity.createDomain({ name: uniq('tmp'), enabled: false })).id,
  };

  /**
   * For each route: its URL with params filled, the request body, and the
   * policy target those params mean (what `self`/`member`/`reader` compare).
   */
  async function sample(
    method: string,
    url: string,
    p: Persona,
  ): Promise<{
    url: string;
    body?: unknown;
    target: { project_id?: string; user_id?: string };
    headers?: Record<string, string>;
    rawBody?: Buffer;
  }> {
    const me = who[p];
    const write = method !== 'GET' && method !== 'HEAD';
    const fill = (u: string, values: Record<string, string>) =>
      u.replace(/:(\w+)/g, (_, k: string) => values[k] ?? `missing-${k}`);
    if (url === '/identity/v3/auth/tokens') {
      const body =
        method === 'POST'
          ? {
              auth: {
                identity: {
                  methods: ['password'],
                  password: { user: { name: 'rbac-member', domain: { id: 'default' }, password: PASSWORD } },
                },
              },
            }
          : undefined;
      // A caller acting on its own token is `self`; with no token, the subject is the admin's.
      // Revoking needs a live subject token of the caller's own, or (no token) someone else's.
      const subject =
        method === 'DELETE'
          ? await (me.login ?? (who.member.login as () => Promise<string>))()
          : ((me.token ?? who.admin.token) as string);
      return {
        url,
        body,
        target: me.token ? { user_id: me.userId! } : {},
        headers: { 'x-subject-token': subject },
      };
    }
    if (url.startsWith('/identity/v3/projects/:project_id/users/:user_id/roles')) {
      const projectId = write ? await throwaway.project() : projectA;
      const userId = write ? await throwaway.user() : (who.member.userId as string);
      if (method === 'DELETE' || method === 'HEAD') await api.identity.grant(projectId, userId, memberRole);
      return {
        url: fill(url, { project_id: projectId, user_id: userId, role_id: memberRole }),
        target: { user_id: userId },
      };
    }
    if (url === '/identity/v3/role_assignments') {
      return { url: `${url}?user.id=${who.member.userId}`, target: { user_id: who.member.userId! } };
    }
    if (url.startsWith('/dashboard')) return dashboardSample(method, url, p);
    if (url === '/bulwark/v1/agent/join') {
      // Public: a fresh one-time token and CSR each time is the credential (docs/multi-host.md).
      const t = await api.enrollment.createToken(api.authOf(who.admin.token as string), uniq('h'));
      const { csrPem } = await createCsr('rbac');
      const report = { capacity: { vcpus: 1, ramMiB: 1, diskGiB: 1 }, features: [] };
      return { url, body: { join: { token: t.token, csr: csrPem, ...report } }, target: {} };
    }
    if (url === '/bulwark/v1/hosts/:name') {
      await api.platform.compute.registerLocalHost();
      return { url: '/bulwark/v1/hosts/test-host', body: { host: { state: 'up' } }, target: {} };
    }
    // Evacuation: a registered host with no agent connected (allowed callers get 409; nothing moves).
    if (url === '/bulwark/v1/hosts/:name/evacuate') {
      const name = uniq('evac');
      await api.platform.compute.hosts.register({
        name,
        capacity: { vcpus: 1, ramMiB: 1, diskGiB: 1 },
        features: [],
      });
      return { url: `/bulwark/v1/hosts/${name}/evacuate`, body: {}, target: {} };
    }
    if (url === '/bulwark/v1/evacuations/:id')
      return { url: '/bulwark/v1/evacuations/00000000-0000-4000-8000-000000000000', target: {} };
    if (url === '/bulwark/v1/host-join-tokens')
      return { url, body: { join_token: { host: uniq('h') } }, target: {} };
    if (/\/(os-quota-sets|quotas)\/|\/limits$/.test(url)) return quotaSample(method, url);
    if (url.startsWith('/key-manager')) return secretSample(method, url);
    if (url.startsWith('/bulwark/v1/approval')) return approvalSample(method, url);
    if (url === '/bulwark/v1/servers/:id/history')
      return { url: url.replace(':id', fixtures.server), target: {} };
    if (url.startsWith('/bulwark/v1/servers/:id/guest-agent')) return guestAgentSample(method, url);
    if (url === '/bulwark/v1/servers/:id/host-devices')
      return {
        url: url.replace(':id', fixtures.server),
        body: method === 'POST' ? { host_devices: { pci: ['0000:03:00.0'] } } : undefined,
        target: {},
      };
    // A clone request of the member's server: held for approval (202), nothing is cloned.
    if (url === '/bulwark/v1/servers/:id/clone')
      return {
        url: url.replace(':id', fixtures.server),
        body: { clone: { name: uniq('clone') } },
        target: {},
      };
    // Profiles (docs/profiles.md): a dry-run import that matches the fixture flavor; export of the member's server.
    if (url === '/bulwark/v1/profiles')
      return {
        url,
        body: {
          profile: {
            name: uniq('prof'),
            cpus: 1,
            memory: 256,
            disks: [{ name: 'root', size_gb: 1, image: 'rbac-image' }],
          },
          dry_run: true,
        },
        target: {},
      };
    if (url === '/bulwark/v1/profiles/:id') return { url: url.replace(':id', fixtures.server), target: {} };
    if (url.startsWith('/bulwark/v1/metadata-rules')) {
      const id = uniq('rule');
      if (method === 'DELETE')
        await api.platform.governance.metadataRules.create(api.authOf(who.admin.token as string), {
          id,
          when: { key: 'environment', value: 'staging' },
          requires: ['owner'],
        });
      const body = { rule: { id, when: { key: 'environment', value: 'staging' }, requires: ['owner'] } };
      return { url: url.replace(':id', id), body: method === 'POST' ? body : undefined, target: {} };
    }
    if (url.startsWith('/bulwark/v1/dr/')) return drSample(method, url);
    if (url.includes('/server-backups') || url === '/bulwark/v1/servers/:id/backups')
      return serverBackupSample(method, url);
    if (url.includes('/backup') || url.includes('backup-schedules')) return backupSample(method, url, p);
    if (url.startsWith('/volume') || url.includes('/os-volume_attachments')) return volumeSample(method, url);
    if (url.startsWith('/compute') || url.startsWith('/image')) return computeSample(method, url);
    if (url.includes('/bulwark-zone')) return zoneSample(method, url);
    if (/^\/bulwark\/v1\/(snapshot|servers\/[^/]+\/snapshots)/.test(url)) return snapshotSample(method, url);
    if (url.startsWith('/bulwark/v1/templates')) return templateSample(method, url);
    if (url.startsWith('/bulwark/v1/compliance')) return complianceSample(method, url);
    if (url.startsWith('/network')) return networkSample(method, url);
    if (url.startsWith('/identity/v3/credentials')) return credentialSample(method, url, p);
    if (url.includes('/application_credentials')) return appCredSample(method, url, p);
    if (url.startsWith('/bulwark/v1/break-glass')) return breakGlassSample(method, url, p);
    if (url.startsWith('/bulwark/v1/webauthn') || url.startsWith('/bulwark/v1/recovery-codes'))
      return mfaDeviceSample(method, url);
    // Another user's factors, for the cloud admin: the member's (revoking codes they lack answers 404).
    if (url.startsWith('/bulwark/v1/users/:user_id/mfa-devices'))
      return { url: fill(url, { user_id: who.member.userId as string, id: 'recovery-codes' }), target: {} };
    // A dashboard console ticket comes only to the dashboard's own Origin.
    if (url === '/bulwark/v1/servers/:id/console/tickets')
      return {
        url: fill(url, { id: fixtures.server }),
        target: {},
        headers: { origin: new URL(PUBLIC_URL).origin },
      };
    // Consoles: the member's server (a plain GET is answered 400, not upgraded); recordings by an unknown id.
    if (url.startsWith('/bulwark/v1/servers/'))
      return { url: fill(url, { id: fixtures.server }), target: {} };
    if (url.startsWith('/bulwark/v1/console/recordings/'))
      return { url: fill(url, { id: '00000000-0000-4000-8000-000000000000' }), target: {} };
    const collection = /^\/identity\/v3\/(\w+)/.exec(url)?.[1];
    const bodies: Record<string, unknown> = {
      'POST /identity/v3/projects': { project: { name: uniq('p') } },
      'PATCH /identity/v3/projects/:id': { project: { description: 'changed' } },
      'POST /identity/v3/users': { user: { name: uniq('u'), password: PASSWORD } },
      // What `self` may change: its own MFA options (identity:update_user).
      'PATCH /identity/v3/users/:id': { user: { options: { multi_factor_auth_enabled: false } } },
      'POST /identity/v3/users/:id/password': {
        user: { original_password: me.password ?? PASSWORD, password: me.password ?? PASSWORD },
      },
      'POST /identity/v3/roles': { role: { name: uniq('r') } },
      'POST /identity/v3/domains': { domain: { name: uniq('d') } },
      'PATCH /identity/v3/domains/:id': { domain: { description: 'changed' } },
    };
    const key = `${method} ${url}`;
    if (write && !url.includes(':id') && !(key in bodies))
      throw new Error(`RBAC matrix: add a sample body for ${key}`);
    if (!url.includes(':id')) return { url, body: bodies[key], target: {} };
    let id: string;
    switch (collection) {
      case 'projects':
        id = write ? await throwaway.project() : projectA;
        return { url: fill(url, { id }), body: bodies[key], target: { project_id: id } };
      case 'users':
        // The caller's own user, so `self` rules are exercised; throwaway users for deletes.
        id = method === 'DELETE' || !me.userId ? await throwaway.user() : me.userId;
        return { url: fill(url, { id }), body: bodies[key], target: { user_id: id } };
      case 'roles':
        id = write ? await throwaway.role() : memberRole;
        return { url: fill(url, { id }), target: {} };
      case 'domains':
        id = write ? await throwaway.domain() : 'default';
        return { url: fill(url, { id }), body: bodies[key], target: {} };
      default:
        throw new Error(`RBAC matrix: no sample for ${key}`);
    }
  }

  /** Keystone credentials: the caller's own TOTP credential (`self`), or the admin's for callers without a user. */
  async function credentialSample(method: string, url: string, p: Persona) {
    const owner = who[p].userId ?? (who.admin.userId as string);
    const blob = randomBytes(20)
      .toString('hex')
      .toUpperCase()
      .replace(/[^A-Z2-7]/g, 'A')
      .padEnd(32, 'A');
    if (!url.includes(':id'))
      return {
        url,
        body: method === 'POST' ? { credential: { type: 'totp', user_id: owner, blob } } : undefined,
        target: method === 'POST' ? { user_id: owner } : {},
      };
    const c = await api.platform.credentials.create({ userId: owner, projectId: null, type: 'totp', blob });
    return { url: url.replace(':id', c.id), target: { user_id: owner } };
  }

  /** Application credentials: the caller's own (`self`), made for the caller's project. */
  async function appCredSample(method: string, url: string, p: Persona) {
    const ownerToken = (who[p].userId ? who[p].token : who.admin.token) as string;
    // Validated here: the break-glass persona's token was not issued through the harness's login.
    const owner =
      p === 'breakglass' ? (await api.identity.validateToken(ownerToken))! : api.authOf(ownerToken);
    const values: Record<string, string> = { user_id: owner.userId };
    if (url.includes(':id'))
      values.id = (await api.platform.applicationCredentials.create(owner, { name: uniq('ac') })).row.id;
    return {
      url: url.replace(/:(\w+)/g, (_, k: string) => values[k] ?? `missing-${k}`),
      body: method === 'POST' ? { application_credential: { name: uniq('ac') } } : undefined,
      target: { user_id: owner.userId },
    };
  }

  /**
   * Break-glass: one emergency account and review for the walk (argon2 is slow); a fresh one only where
   * the admin's call consumes it (a delete, a close).
   */
  let bgShared: { name: string; secret: string; accountId: string; reviewId: string } | undefined;
  async function breakGlassSample(method: string, url: string, p: Persona) {
    const bg = api.platform.breakGlass;
    const admin = api.authOf(who.admin.token as string);
    const fresh = async () => {
      const name = uniq('bg');
      const { account, secret } = await bg.createAccount(admin, name);
      const { review } = await bg.use({
        name,
        secret,
        reason: 'RBAC matrix walk, emergency drill',
        sourceIp: null,
      });
      return { name, secret, accountId: account.id, reviewId: review.id };
    };
    bgShared ??= await fresh();
    const it =
      (p === 'admin' || p === 'breakglass') && (method === 'DELETE' || url.endsWith('/close'))
        ? await fresh()
        : bgShared;
    if (url.endsWith('/sessions'))
      return {
        url,
        body: { session: { name: it.name, secret: it.secret, reason: 'RBAC matrix walk, emergency drill' } },
        target: {},
      };
    if (url.endsWith('/accounts'))
      return { url, body: method === 'POST' ? { account: { name: uniq('bg') } } : undefined, target: {} };
    if (url.includes('/accounts/:id')) return { url: url.replace(':id', it.accountId), target: {} };
    return {
      url: url.replace(':id', it.reviewId),
      body: method === 'POST' ? { note: 'Drill finished; nothing changed.' } : undefined,
      target: {},
    };
  }

  /**
   * Security keys and recovery codes act on the caller's own. No authenticator signs here, so a key
   * registration gets 400 (no pending challenge) and the public logins a body the schema refuses (400):
   * what the matrix checks is that policy lets them through (test/e2e/webauthn-browser.test.ts logs in).
   */
  async function mfaDeviceSample(method: string, url: string) {
    const fake = { id: 'AAAA', rawId: 'AAAA', type: 'public-key', clientExtensionResults: {} };
    const bodies: Record<string, unknown> = {
      'POST /bulwark/v1/webauthn/registration/options': {},
      'POST /bulwark/v1/webauthn/registration': {
        name: 'key',
        response: { ...fake, response: { clientDataJSON: 'AAAA', attestationObject: 'AAAA' } },
      },
      'POST /bulwark/v1/webauthn/login/options': { user: { name: 'rbac-member', domain: { id: 'default' } } },
      'POST /bulwark/v1/webauthn/login': { user: { name: 'rbac-member' }, password: PASSWORD },
      'POST /bulwark/v1/recovery-codes': {},
      'POST /bulwark/v1/recovery-codes/login': { user: { name: 'rbac-member' }, password: PASSWORD },
    };
    return { url: url.replace(':id', 'AAAA'), body: bodies[`${method} ${url}`], target: {} };
  }

  /**
   * The dashboard: its page (built or not), a login as the member, and the
   * caller's own session; logging out revokes a fresh token of the caller's,
   * never the one the walk goes on with.
   */
  async function dashboardSample(method: string, url: string, p: Persona) {
    const me = who[p];
    if (url === '/dashboard/session' && method === 'POST')
      return { url, body: { username: 'rbac-member', password: PASSWORD, project: 'proj-a' }, target: {} };
    if (url === '/dashboard/session' && method === 'DELETE' && me.login && p !== 'expired')
      return { url, target: {}, headers: { 'x-auth-token': await me.login() } };
    return { url: url.replace('*', 'project/compute/instances'), target: {} };
  }

  /** Quota routes (Nova, Cinder, Neutron): project A's quotas; resets act on a throwaway project. */
  async function quotaSample(method: string, url: string) {
    const id = method === 'DELETE' ? await throwaway.project() : projectA;
    const bodies: Record<string, unknown> = {
      compute: { quota_set: { instances: -1 } },
      volume: { quota_set: { volumes: -1 } },
      network: { quota: { security_group: -1 } },
    };
    const service = /^\/(\w+)/.exec(url)?.[1] ?? '';
    return {
      url: url.replace(':project_id', projectA).replace(':id', id),
      body: method === 'PUT' ? bodies[service] : undefined,
      target: url.includes(':id')
        ? { project_id: id }
        : url.includes(':project_id')
          ? { project_id: projectA }
          : {},
    };
  }

  /** Guest agent routes on the fixture server (no agent: allowed callers get 409, not 401/403). */
  async function guestAgentSample(method: string, url: string) {
    const expiresAt = new Date(Date.now() + 3600_000).toISOString();
    const grantId = url.includes(':grant_id')
      ? (
          await api.platform.compute.guestAgent.grant(
            api.authOf(who.admin.token as string),
            fixtures.server,
            {
              commands: ['guest-exec'],
              expiresAt,
              reason: 'rbac',
            },
          )
        ).id
      : '';
    const bodies: Record<string, unknown> = {
      'POST /bulwark/v1/servers/:id/guest-agent': { execute: 'guest-ping' },
      'POST /bulwark/v1/servers/:id/guest-agent/grants': {
        grant: { commands: ['guest-exec'], expires_at: expiresAt, reason: 'rbac' },
      },
    };
    return {
      url: url.replace(':id', fixtures.server).replace(':grant_id', grantId),
      body: bodies[`${method} ${url}`],
      target: {},
    };
  }

  /** Approval routes: a fresh approval asked for by project A's member (so the admin is never the requester). */
  async function approvalSample(method: string, url: string) {
    const member = api.authOf(who.member.token as string);
    const id = url.includes(':id')
      ? (await api.platform.approvals.submit(member, 'rbac-test', { n: 1 }, 'rbac sample')).id
      : '';
    const body = url.endsWith('/approve') || url.endsWith('/reject') ? { reason: 'rbac walk' } : undefined;
    return {
      url: url.replace(':id', id).replace(':kind', 'template-version'),
      body: method === 'PUT' ? { trigger: { enabled: true } } : body,
      target: {},
    };
  }

  /** Key manager routes: secrets of project A; another project's 404 is the handler's (ownership), not policy's. */
  async function secretSample(method: string, url: string) {
    if (/\/secrets\/?$/.test(url))
      return {
        url,
        body: method === 'POST' ? { payload: 'x', payload_content_type: 'text/plain' } : undefined,
        target: {},
      };
    if (url.includes(':id')) {
      const owner = api.authOf(who.member.token as string).projectId as string;
      const id = await api.platform.keys.createKey(owner, { name: uniq('k'), bits: 256, purpose: 'rbac' });
      return { url: url.replace(':id', id), target: {} };
    }
    return { url, target: {} };
  }

  /**
   * Volume routes (Cinder v3, with and without the project id in the URL) and
   * Nova's volume attachments: volumes of project A; writes act on throwaway
   * types and volumes.
   */
  async function volumeSample(method: string, url: string) {
    const { types, volumes } = api.platform.volume;
    const member = api.authOf(who.member.token as string);
    const newVolume = async () => {
      const v = await volumes.create(member, { size: 1, name: uniq('v') });
      await volumes.settled();
      return v.id;
    };
    const luks = {
      provider: 'luks',
      cipher: 'aes-xts-plain64',
      key_size: 256,
      control_location: 'front-end',
    };
    const values: Record<string, string> = { project_id: projectA, encryption_id: 'provider' };
    const newSnapshot = async (volumeId: string) => {
      const { snapshots } = api.platform.snapshots;
      const s = await snapshots.create(member, 'volume', volumeId, { name: 'rbac', description: 'matrix' });
      await snapshots.settled();
      return s.snapshot.id;
    };
    if (url.includes('/os-volume_attachments')) {
      values.id = fixtures.server;
      values.volume_id = await newVolume();
      if (method === 'DELETE') await volumes.attach(member, fixtures.server, values.volume_id);
      return {
        url: url.replace(/:(\w+)/g, (_, k: string) => values[k] ?? `missing-${k}`),
        body: method === 'POST' ? { volumeAttachment: { volumeId: values.volume_id } } : undefined,
        target: {},
      };
    }
    if (url.includes('/types')) {
      const t = await types.create({ name: uniq('t') });
      if (url.includes('/encryption/') || (url.endsWith('/encryption') && method === 'GET'))
        await types.createEncryption(t.id, luks);
      values.id = t.id;
    } else if (url.includes('/volumes/:id')) values.id = await newVolume();
    else if (url.includes('/snapshots/:id')) values.id = await newSnapshot(await newVolume());
    const bodies: Record<string, unknown | (() => Promise<unknown>)> = {
      'POST /types': { volume_type: { name: uniq('t') } },
      'PUT /types/:id': { volume_type: { description: 'changed' } },
      'POST /types/:id/encryption': { encryption: luks },
      'PUT /types/:id/encryption/:encryption_id': { encryption: { key_size: 512 } },
      'POST /volumes': { volume: { size: 1, name: uniq('v') } },
      'PUT /volumes/:id': { volume: { name: uniq('v') } },
      'POST /volumes/:id/action': { 'os-extend': { new_size: 2 } },
      'POST /snapshots': async () => ({
        snapshot: { volume_id: await newVolume(), name: 'rbac', description: 'matrix' },
      }),
    };
    const rest = url.replace(/^\/volume\/v3(\/:project_id)?/, '');
    const body = bodies[`${method} ${rest}`];
    return {
      url: url.replace(/:(\w+)/g, (_, k: string) => values[k] ?? `missing-${k}`),
      body: typeof body === 'function' ? await body() : body,
      target: url.includes(':project_id') ? { project_id: projectA } : {},
    };
  }

  /** Backup routes (Cinder and /bulwark/v1): a fresh backup of a fresh volume of project A per request. */
  async function backupSample(method: string, url: string, p: Persona) {
    const { volumes } = api.platform.volume;
    const { backups } = api.platform;
    const member = api.authOf(who.member.token as string);
    const newVolume = async () => {
      const v = await volumes.create(member, { size: 1, name: uniq('v') });
      await volumes.settled();
      return v.id;
    };
    const values: Record<string, string> = { project_id: projectA };
    const write = method !== 'GET' && method !== 'HEAD';
    if (url.includes('backup-schedules/:id')) {
      const sch = await api.platform.backupScheduler.create(
        api.authOf(who.admin.token as string),
        url.includes('/server-backup-schedules')
          ? { kind: 'server', sourceId: fixtures.server, intervalMinutes: 60 }
          : { sourceId: await newVolume(), intervalMinutes: 60 },
      );
      values.id = sch.id;
    } else if (url.includes(':id') && ((write && mayAct(method, url, p)) || !fixtures.backup)) {
      // A fresh backup only for a caller policy lets act (a restore or delete spends it): the others are
      // refused before any handler runs, so the fixture serves them (restores are the walk's slowest step).
      const b = await backups.createVolumeBackup(api.authOf(who.admin.token as string), {
        volumeId: await newVolume(),
      });
      await backups.settled();
      if (!write || !mayAct(method, url, p)) fixtures.backup = b.id;
      values.id = b.id;
    } else values.id = fixtures.backup;
    const rest = url.replace(/^\/volume\/v3(\/:project_id)?/, '').replace(/^\/bulwark\/v1/, '');
    const bodies: Record<string, () => Promise<unknown>> = {
      'POST /backups': async () => ({ backup: { volume_id: await newVolume(), name: uniq('b') } }),
      'POST /backups/:id/restore': async () =>
        url.startsWith('/bulwark')
          ? { recovery_key: recoveryPem, name: uniq('r') }
          : { restore: { name: uniq('r') } },
      'POST /backups/:id/verify': async () => ({}),
      'POST /backup-repository': async () => ({ repository: { recipient_public_key: recoveryPublic } }),
      'POST /backup-repository/unlock': async () => ({ recovery_key: recoveryPem, seconds: 3600 }),
      'POST /backup-schedules': async () => ({
        schedule: { volume_id: await newVolume(), interval_minutes: 60 },
      }),
      'POST /server-backup-schedules': async () => ({
        schedule: { server_id: fixtures.server, interval_minutes: 60 },
      }),
    };
    const body = await bodies[`${method} ${rest}`]?.();
    return {
      url: url.replace(/:(\w+)/g, (_, k: string) => values[k] ?? `missing-${k}`),
      body,
      target: url.includes(':project_id') ? { project_id: projectA } : {},
    };
  }

  /** DR targets and drills: on the member's server; a drill row of project A to show. */
  async function drSample(method: string, url: string) {
    const adminAuth = api.authOf(who.admin.token as string);
    if (method === 'DELETE')
      await api.platform.dr.setPolicy(adminAuth, fixtures.server, { rpoS: 60, rtoS: 60 });
    let id = fixtures.server;
    if (url === '/bulwark/v1/dr/drills/:id') {
      id = uniq('drill');
      await api.store.db
        .insertInto('dr_drills')
        .values({
          id,
          run_id: id,
          server_id: fixtures.server,
          project_id: projectA,
          backup_id: null,
          status: 'done',
          step: null,
          started_at: new Date().toISOString(),
          finished_at: new Date().toISOString(),
          rpo_s: null,
          rto_s: null,
          rpo_target_s: 60,
          rto_target_s: 60,
          verdict: 'fail',
          reason: 'sample',
          started_by: 'admin',
        })
        .execute();
    }
    const body =
      method === 'PUT'
        ? { target: { rpo_s: 3600, rto_s: 3600 } }
        : method === 'POST'
          ? { drill: { server_ids: [uniq('not-protected')] } }
          : undefined;
    return { url: url.replace(':id', id), body, target: {} };
  }

  /** Server backups: of the member's server; a restore makes a new server from a fresh backup. */
  async function serverBackupSample(method: string, url: string) {
    const { backups } = api.platform;
    const write = method !== 'GET';
    let id = fixtures.serverBackup;
    if (url.includes('/server-backups/:id') && (write || !id)) {
      const b = await backups.createServerBackup(api.authOf(who.admin.token as string), {
        serverId: fixtures.server,
      });
      await backups.settled();
      id = b.id;
      if (!write) fixtures.serverBackup = id;
    }
    const body = url.endsWith('/restore')
      ? { recovery_key: recoveryPem, name: uniq('sr') }
      : url.endsWith('/backups') && method === 'POST'
        ? { backup: { name: uniq('sb') } }
        : undefined;
    return {
      url: url.replace(':id', url.startsWith('/bulwark/v1/servers/') ? fixtures.server : id),
      body,
      target: {},
    };
  }

  /** Compute and image routes: fixtures in project A; writes act on throwaway resources. */
  async function computeSample(method: string, url: string) {
    const write = method !== 'GET' && method !== 'HEAD';
    const member = api.authOf(who.member.token as string);
    const fill = (u: string, values: Record<string, string>) =>
      u.replace(/:(\w+)/g, (_, k: string) => values[k] ?? `missing-${k}`);
    const spec = 'quota:disk_read_bytes_sec';
    if (url.includes('/os-server-groups')) {
      // Throwaway groups only: clear the walk's earlier ones so the 10-group quota never answers instead.
      await api.store.db.deleteFrom('server_groups').execute();
      const g = (
        await api.platform.compute.groups.create(member, { name: uniq('g'), policy: 'anti-affinity' })
      ).id;
      const bodies: Record<string, unknown> = {
        'POST /compute/v2.1/os-server-groups': { server_group: { name: uniq('g'), policies: ['affinity'] } },
      };
      return { url: fill(url, { id: g }), body: bodies[`${method} ${url}`], target: {} };
    }
    if (url.includes('/flavors')) {
      const f =
        write && url.includes(':id')
          ? (await api.platform.compute.flavors.create({ name: uniq('f'), vcpus: 1, ram: 256, disk: 1 })).id
          : fixtures.flavor;
      if (write && url.includes(':key')) await api.platform.compute.flavors.setExtraSpecs(f, { [spec]: '1' });
      const bodies: Record<string, unknown> = {
        'POST /compute/v2.1/flavors': { flavor: { name: uniq('f'), ram: 256, vcpus: 1, disk: 1 } },
        'POST /compute/v2.1/flavors/:id/os-extra_specs': { extra_specs: { [spec]: '1000' } },
        'PUT /compute/v2.1/flavors/:id/os-extra_specs/:key': { [spec]: '1000' },
      };
      return { url: fill(url, { id: f, key: spec }), body: bodies[`${method} ${url}`], target: {} };
    }
    if (url.includes('/servers')) {
      const sid =
        write && url.includes(':id')
          ? (await api.platform.compute.servers.create(member, serverInput())).id
          : fixtures.server;
      if (url.includes(':key'))
        await api.platform.compute.servers.setMetadata(member, sid, { k: 'v' }, false);
      await api.platform.compute.servers.settled();
      const bodies: Record<string, unknown> = {
        'POST /compute/v2.1/servers': {
          server: { name: uniq('s'), imageRef: fixtures.image, flavorRef: fixtures.flavor },
        },
        'POST /compute/v2.1/servers/:id/action': { 'os-getConsoleOutput': {} },
        'POST /compute/v2.1/servers/:id/metadata': { metadata: { a: 'b' } },
        'PUT /compute/v2.1/servers/:id/metadata': { metadata: { a: 'b' } },
      };
      return { url: fill(url, { id: sid, key: 'k' }), body: bodies[`${method} ${url}`], target: {} };
    }
    const iid =
      write && url.includes(':id')
        ? (
            await api.platform.compute.images.create(member, {
              name: uniq('i'),
              disk_format: 'raw',
              container_format: 'bare',
              properties: {},
            })
          ).id
        : fixtures.image;
    if (url.endsWith('/file') && method === 'PUT') {
      return {
        url: fill(url, { id: iid }),
        rawBody: Buffer.alloc(1024 * 1024),
        headers: { 'content-type': 'application/octet-stream' },
        target: {},
      };
    }
    const bodies: Record<string, unknown> = {
      'POST /image/v2/images': { name: uniq('i'), disk_format: 'raw', container_format: 'bare' },
      'PATCH /image/v2/images/:id': [{ op: 'replace', path: '/name', value: uniq('n') }],
    };
    return {
      url: fill(url, { id: iid }),
      body: bodies[`${method} ${url}`],
      ...(method === 'PATCH'
        ? { headers: { 'content-type': 'application/openstack-images-v2.1-json-patch' } }
        : {}),
      target: {},
    };
  }

  /**
   * Snapshot extensions (/bulwark/v1): server snapshots of a throwaway server in
   * project A, lifecycle policies of project A, its fixture server and a volume.
   */
  async function snapshotSample(method: string, url: string) {
    const write = method !== 'GET' && method !== 'HEAD';
    const member = api.authOf(who.member.token as string);
    const { snapshots } = api.platform.snapshots;
    const { servers } = api.platform.compute;
    const server = async () => {
      const id = write ? (await servers.create(member, serverInput())).id : fixtures.server;
      await servers.settled();
      return id;
    };
    const policy = { snapshot_policy: { max_count: 50, max_age_days: 365 } };
    if (url.includes('/snapshot-policies/projects/'))
      return {
        url: url.replace(':project_id', projectA),
        body: method === 'PUT' ? policy : undefined,
        target: { project_id: projectA },
      };
    let id = 'missing';
    if (url.includes('/snapshot-policies/volumes/')) {
      const v = await api.platform.volume.volumes.create(member, { size: 1, name: uniq('v') });
      await api.platform.volume.volumes.settled();
      id = v.id;
    } else if (url.includes('/snapshot-policies/servers/') || url.includes('/servers/:id'))
      id = await server();
    else if (url.includes('/snapshots/:id')) {
      const s = await snapshots.create(member, 'server', await server(), {
        name: 'rbac',
        description: 'matrix',
      });
      await snapshots.settled();
      id = s.snapshot.id;
    }
    const body =
      url.endsWith('/snapshots') && method === 'POST'
        ? { snapshot: { name: 'rbac', description: 'matrix' } }
        : method === 'PUT'
          ? policy
          : undefined;
    return { url: url.replace(':id', id), body, target: {} };
  }

  /** Whether the policy table lets `p` call this route on project A's resources. */
  const mayAct = (method: string, url: string, p: Persona) => {
    const route = api.app.routeTable.find((r) => r.method === method && r.url === url);
    return route !== undefined && expected(POLICY[route.action], p, { project_id: projectA });
  };

  /** Templates: a fresh uploaded image of the admin's for each write; one template version to show. */
  let shownTemplate = '';
  async function templateSample(method: string, url: string) {
    const adminAuth = api.authOf(who.admin.token as string);
    const { images } = api.platform.compute;
    const image = async () => {
      const img = await images.create(adminAuth, {
        name: uniq('tpl'),
        disk_format: 'raw',
        container_format: 'bare',
        properties: {},
      });
      await images.upload(adminAuth, img.id, Readable.from([randomBytes(4096)]));
      return img.id;
    };
    if (method === 'POST')
      return { url, body: { template: { name: uniq('t'), image_id: await image() } }, target: {} };
    if (!url.includes(':id')) return { url, target: {} };
    shownTemplate ||= (
      await api.platform.templates.create(adminAuth, { name: uniq('t'), imageId: await image() })
    ).template.id;
    return { url: url.replace(':id', shownTemplate), target: {} };
  }

  /** Compliance: runs evaluate the catalogue (body `{}`); a stored run to show and report on. */
  async function complianceSample(method: string, url: string) {
    if (method === 'POST') return { url, body: {}, target: {} };
    if (!url.includes(':id')) return { url, target: {} };
    fixtures.complianceRun ||= (await api.platform.compliance.run(api.authOf(who.admin.token as string))).id;
    const filled = url.replace(':id', fixtures.complianceRun);
    return {
      url: filled.endsWith('/report') ? `${filled}?framework=pci-dss&format=html` : filled,
      target: {},
    };
  }

  /** Network routes: a fixture network in project A; writes act on throwaway resources. */
  /** Security zone routes (network extension): throwaway zones and rules; writes are admin-only. */
  async function zoneSample(method: string, url: string) {
    const write = method !== 'GET' && method !== 'HEAD';
    const { zones } = api.platform.network;
    const zone = async () => (await zones.create({ name: uniq('z') })).name;
    const rule = async () => (await zones.addRule({ fromZone: await zone(), toZone: 'default' })).id;
    const bodies: Record<string, () => Promise<unknown>> = {
      'POST /network/v2.0/bulwark-zones': async () => ({ bulwark_zone: { name: uniq('z') } }),
      'PUT /network/v2.0/bulwark-zones/:name': async () => ({ bulwark_zone: { description: 'changed' } }),
      'POST /network/v2.0/bulwark-zone-rules': async () => ({
        bulwark_zone_rule: {
          from_zone: await zone(),
          to_zone: 'default',
          protocol: 'tcp',
          port_range_min: 443,
        },
      }),
    };
    const body = write ? await bodies[`${method} ${url}`]?.() : undefined;
    const filled = url.includes(':name')
      ? url.replace(':name', write ? await zone() : 'default')
      : url.includes(':id')
        ? url.replace(':id', await rule())
        : url;
    return { url: filled, body, target: {} };
  }

  async function networkSample(method: string, url: string) {
    const write = method !== 'GET' && method !== 'HEAD';
    const member = api.authOf(who.member.token as string);
    const { networks, securityGroups } = api.platform.network;
    const fill = (u: string, id: string) => u.replace(':id', id);
    // Subnets may not overlap across networks (one routing table): every sample gets its own /24.
    const nextCidr = () => `10.${100 + Math.floor(cidrSeq / 250)}.${cidrSeq++ % 250}.0/24`;
    const net = async () => (await networks.createNetwork(member, { name: uniq('n') })).id;
    const resolve = (ids: string[] | undefined) => securityGroups.resolveForPort(member, ids);
    const kind = /^\/network\/v2\.0\/([\w-]+)/.exec(url)?.[1];
    const bodies: Record<string, () => Promise<unknown>> = {
      'POST networks': async () => ({ network: { name: uniq('n') } }),
      'PUT networks': async () => ({ network: { name: uniq('n') } }),
      'POST subnets': async () => ({
        subnet: { network_id: await net(), ip_version: 4, cidr: nextCidr() },
      }),
      'POST ports': async () => ({ port: { network_id: fixtures.network } }),
      'PUT ports': async () => ({ port: { name: uniq('p') } }),
      'POST security-groups': async () => ({ security_group: { name: uniq('g') } }),
      'PUT security-groups': async () => ({ security_group: { description: 'changed' } }),
      'POST routers': async () => ({ router: { name: uniq('r') } }),
      'PUT routers': async () => ({ router: { name: uniq('r') } }),
      'POST security-group-rules': async () => ({
        security_group_rule: {
          security_group_id: (await securityGroups.create(member, { name: uniq('g') })).id,
          direction: 'ingress',
          protocol: 'tcp',
          port_range_min: 22,
          port_range_max: 22,
        },
      }),
    };
    // Router interface actions take a bare {subnet_id}; an unknown subnet is a 404 for those allowed.
    const body = !write
      ? undefined
      : url.endsWith('_router_interface')
        ? { subnet_id: '00000000-0000-4000-8000-000000000000' }
        : await bodies[`${method} ${kind}`]?.();
    if (!url.includes(':id')) return { url, body, target: {} };
    const ids: Record<string, () => Promise<string>> = {
      networks: async () => (write ? net() : fixtures.network),
      subnets: async () =>
        write
          ? (
              await networks.createSubnet(member, {
                name: '',
                networkId: await net(),
                ipVersion: 4,
                cidr: nextCidr(),
              })
            ).id
          : fixtures.subnet,
      ports: async () =>
        write
          ? (await networks.createPort(member, { networkId: fixtures.network }, resolve)).id
          : fixtures.port,
      'security-groups': async () => (await securityGroups.create(member, { name: uniq('g') })).id,
      routers: async () => (await api.platform.network.routers.create(member, { name: uniq('r') })).id,
      'security-group-rules': async () => {
        const g = await securityGroups.create(member, { name: uniq('g') });
        return (
          await securityGroups.createRule(member, g.id, {
            direction: 'ingress',
            protocol: 'udp',
            port_range_min: 53,
            port_range_max: 53,
          })
        ).id;
      },
    };
    const id = await ids[kind ?? '']?.();
    if (!id) throw new Error(`RBAC matrix: no sample for ${method} ${url}`);
    return { url: fill(url, id), body, target: {} };
  }

  let cidrSeq = 0;

  /** The policy table read independently of the enforcer. */
  function expected(
    terms: readonly RuleTerm[],
    p: Persona,
    target: { project_id?: string; user_id?: string },
  ): boolean {
    const me = who[p];
    const valid = p !== 'none' && p !== 'expired';
    return terms.some((t) => {
      switch (t) {
        case 'public':
          return true;
        case 'authenticated':
          return valid;
        case 'admin':
          return p === 'admin' || p === 'breakglass';
        case 'member':
          // Every persona but the reader and the backup operator holds member (the admin through role implication).
          return (
            valid &&
            p !== 'reader' &&
            p !== 'operator' &&
            (target.project_id ?? me.projectId) === me.projectId
          );
        case 'backup-operator':
          return p === 'operator' && (target.project_id ?? me.projectId) === me.projectId;
        case 'reader':
          return valid && (target.project_id ?? me.projectId) === me.projectId;
        case 'self':
          return valid && target.user_id !== undefined && target.user_id === me.userId;
      }
      return false;
    });
  }

  // The walk grows with the API (hundreds of requests, argon2 logins among them).
  it('covers every route, and every answer matches the policy table', { timeout: 600_000 }, async () => {
    const routes = api.app.routeTable;
    expect(routes.length).toBeGreaterThan(30);
    const results: string[] = [];
    const started = Date.now();
    let checks = 0;
    let allowedChecks = 0;
    for (const route of routes) {
      const terms = POLICY[route.action] as readonly RuleTerm[];
      for (const p of PERSONAS) {
        const s = await sample(route.method, route.url, p);
        const res = await api.app.inject({
          method: route.method as 'GET',
          url: s.url,
          headers: {
            ...(who[p].token ? { 'x-auth-token': who[p].token as string } : {}),
            ...(s.body ? { 'content-type': 'application/json' } : {}),
            ...s.headers,
          },
          ...(s.body ? { payload: JSON.stringify(s.body) } : {}),
          ...(s.rawBody ? { payload: s.rawBody } : {}),
        });
        checks++;
        const special = HANDLER_REFUSALS[`${route.method} ${route.url} as ${p}`];
        if (special) {
          if (res.statusCode !== special.status || !special.message.test(res.body))
            results.push(
              `${route.method} ${route.url} as ${p}: expected the handler's ${special.status}, got ${res.statusCode} ${res.body.slice(0, 200)}`,
            );
          continue;
        }
        const allowed = expected(terms, p, s.target);
        if (allowed) allowedChecks++;
        const denied = res.statusCode === 401 || res.statusCode === 403;
        // A password change ends the caller's sessions: log in again for the rest of the walk.
        if (route.url.endsWith('/password') && res.statusCode === 204 && who[p].login)
          who[p].token = await who[p].login!();
        const wrongCode = !allowed && res.statusCode !== (p === 'none' || p === 'expired' ? 401 : 403);
        if (allowed === denied || wrongCode || res.statusCode >= 500) {
          results.push(
            `${route.method} ${route.url} as ${p}: expected ${allowed ? 'allowed' : 'denied'}, got ${res.statusCode} ${res.body.slice(0, 200)}`,
          );
        }
      }
    }
    reportFigures('rbac', {
      routes: routes.length,
      roles: PERSONAS.length,
      checked: checks,
      allowed: allowedChecks,
      denied: checks - allowedChecks - Object.keys(HANDLER_REFUSALS).length,
      handler_refusals: Object.keys(HANDLER_REFUSALS).length,
      mismatches: results.length,
      seconds: Math.round((Date.now() - started) / 1000),
    });
    expect(checks).toBe(routes.length * PERSONAS.length);
    expect(results).toEqual([]);
  });

  it('audits every refusal', async () => {
    const denied = await api.store.db
      .selectFrom('audit_events')
      .select(['status', 'outcome'])
      .where('outcome', '=', 'denied')
      .execute();
    expect(denied.length).toBeGreaterThan(50);
    expect(denied.every((d) => d.status === 401 || d.status === 403)).toBe(true);
  });

  it('refuses to start with a route that names no policy action', async () => {
    const { default: Fastify } = await import('fastify');
    const app = Fastify();
    app.addHook('onRoute', (route) => {
      if (
        !route.config ||
        !('action' in route.config) ||
        !Object.hasOwn(POLICY, String(route.config.action))
      ) {
        throw new Error(`route ${route.url} has no policy action`);
      }
    });
    expect(() => app.get('/x', async () => 'x')).toThrow(/no policy action/);
    // And the real server applies the same rule to its own routes:
    expect(api.app.routeTable.every((r) => Object.hasOwn(POLICY, r.action))).toBe(true);
  });
});
