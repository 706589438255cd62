import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lastAuditEvent, startTestApi, type TestApi } from '../helpers/api.js';
import { dialects } from '../helpers/store.js';

/**
 * Storage thresholds (docs/storage-thresholds.md) against real filesystems:
 * each pool's dir is a small tmpfs this test mounts (in its own temp data dir,
 * so the mount points are unique) and fills, then the API is asked to allocate.
 */
describe.runIf(process.getuid?.() === 0).each(dialects())(
  'storage thresholds on %s (real tmpfs pools)',
  (dialect) => {
    let api: TestApi;
    let admin: string;
    let alice: { token: string; userId: string; projectId: string };
    let fx: { flavorId: string; imageId: string };
    const mounts: string[] = [];
    const dirs = () => {
      const instances = join(api.db.dir, 'instances');
      return { instances, volumes: join(instances, '.volumes'), images: join(api.db.dir, 'images') };
    };
    /** Fills the filesystem at `dir` to `percent` used, as df counts it. */
    const fill = (dir: string, percent: number) => {
      const s = statfsSync(dir);
      const usable = (s.blocks - s.bfree + s.bavail) * s.bsize;
      const used = (s.blocks - s.bfree) * s.bsize;
      const more = Math.max(0, Math.ceil((usable * percent) / 100) - used);
      writeFileSync(join(dir, `filler-${Date.now()}`), Buffer.alloc(more));
    };
    const empty = (dir: string) => {
      for (const f of execFileSync('ls', [dir]).toString().split('\n'))
        if (f.startsWith('filler-')) rmSync(join(dir, f));
    };
    const count = async (table: 'volumes' | 'servers' | 'images') =>
      (await api.store.db.selectFrom(table).select('id').execute()).length;
    const lastAudit = (action: string) => lastAuditEvent(api, action);

    beforeAll(async () => {
      api = await startTestApi(dialect);
      admin = await api.login('admin', api.adminPassword, 'admin');
      alice = await api.persona('st-a', 'st-alice', 'member');
      const d = dirs();
      for (const dir of [d.instances, d.volumes, d.images]) {
        mkdirSync(dir, { recursive: true });
        execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m,mode=0711', 'tmpfs', dir]);
        mounts.unshift(dir);
      }
      fx = await api.bootable(alice.token, 'st');
    });
    afterAll(async () => {
      await api?.platform.volume.volumes.settled();
      await api?.platform.compute.servers.settled();
      for (const dir of mounts) execFileSync('umount', ['-l', dir]);
      await api?.close();
    });

    it('refuses a new volume in a pool at 95% with the pool, its usage and the threshold; nothing is created', async () => {
      fill(dirs().volumes, 97);
      const before = await count('volumes');
      const r = await api.call('POST', '/volume/v3/volumes', alice.token, {
        volume: { size: 1, name: 'v-full' },
      });
      expect(r.status).toBe(507);
      const msg = r.json.computeFault.message as string;
      expect(msg).toMatch(
        new RegExp(`Storage pool volumes \\(${dirs().volumes}\\) is 9[5-9](\\.\\d)?% used`),
      );
      expect(msg).toMatch(/at or above its 95% limit for new allocations; the volume was not created/);
      expect(await count('volumes')).toBe(before);
      expect(await lastAudit('volume:volumes:create')).toMatchObject({ outcome: 'failure', status: 507 });
      expect((await lastAudit('storage:pool_full'))?.target_id).toBe('volumes');
    });

    it('warns at 80% (audited, and shown in the storage-pools API) but still allocates', async () => {
      empty(dirs().volumes);
      fill(dirs().volumes, 85);
      const r = await api.call('POST', '/volume/v3/volumes', alice.token, {
        volume: { size: 1, name: 'v-warn' },
      });
      expect(r.status).toBe(202);
      expect((await lastAudit('storage:pool_warning'))?.reason).toMatch(
        /storage pool volumes .* is 8\d(\.\d)?% used: above 80%/,
      );
      const pools = await api.call('GET', '/bulwark/v1/storage-pools', admin);
      const v = pools.json.storage_pools.find((p: { name: string }) => p.name === 'volumes');
      expect(v).toMatchObject({
        path: dirs().volumes,
        state: 'warning',
        warn_percent: 80,
        refuse_percent: 95,
      });
      expect(v.used_percent).toBeGreaterThanOrEqual(80);
      expect(v.total_bytes).toBe(4 * 2 ** 20);
      expect((await api.call('GET', '/bulwark/v1/storage-pools', alice.token)).status).toBe(403);
      empty(dirs().volumes);
      const ok = await api.call('GET', '/bulwark/v1/storage-pools', admin);
      expect(ok.json.storage_pools.find((p: { name: string }) => p.name === 'volumes').state).toBe('ok');
    });

    it('refuses a server when the instances pool is full, and an image when the images pool is', async () => {
      fill(dirs().instances, 96);
      const servers = await count('servers');
      const s = await api.call('POST', '/compute/v2.1/servers', alice.token, {
        server: { name: 'vm-full', imageRef: fx.imageId, flavorRef: fx.flavorId, networks: 'none' },
      });
      expect(s.status).toBe(507);
      expect(s.json.computeFault.message).toMatch(/Storage pool instances .* the server was not created/);
      expect(await count('servers')).toBe(servers);
      empty(dirs().instances);

      fill(dirs().images, 99);
      const images = await count('images');
      const i = await api.call('POST', '/image/v2/images', alice.token, {
        name: 'img-full',
        disk_format: 'raw',
        container_format: 'bare',
      });
      expect(i.status).toBe(507);
      expect(JSON.stringify(i.json)).toMatch(/Storage pool images .* the image was not created/);
      expect(await count('images')).toBe(images);
      empty(dirs().images);
      expect(
        (
          await api.call('POST', '/compute/v2.1/servers', alice.token, {
            server: { name: 'vm-ok', imageRef: fx.imageId, flavorRef: fx.flavorId, networks: 'none' },
          })
        ).status,
      ).toBe(202);
    });
  },
);
