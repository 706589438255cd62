import { join } from 'node:path';
import { AuditWriter } from './audit/writer.js';
import { FlavorService } from './compute/flavors.js';
import { HostService } from './compute/hosts.js';
import { ImageService } from './compute/images.js';
import type { HostCapabilities } from './compute/properties.js';
import { QuarantineService } from './compute/quarantine.js';
import type { Resources } from './compute/scheduler/index.js';
import { ServerGroupService } from './compute/server-groups.js';
import { ServerService } from './compute/servers.js';
import { serverCreateLimit } from './governance/rate-limits.js';
import { probeCapacity } from './host/capabilities.js';
import type { HypervisorDriver } from './host/hypervisor.js';
import { ImageStore } from './host/image-store.js';
import { IdentityService } from './identity/service.js';
import type { KekProvider } from './keys/kek.js';
import { FileKek } from './keys/kek-file.js';
import { KeyManager } from './keys/manager.js';
import { type DataplaneSync, NetworkService } from './network/networks.js';
import { RouterService } from './network/routers.js';
import { SecurityGroupService } from './network/security-groups.js';
import { ServerPorts } from './network/server-ports.js';
import { ZoneService } from './network/zones.js';
import type { AuthContext } from './policy/context.js';
import { QuotaService } from './quotas/service.js';
import type { Store } from './store/database.js';
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
  /** Servers a user may create per sliding hour, counted in the store (docs/rate-limits.md); absent or 0: no limit. */
  serverCreateRate?: number;
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
  const images = new ImageService(store, new ImageStore(join(opts.dataDir, 'images')), opts.maxImageBytes);
  // The key manager; `keys` is also the KeyService other rooms read keys through, on the owner's behalf.
  const keys = new KeyManager(store, opts.kek ?? FileKek.open(opts.dataDir), audit);
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
  servers.beforePlacement = registerLocalHost;
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
  return {
    identity,
    audit,
    keys,
    quotas,
    volume: { types: volumeTypes, volumes },
    compute: { flavors, images, servers, quarantine, hosts, groups, registerLocalHost },
    network: { networks, securityGroups, routers, zones },
  };
}

export type Platform = ReturnType<typeof buildPlatform>;
