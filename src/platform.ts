import { join } from 'node:path';
import { AuditWriter } from './audit/writer.js';
import { DrService } from './backups/dr.js';
import { BackupScheduler } from './backups/scheduler.js';
import { BackupService } from './backups/service.js';
import { ComplianceService } from './compliance/service.js';
import { ColdMigrationService } from './compute/cold-migration.js';
import { EvacuationService } from './compute/evacuation.js';
import { FlavorService } from './compute/flavors.js';
import { GuestAgentService } from './compute/guest-agent-service.js';
import { HostDeviceService } from './compute/host-devices.js';
import { HostService } from './compute/hosts.js';
import { ImageService } from './compute/images.js';
import type { PassthroughConfig } from './compute/passthrough-policy.js';
import { ProfileService } from './compute/profiles.js';
import type { HostCapabilities } from './compute/properties.js';
import { QuarantineService } from './compute/quarantine.js';
import type { Resources } from './compute/scheduler/index.js';
import { ServerGroupService } from './compute/server-groups.js';
import { type CreateServerInput, ServerService } from './compute/servers.js';
import { ConsoleService, DEFAULT_RETENTION_DAYS } from './console/recordings.js';
import { ApprovalService } from './governance/approvals.js';
import { MetadataRuleService } from './governance/metadata-rules.js';
import { serverCreateLimit } from './governance/rate-limits.js';
import { ServerHistory } from './governance/server-history.js';
import { DEFAULT_THRESHOLDS, StoragePools, type Thresholds } from './governance/storage-thresholds.js';
import { probeCapacity } from './host/capabilities.js';
import { probeHardening, processConfinement, REAL_ROOTS } from './host/hardening.js';
import type { HypervisorDriver } from './host/hypervisor.js';
import { ImageStore } from './host/image-store.js';
import { planPassthrough } from './host/passthrough.js';
import { measureFs } from './host/storage-pools.js';
import { ApplicationCredentialService } from './identity/application-credentials.js';
import { BreakGlassService } from './identity/break-glass.js';
import { DEFAULT_IDENTITY_POLICY, type IdentityPolicy } from './identity/config.js';
import { CredentialService } from './identity/credentials.js';
import { LoginService } from './identity/login.js';
import { IdentityService } from './identity/service.js';
import type { KekProvider } from './keys/kek.js';
import { FileKek } from './keys/kek-file.js';
import { KeyManager } from './keys/manager.js';
import { PlatformMetrics } from './metrics/registry.js';
import { type DataplaneSync, NetworkService } from './network/networks.js';
import { RouterService } from './network/routers.js';
import { SecurityGroupService } from './network/security-groups.js';
import { ServerPorts } from './network/server-ports.js';
import { ZoneService } from './network/zones.js';
import type { AuthContext } from './policy/context.js';
import { QuotaService } from './quotas/service.js';
import { SnapshotPolicyService } from './snapshots/policies.js';
import { SnapshotScheduler } from './snapshots/scheduler.js';
import { SnapshotService } from './snapshots/snapshots.js';
import type { Store } from './store/database.js';
import { TemplateService } from './templates/templates.js';
import { VolumeTypeService } from './volumes/types.js';
import { VolumeService } from './volumes/volumes.js';

export interface PlatformOptions {
  dataDir: string;
  tokenTtlSeconds: number;
  adminProjectName: string;
  hostName: string;
  capabilities: HostCapabilities;
  /** What the local host offers the scheduler; absent: probed from this machine (docs/multi-host.md). */
  hostCapacity?: Resources;
  maxImageBytes: number;
  /** Neutron's allow-from-same-group ingress rule in `default` (off: the spec's block-all-ingress). */
  defaultGroupAllowsSameGroup: boolean;
  /**
   * DHCP servers (`host/net/dhcp.ts#DnsmasqDhcp`): told after every subnet or
   * port change, after the firewall. Absent: no DHCP (API tests).
   */
  dhcp?: DataplaneSync;
  /** The key manager's KEK (`keys/kek-*.ts`); absent: the 0600 file KEK in the data dir. */
  kek?: KekProvider;
  /** The site's passthrough allow-lists (`--pci-passthrough-allow`, `--usb-passthrough-allow`); absent: none. */
  passthrough?: PassthroughConfig;
  /** Where sysfs is; tests point it at a fake tree. Default /sys. */
  sysfsRoot?: string;
  /** Storage pool thresholds (docs/storage-thresholds.md); absent: warn at 80%, refuse at 95%. */
  storageThresholds?: Thresholds;
  /** Servers a user may create per sliding hour, counted in the store (docs/rate-limits.md); absent or 0: no limit. */
  serverCreateRate?: number;
  /** Automatic restarts per server per hour after its swtpm died (compute/vtpm-recovery.ts); absent: 3. */
  vtpmRestarts?: number;
  /** Admin MFA, lockout and password rules (docs/identity.md); absent fields take DEFAULT_IDENTITY_POLICY. */
  identityPolicy?: Partial<IdentityPolicy>;
  /** Days console recordings are kept before they are pruned (docs/console.md); default 90. */
  consoleRetentionDays?: number;
  /** How often the snapshot lifecycle scheduler prunes (docs/snapshots.md); default 15 minutes. */
  snapshotPruneIntervalMs?: number;
  /** Where /proc and /etc are for the compliance host checks (docs/compliance.md); tests point them at fake trees. */
  procRoot?: string;
  etcRoot?: string;
  /** The API's rate limits as `serve` set them, for the compliance check; absent: the API has no limiter. */
  apiRate?: { perToken: number; perAddress: number };
  /** How long a DR drill waits for a restored guest to show its boot marker (docs/dr.md). */
  drBootTimeoutMs?: number;
  /** The clock snapshots are stamped and aged by; tests move it. */
  clock?: () => Date;
}

/** The platform acting on its own behalf (cleanup after a delete), never reachable by a token. */
const SYSTEM: AuthContext = {
  userId: 'bulwark-system',
  userName: 'bulwark-system',
  userDomainId: 'default',
  projectId: null,
  projectName: null,
  projectDomainId: null,
  roles: ['admin'],
  isAdmin: true,
  methods: [],
  tokenHash: '',
  auditId: '',
  issuedAt: '',
  expiresAt: '',
};

/** The domain services wired together; the daemon and the API tests build them the same way. */
export function buildPlatform(
  store: Store,
  driver: HypervisorDriver,
  dataplane: DataplaneSync,
  opts: PlatformOptions,
) {
  const identity = new IdentityService(store, {
    ...DEFAULT_IDENTITY_POLICY,
    ...opts.identityPolicy,
    tokenTtlSeconds: opts.tokenTtlSeconds,
    adminProjectName: opts.adminProjectName,
  });
  const audit = new AuditWriter(store);
  const dhcp = opts.dhcp;
  const networks = new NetworkService(
    store,
    dhcp
      ? {
          sync: async (reason: string) => {
            await dataplane.sync(reason);
            await dhcp.sync(reason);
          },
        }
      : dataplane,
  );
  const securityGroups = new SecurityGroupService(store, dataplane, {
    defaultAllowsSameGroup: opts.defaultGroupAllowsSameGroup,
  });
  const routers = new RouterService(store, dataplane);
  const zones = new ZoneService(store, dataplane);
  const serverPorts = new ServerPorts(store, networks, securityGroups);
  const flavors = new FlavorService(store);
  const imageStore = new ImageStore(join(opts.dataDir, 'images'));
  const images = new ImageService(store, imageStore, opts.maxImageBytes);
  // The key manager; `keys` is also the KeyService other rooms read keys through, on the owner's behalf.
  const keys = new KeyManager(store, opts.kek ?? FileKek.open(opts.dataDir), audit);
  // Keystone credentials (TOTP secrets sealed by the key manager) and multi-method login (docs/identity.md).
  const credentials = new CredentialService(store, keys);
  const applicationCredentials = new ApplicationCredentialService(store, identity);
  const login = new LoginService(store, identity, credentials, applicationCredentials);
  const breakGlass = new BreakGlassService(store, identity, audit);
  const servers = new ServerService(
    store,
    images,
    flavors,
    driver,
    { name: opts.hostName, capabilities: opts.capabilities },
    serverPorts,
    SYSTEM,
    keys, // vTPM state keys
  );
  // Multi-host (docs/multi-host.md): this machine is the one local host; agents join as more hosts.
  const hosts = new HostService(store);
  const coldMigrations = new ColdMigrationService(store, servers);
  const groups = new ServerGroupService(store);
  let local: Promise<unknown> | undefined;
  const registerLocalHost = () => {
    local ??= hosts.register({
      name: opts.hostName,
      local: true,
      capacity: opts.hostCapacity ?? probeCapacity(opts.dataDir),
      features: [
        ...(opts.capabilities.uefi ? ['uefi'] : []),
        ...(opts.capabilities.secureBoot ? ['secure-boot'] : []),
        ...(opts.capabilities.tpm ? ['tpm'] : []),
      ],
    });
    // A failed registration (the database was away) is tried again on the next create.
    local.catch(() => {
      local = undefined;
    });
    return local;
  };
  servers.groups = groups;
  servers.audit = audit;
  servers.beforePlacement = registerLocalHost;
  if (opts.vtpmRestarts !== undefined) servers.vtpmRestarts = opts.vtpmRestarts;
  if (opts.serverCreateRate) servers.limitCreates(serverCreateLimit(store, opts.serverCreateRate));
  const quarantine = new QuarantineService(
    store,
    servers,
    networks,
    driver,
    audit,
    join(opts.dataDir, 'forensics'),
  );
  // Block storage (docs/volumes.md): encrypted volumes' keys come from `keys`, on the owner's behalf.
  const volumeTypes = new VolumeTypeService(store);
  const volumes = new VolumeService(store, volumeTypes, driver, keys, (auth, id) => servers.get(auth, id));
  // Quotas (docs/quotas.md): checked in the transaction that inserts each counted resource.
  const quotas = new QuotaService(store);
  servers.quotas = quotas;
  volumes.quotas = quotas;
  securityGroups.quotas = quotas;
  groups.quotas = quotas;
  // Snapshots (docs/snapshots.md): internal qcow2 snapshots, lifecycle policies and their scheduler.
  const snapshotPolicies = new SnapshotPolicyService(store);
  const snapshots = new SnapshotService(store, driver, audit, snapshotPolicies, volumes, servers, opts.clock);
  const snapshotScheduler = new SnapshotScheduler(snapshots, opts.snapshotPruneIntervalMs);
  // Approvals, the two-person rule (docs/approvals.md): held requests run as their requester once approved.
  const approvals = new ApprovalService(store, audit, identity);
  servers.approvals = approvals;
  // VM metadata rules and change history (docs/metadata.md).
  const metadataRules = new MetadataRuleService(store);
  const serverHistory = new ServerHistory(store);
  servers.metadataRules = metadataRules;
  servers.history = serverHistory;
  // Storage thresholds (docs/storage-thresholds.md): the filesystems holding server disks, volumes and images.
  const instancesDir = join(opts.dataDir, 'instances');
  const storage = new StoragePools(
    {
      instances: instancesDir,
      volumes: join(instancesDir, '.volumes'),
      images: join(opts.dataDir, 'images'),
    },
    opts.storageThresholds ?? DEFAULT_THRESHOLDS,
    measureFs,
    audit,
  );
  servers.storage = storage;
  volumes.storage = storage;
  images.storage = storage;
  approvals.register('server-create', async (requester, payload, approval) => {
    const s = await servers.create(requester, payload as CreateServerInput, approval);
    return { server: { id: s.id, name: s.name } };
  });
  // Clones (docs/clones.md): a copy of a stopped server's disk under a new key, once a second admin approves.
  approvals.register('server-clone', async (requester, payload, approval) => {
    const p = payload as { sourceId: string; name: string };
    const s = await servers.clone(requester, p.sourceId, p.name, approval);
    return { server: { id: s.id, name: s.name } };
  });
  // Console sessions, all recorded (docs/console.md); recording keys belong to the admin project.
  const consoles = new ConsoleService(store, servers, driver, keys, audit, {
    dir: join(opts.dataDir, 'console-recordings'),
    retentionDays: opts.consoleRetentionDays ?? DEFAULT_RETENTION_DAYS,
    keyOwner: async () => {
      const admin = (await identity.listProjects({ name: opts.adminProjectName }))[0];
      if (!admin)
        throw new Error(`the ${opts.adminProjectName} project is missing; recordings need its keys`);
      return admin.id;
    },
  });
  quarantine.onQuarantine = (id) => consoles.cut(id, 'the server was quarantined');
  // Prometheus metrics (docs/metrics.md); the daemon attaches the SIEM and firewall readings.
  const metrics = new PlatformMetrics({
    store,
    audit,
    quotas,
    consoles,
    storage,
  });
  // Backups (docs/backups.md): written with the recovery public key, read only with the private one.
  const backups = new BackupService(store, volumes, driver, keys, audit, {
    dataDir: opts.dataDir,
    adminProjectName: opts.adminProjectName,
  });
  backups.servers = servers;
  backups.approvals = approvals;
  // Restoring over an existing disk waits for a second admin; it then runs with the repository unlocked.
  approvals.register('restore-in-place', async (requester, payload, approval) => {
    const p = payload as { kind: 'volume' | 'server'; backupId: string; volumeId?: string };
    return p.kind === 'server'
      ? {
          restore: await backups.restoreServer(requester, p.backupId, { inPlace: true }, undefined, approval),
        }
      : {
          restore: await backups.restore(
            requester,
            p.backupId,
            { volumeId: p.volumeId },
            undefined,
            approval,
          ),
        };
  });
  const backupScheduler = new BackupScheduler(store, identity, backups);
  // DR drills (docs/dr.md): the newest server backup of each protected server, restored into an isolated network.
  const dr = new DrService(store, backups, servers, volumes, networks, securityGroups, audit, {
    ...(opts.drBootTimeoutMs ? { bootTimeoutMs: opts.drBootTimeoutMs } : {}),
  });
  // Templates (docs/templates.md): pinned, immutable, versions approved by a second admin.
  const templates = new TemplateService(store, images, (id) => imageStore.path(id), approvals);
  images.immutable = (id) => templates.immutable(id);
  servers.bootGate = (imageId, path) => templates.checkBoot(imageId, path);
  // Compliance (docs/compliance.md): the catalogue's live checks over this platform and this host.
  const roots = {
    proc: opts.procRoot ?? REAL_ROOTS.proc,
    sys: opts.sysfsRoot ?? REAL_ROOTS.sys,
    etc: opts.etcRoot ?? REAL_ROOTS.etc,
  };
  const compliance = new ComplianceService(
    {
      store,
      identity,
      storage,
      approvals,
      metadataRules,
      driver,
      settings: {
        dataDir: opts.dataDir,
        localHost: opts.hostName,
        capabilities: opts.capabilities,
        serverCreateRate: opts.serverCreateRate ?? 0,
        apiRate: opts.apiRate ?? null,
        consoleRetentionDays: opts.consoleRetentionDays ?? DEFAULT_RETENTION_DAYS,
        storageThresholds: opts.storageThresholds ?? DEFAULT_THRESHOLDS,
        passthrough: opts.passthrough ?? { pciAllowList: [], usbAllowList: [] },
        defaultGroupAllowsSameGroup: opts.defaultGroupAllowsSameGroup,
      },
      confinement: (pid) => processConfinement(roots.proc, pid),
      now: opts.clock ?? (() => new Date()),
    },
    (sysctls) => probeHardening(roots, sysctls),
  );
  return {
    compliance,
    backups,
    backupScheduler,
    dr,
    consoles,
    metrics,
    identity,
    credentials,
    applicationCredentials,
    breakGlass,
    login,
    audit,
    approvals,
    governance: { metadataRules, serverHistory, storage },
    keys,
    quotas,
    volume: { types: volumeTypes, volumes },
    compute: {
      flavors,
      images,
      servers,
      quarantine,
      hosts,
      groups,
      registerLocalHost,
      // Cold migration and host evacuation (docs/multi-host.md); their mover is the daemon's agent hub.
      coldMigrations,
      evacuations: new EvacuationService(store, servers, coldMigrations, hosts),
      guestAgent: new GuestAgentService(store, servers, driver, audit),
      // Device passthrough (docs/passthrough-and-agent.md): the site's allow-lists, the host read from sysfs.
      hostDevices: new HostDeviceService(
        store,
        servers,
        audit,
        approvals,
        opts.passthrough ?? { pciAllowList: [], usbAllowList: [] },
        (caller, request, config) => planPassthrough(caller, request, config, opts.sysfsRoot ?? '/sys'),
      ),
    },
    snapshots: { snapshots, policies: snapshotPolicies, scheduler: snapshotScheduler },
    templates,
    // VM profiles (docs/profiles.md): Hyper-NixOS JSON profiles in and out, onto flavors, images and zones.
    profiles: new ProfileService(store, flavors, images, servers, networks, zones, opts.capabilities),
    network: { networks, securityGroups, routers, zones },
  };
}

export type Platform = ReturnType<typeof buildPlatform>;
