import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer } from 'node:net';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { parse, stringify } from 'yaml';
import { buildApi } from './api/server.js';
import { SiemForwarder } from './audit/siem.js';
import { type AuditWriter, systemEvent } from './audit/writer.js';
import { HostEnrollment } from './compute/host-enrollment.js';
import type { DaemonConfig } from './config.js';
import { AgentHub } from './host/agent/hub.js';
import { startAgentServer } from './host/agent/server.js';
import { probeCapabilities } from './host/capabilities.js';
import { DnsmasqDhcp, dnsmasqAvailable } from './host/net/dhcp.js';
import { NftDataplane, setGateways } from './host/net/index.js';
import { createQemuDriver } from './host/qemu-driver.js';
import { bootstrapIdentity } from './identity/bootstrap.js';
import type { IdentityService } from './identity/service.js';
import { openKek } from './keys/index.js';
import { sweepOrphanKeys } from './keys/orphan-keys.js';
import {
  loadDataplaneState,
  loadDhcpState,
  loadGateways,
  loadGroupStates,
} from './network/dataplane-state.js';
import { DropMonitor } from './network/drop-spikes.js';
import type { DataplaneSync } from './network/networks.js';
import { createCa, issueCertificate, type PemPair } from './pki/ca.js';
import { buildPlatform } from './platform.js';
import { openStore, type Store } from './store/database.js';

export interface Daemon {
  app: FastifyInstance;
  store: Store;
  identity: IdentityService;
  audit: AuditWriter;
  url: string;
  config: DaemonConfig;
  /** Set only on the first start, when the admin was created. */
  adminPassword: string | null;
  /** The mutual-TLS agent endpoint (`--agent-listen`), if any. */
  agentUrl: string | null;
  close(): Promise<void>;
}

const writeSecret = (path: string, data: string) => {
  writeFileSync(path, data, { mode: 0o600 });
  chmodSync(path, 0o600);
};

/** Loads the platform CA, creating it on first start, and issues a fresh server certificate. */
async function ensurePki(
  dir: string,
  host: string,
  extraNames: string[] = [],
): Promise<{ ca: PemPair; server: PemPair; caFile: string }> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const caFile = join(dir, 'ca.crt');
  const caKey = join(dir, 'ca.key');
  let ca: PemPair;
  if (existsSync(caFile) && existsSync(caKey)) {
    ca = { certPem: readFileSync(caFile, 'utf8'), keyPem: readFileSync(caKey, 'utf8') };
  } else {
    ca = await createCa(`Bulwark CA ${hostname()}`);
    writeSecret(caKey, ca.keyPem);
    writeFileSync(caFile, ca.certPem, { mode: 0o644 });
  }
  const names = [
    ...new Set(
      ['localhost', '127.0.0.1', '::1', hostname(), host, ...extraNames].filter(
        (n) => n !== '0.0.0.0' && n !== '::',
      ),
    ),
  ];
  const server = await issueCertificate(ca, { commonName: host, names, usage: 'server' });
  writeFileSync(join(dir, 'server.crt'), server.certPem + ca.certPem, { mode: 0o644 });
  writeSecret(join(dir, 'server.key'), server.keyPem);
  return { ca, server, caFile };
}

const urlHost = (h: string) => (h.includes(':') ? `[${h}]` : h);

/** Asks the kernel for a free port, so `--listen HOST:0` can be published in the catalog. */
function freePort(host: string): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      srv.close(() =>
        typeof addr === 'object' && addr ? resolvePort(addr.port) : reject(new Error('no port')),
      );
    });
  });
}

export async function startDaemon(requested: DaemonConfig, opts: { logger?: boolean } = {}): Promise<Daemon> {
  let config = requested;
  if (config.port === 0) {
    const port = await freePort(config.host);
    config = { ...config, port, publicUrl: config.publicUrl.replace(/:0$/, `:${port}`) };
  }
  // Files we create are ours alone; the data dir is traversable (not listable) so each
  // guest's user can reach its own 0700 directory under instances/.
  process.umask(0o077);
  mkdirSync(config.dataDir, { recursive: true, mode: 0o711 });
  chmodSync(config.dataDir, 0o711);
  const store = await openStore({
    url: config.databaseUrl,
    ...(config.databaseAdminUrl ? { adminUrl: config.databaseAdminUrl } : {}),
  });
  const driver = await createQemuDriver({
    baseDir: join(config.dataDir, 'instances'),
    secureBootVars: config.secureBootVars,
  });
  let lockdownNotice: ((on: boolean, cause?: Error) => void) | undefined;
  const dataplane = new NftDataplane({
    load: () => loadDataplaneState(store, { uplink: config.uplinkDevice }),
    loadGroups: (ids) => loadGroupStates(store, ids),
    prepare: async () => setGateways(await loadGateways(store)),
    onLockdown: (on, cause) => lockdownNotice?.(on, cause),
  });
  const dhcp = dnsmasqAvailable()
    ? new DnsmasqDhcp({ dir: join(config.dataDir, 'dhcp'), load: () => loadDhcpState(store) })
    : undefined;
  // The key manager's KEK: unusable (bad mode, not root's, token missing) means no start, never a weaker key.
  const kek = openKek(config.kek, config.dataDir);
  // Network changes reach this host's nftables, then every connected agent's (host/agent/hub.ts).
  let hub: AgentHub | undefined;
  const firewalls: DataplaneSync = {
    sync: async (reason) => {
      await dataplane.sync(reason);
      await hub?.sync(reason);
    },
    syncGroups: async (ids, reason) => {
      await dataplane.syncGroups(ids, reason);
      await hub?.sync(reason);
    },
  };
  const platform = buildPlatform(store, driver, firewalls, {
    kek,
    dataDir: config.dataDir,
    tokenTtlSeconds: config.tokenTtlSeconds,
    adminProjectName: config.adminProjectName,
    hostName: hostname(),
    capabilities: probeCapabilities({ secureBootVars: config.secureBootVars }),
    maxImageBytes: config.maxImageBytes,
    defaultGroupAllowsSameGroup: config.defaultGroupAllowsSameGroup,
    serverCreateRate: config.serverCreateRate,
    vtpmRestarts: config.vtpmRestarts,
    storageThresholds: config.storageThresholds,
    passthrough: config.passthrough,
    identityPolicy: config.identityPolicy,
    consoleRetentionDays: config.consoleRetentionDays,
    apiRate: config.apiRate,
    ...(dhcp ? { dhcp } : {}),
  });
  const { identity, audit } = platform;
  await platform.keys.checkKek();
  lockdownNotice = (on, cause) =>
    void audit
      .append(
        systemEvent({
          action: on ? 'dataplane:lockdown' : 'dataplane:lockdown_lifted',
          reason: cause?.message ?? null,
          outcome: on ? 'failure' : 'success',
        }),
      )
      .catch(() => undefined);
  // Enforce the stored rules before anything else: a daemon that cannot filter must not serve guests.
  await dataplane.sync('daemon start');
  // DHCP (dnsmasq per network): start missing servers, kill stale ones. A failure leaves guests without leases, not open.
  await dhcp?.sync('daemon start').catch((err: Error) => console.error(err.message));
  const { adminPassword } = await bootstrapIdentity(store, identity);
  const { ca, server, caFile } = await ensurePki(
    join(config.dataDir, 'pki'),
    config.host,
    config.agentListen ? [config.agentListen.host] : [],
  );
  // Multi-host (docs/multi-host.md): this machine is a host; agents join with tokens signed by the CA.
  await platform.compute.registerLocalHost();
  const enrollment = new HostEnrollment(store, platform.compute.hosts, ca);
  // After a restart (docs/reliability.md): keys a killed task left unreferenced go first, before any build
  // resumes; then guests still running are adopted, vanished ones marked, orphans killed, and interrupted
  // server and volume tasks finished or failed with a fault.
  const sweptKeys = await sweepOrphanKeys(store, platform.keys);
  const servers = await platform.compute.servers.reconcile();
  const volumes = await platform.volume.volumes.reconcile(servers.local);
  const resumed = Object.entries(volumes).map(([state, ids]) => `${ids.length} ${state}`);
  if (sweptKeys.length || servers.orphansKilled.length || servers.vanished.length || resumed.length)
    console.error(
      `Recovered after a restart: ${servers.orphansKilled.length} orphan guest(s) removed, ${servers.vanished.length} vanished, ${sweptKeys.length} orphan key(s) deleted, volumes ${resumed.join(', ') || 'all settled'}.`,
    );
  // Sessions cut by a previous stop are closed as interrupted, before any new one can open.
  await platform.consoles.recover();
  // SIEM forwarding reads the audit table from its cursor; unreadable certificate files stop the start.
  const siem = config.siem
    ? new SiemForwarder(store, {
        host: config.siem.host,
        port: config.siem.port,
        ca: readFileSync(config.siem.caFile, 'utf8'),
        ...(config.siem.certFile && config.siem.keyFile
          ? {
              cert: readFileSync(config.siem.certFile, 'utf8'),
              key: readFileSync(config.siem.keyFile, 'utf8'),
            }
          : {}),
        ...(config.siem.serverName ? { serverName: config.siem.serverName } : {}),
        format: config.siem.format,
        hostname: hostname(),
      })
    : undefined;
  const app = await buildApi(
    { store, ...platform, enrollment, publicUrl: config.publicUrl, maxListLimit: config.apiMaxLimit },
    {
      https: { key: server.keyPem, cert: server.certPem + readFileSync(caFile, 'utf8') },
      logger: opts.logger ?? false,
      rateLimits: config.apiRate,
    },
  );
  await app.listen({ host: config.host, port: config.port });
  siem?.start(audit);
  // Firewall drop spikes (guide §13): counters read every 30 s, spikes audited as security events.
  const drops = new DropMonitor(
    () => dataplane.counters(),
    async () => (await store.db.selectFrom('ports').select('id').execute()).map((p) => p.id),
    audit,
  );
  drops.start(30_000);
  platform.metrics.attachDrops(() => drops.detector.latest());
  if (siem) platform.metrics.attachSiem(() => siem.status());
  if (siem) platform.compliance.attachSiem(() => siem.status());
  const metricsServer = config.metricsListen
    ? await serveMetrics(platform.metrics, config.metricsListen)
    : undefined;
  // Console recordings: old ones pruned hourly.
  const prune = () => void platform.consoles.prune().catch((err: Error) => console.error(err.message));
  prune();
  const pruneTimer = setInterval(prune, 3_600_000);
  pruneTimer.unref();
  const publicUrl = config.publicUrl;

  if (adminPassword !== null) {
    writeSecret(join(config.dataDir, 'admin-password'), `${adminPassword}\n`);
    writeCloudsYaml(config, publicUrl, adminPassword, caFile);
  } else {
    refreshCloudsYaml(config, publicUrl);
  }
  const timer = setInterval(() => void identity.pruneTokens().catch(() => undefined), 3_600_000);
  timer.unref();
  platform.backupScheduler.start(); // scheduled backups, as the backup identity (docs/backups.md)
  // Snapshot lifecycle (docs/snapshots.md): prunes what is past its policy's age or count, audited.
  platform.snapshots.scheduler.start();
  const agentHub = new AgentHub(store, platform.compute.servers, {
    ca,
    uplink: config.uplinkDevice,
    log: (line) => console.error(line),
  });
  hub = agentHub;
  platform.compute.servers.migrator = agentHub;
  platform.compute.coldMigrations.mover = agentHub;
  const agents = config.agentListen
    ? await startAgentServer({
        ca,
        server,
        ...config.agentListen,
        hosts: platform.compute.hosts,
        onChannel: (name, io) =>
          void agentHub.connect(name, io).catch((err: Error) => {
            console.error(`host ${name}: agent channel refused: ${err.message}`);
            io.destroy();
          }),
      })
    : null;
  const agentUrl =
    agents && config.agentListen ? `https://${urlHost(config.agentListen.host)}:${agents.port}` : null;
  // A host that misses three reports is down (the scheduler skips it), audited once when it goes.
  const staleTimer = setInterval(
    () =>
      void platform.compute.hosts
        .markStale(3 * config.heartbeatSeconds * 1000)
        .then((down) =>
          Promise.all(
            down.map((h) =>
              audit.append(
                systemEvent({
                  action: 'host:down',
                  reason: `no report for ${3 * config.heartbeatSeconds} s`,
                  target: { type: 'host', id: h },
                  outcome: 'failure',
                }),
              ),
            ),
          ),
        )
        .catch(() => undefined),
    config.heartbeatSeconds * 1000,
  );
  staleTimer.unref();
  return {
    app,
    store,
    identity,
    audit,
    url: publicUrl,
    config,
    adminPassword,
    agentUrl,
    async close() {
      clearInterval(timer);
      drops.stop();
      await new Promise((r) => (metricsServer ? metricsServer.close(r) : r(undefined)));
      clearInterval(pruneTimer);
      await platform.consoles.closeAll();
      await siem?.stop();
      await platform.backupScheduler.stop();
      await platform.snapshots.scheduler.stop();
      clearInterval(staleTimer);
      await agents?.close();
      agentHub.close();
      dataplane.close();
      // No orphan dnsmasq: the next start brings them back (leases are in the data dir).
      await dhcp?.stopAll().catch(() => undefined);
      await app.close();
      await platform.compute.servers.settled();
      await platform.snapshots.snapshots.settled();
      // Guests keep running across daemon restarts; only our QMP connections close.
      await driver.close();
      await platform.keys.close();
      await store.close();
    },
  };
}

/** `--metrics-listen`: `/metrics` only, plain HTTP, for a Prometheus that cannot hold an expiring token. */
async function serveMetrics(
  metrics: { text(): Promise<string>; contentType: string },
  at: { host: string; port: number },
): Promise<HttpServer> {
  const srv = createHttpServer((req, res) => {
    if (req.method !== 'GET' || req.url?.split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('only GET /metrics is served here\n');
      return;
    }
    metrics.text().then(
      (body) => res.writeHead(200, { 'content-type': metrics.contentType }).end(body),
      () => res.writeHead(503, { 'content-type': 'text/plain' }).end('metrics unavailable\n'),
    );
  });
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(at.port, at.host, () => resolve());
  });
  return srv;
}

/** Keeps clouds.yaml pointing at this start's URL (the port may differ) without touching its credentials. */
function refreshCloudsYaml(config: DaemonConfig, url: string) {
  const path = join(config.dataDir, 'clouds.yaml');
  if (!existsSync(path)) return;
  const doc: unknown = parse(readFileSync(path, 'utf8'));
  const clouds =
    (doc as { clouds?: Record<string, { auth?: Record<string, unknown> }> } | null)?.clouds ?? {};
  const stale = Object.values(clouds).filter((c) => c.auth && c.auth.auth_url !== `${url}/identity/v3`);
  if (stale.length === 0) return;
  for (const c of stale) if (c.auth) c.auth.auth_url = `${url}/identity/v3`;
  writeSecret(path, stringify(doc));
}

function writeCloudsYaml(config: DaemonConfig, url: string, password: string, caFile: string) {
  const doc = {
    clouds: {
      bulwark: {
        auth: {
          auth_url: `${url}/identity/v3`,
          username: 'admin',
          password,
          project_name: config.adminProjectName,
          user_domain_name: 'Default',
          project_domain_name: 'Default',
        },
        region_name: 'RegionOne',
        interface: 'public',
        identity_api_version: 3,
        cacert: caFile,
      },
    },
  };
  // The same admin with password + TOTP (docs/identity.md): `OS_CLOUD=bulwark-mfa openstack --os-passcode CODE ...`.
  // The methods list lives here because this CLI reads `--os-auth-methods a,b` as one string.
  const mfa = {
    ...doc.clouds.bulwark,
    auth: { ...doc.clouds.bulwark.auth },
    auth_type: 'v3multifactor',
    auth_methods: ['v3password', 'v3totp'],
  };
  writeSecret(
    join(config.dataDir, 'clouds.yaml'),
    stringify({ clouds: { ...doc.clouds, 'bulwark-mfa': mfa } }),
  );
}
