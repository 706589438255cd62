import { join } from 'node:path';
import { AuditWriter } from './audit/writer.js';
import { FlavorService } from './compute/flavors.js';
import { ImageService } from './compute/images.js';
import type { HostCapabilities } from './compute/properties.js';
import { ServerService } from './compute/servers.js';
import type { HypervisorDriver } from './host/hypervisor.js';
import { ImageStore } from './host/image-store.js';
import { IdentityService } from './identity/service.js';
import type { Store } from './store/database.js';

export interface PlatformOptions {
  dataDir: string;
  tokenTtlSeconds: number;
  adminProjectName: string;
  hostName: string;
  capabilities: HostCapabilities;
  maxImageBytes: number;
}

/** The domain services wired together; the daemon and the API tests build them the same way. */
export function buildPlatform(store: Store, driver: HypervisorDriver, opts: PlatformOptions) {
  const identity = new IdentityService(store, { tokenTtlSeconds: opts.tokenTtlSeconds, adminProjectName: opts.adminProjectName });
  const audit = new AuditWriter(store);
  const flavors = new FlavorService(store);
  const images = new ImageService(store, new ImageStore(join(opts.dataDir, 'images')), opts.maxImageBytes);
  const servers = new ServerService(store, images, flavors, driver, { name: opts.hostName, capabilities: opts.capabilities });
  return { identity, audit, compute: { flavors, images, servers } };
}

export type Platform = ReturnType<typeof buildPlatform>;
