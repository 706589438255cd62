import { BackupScheduler } from '../../src/backups/scheduler.js';
import { BackupService } from '../../src/backups/service.js';
import type { TestApi } from './api.js';

/**
 * A backup service and scheduler on the test API's store that share the
 * clock `now`, so a test can run a schedule's nights in seconds.
 */
export function clockedBackups(api: TestApi, now: () => number) {
  const service = new BackupService(
    api.store,
    api.platform.volume.volumes,
    api.driver,
    api.platform.keys,
    api.platform.audit,
    { dataDir: api.db.dir, adminProjectName: 'admin', now },
  );
  service.servers = api.platform.compute.servers;
  return { service, scheduler: new BackupScheduler(api.store, api.identity, service, now) };
}
