import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { waitFor } from '../helpers/guests.js';
import { dialects } from '../helpers/store.js';

const RAW = Buffer.alloc(2 * 1024 * 1024, 0);

describe.each(dialects())('compute and image API on %s (fake hypervisor)', (dialect) => {
  let api: TestApi;
  let member: { token: string; projectId: string };
  let other: { token: string };
  let flavorId: string;
  let imageId: string;

  const upload = (id: string, data: Buffer, token = member.token) =>
    api.app.inject({
      method: 'PUT',
      url: `/image/v2/images/${id}/file`,
      headers: { 'x-auth-token': token, 'content-type': 'application/octet-stream' },
      payload: data,
    });
  const patchImage = (id: string, ops: unknown[], token = member.token) =>
    api.app.inject({
      method: 'PATCH',
      url: `/image/v2/images/${id}`,
      headers: { 'x-auth-token': token, 'content-type': 'application/openstack-images-v2.1-json-patch' },
      payload: JSON.stringify(ops),
    });
  const server = async (id: string, token = member.token) =>
    (await api.call('GET', `/compute/v2.1/servers/${id}`, token)).json.server;
  const until = (id: string, status: string) =>
    waitFor(
      `server ${status}`,
      async () => {
        await api.platform.compute.servers.settled(id);
        const s = await server(id);
        return s.status === status && s['OS-EXT-STS:task_state'] === null ? s : undefined;
      },
      10_000,
      20,
    );

  beforeAll(async () => {
    api = await startTestApi(dialect);
    member = await api.persona('compute-a', 'compute-member', 'member');
    other = await api.persona('compute-b', 'compute-other', 'member');
  });
  afterAll(async () => api?.close());

  describe('flavors', () => {
    it('admin creates a flavor and sets extra specs; members read them', async () => {
      const f = await api.call('POST', '/compute/v2.1/flavors', undefined, {
        flavor: { name: 'm1.tiny', ram: 256, vcpus: 1, disk: 1 },
      });
      expect(f.status).toBe(200);
      flavorId = f.json.flavor.id;
      const specs = await api.call('POST', `/compute/v2.1/flavors/${flavorId}/os-extra_specs`, undefined, {
        extra_specs: { 'quota:disk_read_bytes_sec': '1048576' },
      });
      expect(specs.json.extra_specs).toEqual({ 'quota:disk_read_bytes_sec': '1048576' });
      const list = await api.call('GET', '/compute/v2.1/flavors/detail', member.token);
      expect(list.json.flavors.map((x: { name: string }) => x.name)).toContain('m1.tiny');
    });

    it.each([
      ['zero RAM', { name: 'bad', ram: 0, vcpus: 1, disk: 1 }],
      ['negative disk', { name: 'bad', ram: 256, vcpus: 1, disk: -1 }],
      ['string vcpus', { name: 'bad', ram: 256, vcpus: '2', disk: 1 }],
      ['ephemeral disk', { name: 'bad', ram: 256, vcpus: 1, disk: 1, 'OS-FLV-EXT-DATA:ephemeral': 5 }],
      ['an unknown field', { name: 'bad', ram: 256, vcpus: 1, disk: 1, gpu: 1 }],
    ])('refuses a flavor with %s and leaves nothing behind', async (_n, flavor) => {
      const r = await api.call('POST', '/compute/v2.1/flavors', undefined, { flavor });
      expect(r.status).toBe(400);
      expect(r.json.badRequest.message).toBeTruthy();
      expect(
        (await api.call('GET', '/compute/v2.1/flavors/detail')).json.flavors.map(
          (x: { name: string }) => x.name,
        ),
      ).not.toContain('bad');
    });

    it('refuses unknown extra specs and bad values', async () => {
      expect(
        (
          await api.call('POST', `/compute/v2.1/flavors/${flavorId}/os-extra_specs`, undefined, {
            extra_specs: { 'hw:nope': '1' },
          })
        ).status,
      ).toBe(400);
      expect(
        (
          await api.call('POST', `/compute/v2.1/flavors/${flavorId}/os-extra_specs`, undefined, {
            extra_specs: { 'hw:tpm_model': 'tpm-xyz' },
          })
        ).status,
      ).toBe(400);
      expect(
        (await api.call('GET', `/compute/v2.1/flavors/${flavorId}/os-extra_specs`)).json.extra_specs,
      ).toEqual({ 'quota:disk_read_bytes_sec': '1048576' });
    });

    it('lets only admins write flavors', async () => {
      expect(
        (
          await api.call('POST', '/compute/v2.1/flavors', member.token, {
            flavor: { name: 'mine', ram: 256, vcpus: 1, disk: 1 },
          })
        ).status,
      ).toBe(403);
      expect((await api.call('DELETE', `/compute/v2.1/flavors/${flavorId}`, member.token)).status).toBe(403);
    });
  });

  describe('images', () => {
    it('uploads, hashes and serves an image', async () => {
      const sha = createHash('sha256').update(RAW).digest('hex');
      const c = await api.call('POST', '/image/v2/images', member.token, {
        name: 'tiny',
        disk_format: 'raw',
        container_format: 'bare',
        'owner_specified.openstack.sha256': sha,
      });
      expect(c.status).toBe(201);
      imageId = c.json.id;
      expect((await upload(imageId, RAW)).statusCode).toBe(204);
      const img = (await api.call('GET', `/image/v2/images/${imageId}`, member.token)).json;
      expect(img).toMatchObject({
        status: 'active',
        size: RAW.length,
        os_hash_algo: 'sha256',
        os_hash_value: sha,
        virtual_size: RAW.length,
      });
      const dl = await api.app.inject({
        method: 'GET',
        url: `/image/v2/images/${imageId}/file`,
        headers: { 'x-auth-token': member.token },
      });
      expect(dl.statusCode).toBe(200);
      expect(dl.rawPayload.equals(RAW)).toBe(true);
      const set = await patchImage(imageId, [{ op: 'add', path: '/hw_firmware_type', value: 'bios' }]);
      expect(set.statusCode).toBe(200);
      expect(JSON.parse(set.body).hw_firmware_type).toBe('bios');
    });

    it('refuses a wrong checksum and keeps no data', async () => {
      const c = await api.call('POST', '/image/v2/images', member.token, {
        name: 'bad-sum',
        disk_format: 'raw',
        container_format: 'bare',
        'owner_specified.openstack.sha256': '0'.repeat(64),
      });
      const r = await upload(c.json.id, RAW);
      expect(r.statusCode).toBe(400);
      expect(JSON.parse(r.body).error.message).toMatch(/Checksum mismatch/);
      expect((await api.call('GET', `/image/v2/images/${c.json.id}`, member.token)).json).toMatchObject({
        status: 'queued',
        size: null,
      });
    });

    it('refuses data that is not the declared format', async () => {
      const c = await api.call('POST', '/image/v2/images', member.token, {
        name: 'liar',
        disk_format: 'qcow2',
        container_format: 'bare',
      });
      const r = await upload(c.json.id, RAW);
      expect(r.statusCode).toBe(400);
      expect(JSON.parse(r.body).error.message).toMatch(/not qcow2/);
    });

    it('refuses unknown property values and read-only attributes', async () => {
      expect(
        (await patchImage(imageId, [{ op: 'add', path: '/os_secure_boot', value: 'sometimes' }])).statusCode,
      ).toBe(400);
      expect(
        (await patchImage(imageId, [{ op: 'replace', path: '/owner', value: 'someone' }])).statusCode,
      ).toBe(400);
      expect(
        (
          await api.call('POST', '/image/v2/images', member.token, {
            name: 'x',
            disk_format: 'vmdk',
            container_format: 'bare',
          })
        ).status,
      ).toBe(400);
    });

    it('lets only admins publish, and hides private images from other projects', async () => {
      expect(
        (await patchImage(imageId, [{ op: 'replace', path: '/visibility', value: 'public' }])).statusCode,
      ).toBe(403);
      expect((await api.call('GET', `/image/v2/images/${imageId}`, other.token)).status).toBe(404);
      expect(
        (await api.call('GET', '/image/v2/images', other.token)).json.images.map((i: { id: string }) => i.id),
      ).not.toContain(imageId);
      expect(
        (await patchImage(imageId, [{ op: 'replace', path: '/name', value: 'stolen' }], other.token))
          .statusCode,
      ).toBe(404);
    });
  });

  describe('servers', () => {
    let sid: string;

    it('creates a server that goes BUILD → ACTIVE, scoped to its project', async () => {
      const r = await api.call('POST', '/compute/v2.1/servers', member.token, {
        server: { name: 'vm1', imageRef: imageId, flavorRef: flavorId, metadata: { purpose: 'test' } },
      });
      expect(r.status).toBe(202);
      sid = r.json.server.id;
      const s = await until(sid, 'ACTIVE');
      expect(s).toMatchObject({
        name: 'vm1',
        tenant_id: member.projectId,
        metadata: { purpose: 'test' },
        'OS-EXT-STS:power_state': 1,
      });
      expect(s).not.toHaveProperty('OS-EXT-SRV-ATTR:host');
      expect(api.driver.guests.get(sid)?.spec).toMatchObject({
        memoryMiB: 256,
        vcpus: 1,
        io: { readBytesSec: 1048576 },
        firmware: { type: 'bios' },
      });
      expect((await api.call('GET', `/compute/v2.1/servers/${sid}`, other.token)).status).toBe(404);
      expect((await api.call('GET', '/compute/v2.1/servers/detail', other.token)).json.servers).toEqual([]);
      expect((await api.call('GET', '/compute/v2.1/servers?all_tenants=1', member.token)).status).toBe(403);
      expect(
        (await api.call('GET', '/compute/v2.1/servers/detail?all_tenants=1')).json.servers.map(
          (x: { id: string }) => x.id,
        ),
      ).toContain(sid);
    });

    it('runs stop, start, reboot, pause, unpause, suspend, resume and refuses what the state forbids', async () => {
      const act = (body: unknown) =>
        api.call('POST', `/compute/v2.1/servers/${sid}/action`, member.token, body);
      expect((await act({ 'os-start': null })).status).toBe(409);
      for (const [body, want] of [
        [{ 'os-stop': null }, 'SHUTOFF'],
        [{ 'os-start': null }, 'ACTIVE'],
        [{ reboot: { type: 'SOFT' } }, 'ACTIVE'],
        [{ pause: null }, 'PAUSED'],
        [{ unpause: null }, 'ACTIVE'],
        [{ suspend: null }, 'SUSPENDED'],
        [{ resume: null }, 'ACTIVE'],
      ] as const) {
        expect((await act(body)).status).toBe(202);
        await until(sid, want);
      }
      expect((await act({ unpause: null })).status).toBe(409);
      expect((await act({ 'os-stop': null, 'os-start': null })).status).toBe(400);
      expect(
        (await api.call('POST', `/compute/v2.1/servers/${sid}/action`, other.token, { 'os-stop': null }))
          .status,
      ).toBe(404);
      const out = await act({ 'os-getConsoleOutput': { length: 10 } });
      expect(out.json.output).toContain('BULWARK-GUEST-READY');
    });

    it('records a guest that powered itself off', async () => {
      api.driver.emit(sid, 'SHUTDOWN');
      await until(sid, 'SHUTOFF');
      expect(
        (await api.call('POST', `/compute/v2.1/servers/${sid}/action`, member.token, { 'os-start': null }))
          .status,
      ).toBe(202);
      await until(sid, 'ACTIVE');
    });

    it('puts a server that fails to start in ERROR with a fault the user can act on', async () => {
      api.driver.failNextStart = 'QEMU could not open the disk image: Permission denied';
      const r = await api.call('POST', '/compute/v2.1/servers', member.token, {
        server: { name: 'doomed', imageRef: imageId, flavorRef: flavorId },
      });
      const s = await until(r.json.server.id, 'ERROR');
      expect(s.fault).toMatchObject({
        code: 400,
        message: 'QEMU could not open the disk image: Permission denied',
      });
      expect(api.driver.guests.has(r.json.server.id)).toBe(false);
      expect(
        (await api.call('DELETE', `/compute/v2.1/servers/${r.json.server.id}`, member.token)).status,
      ).toBe(204);
      // The delete finishes in the background: let it, so the next test counts a settled list.
      await api.platform.compute.servers.settled();
    });

    it.each([
      [
        'a missing image',
        () => ({ name: 'x', imageRef: '00000000-0000-0000-0000-000000000000', flavorRef: flavorId }),
        /Image .* could not be found/,
      ],
      [
        'a missing flavor',
        () => ({ name: 'x', imageRef: imageId, flavorRef: 'nope' }),
        /Flavor nope could not be found/,
      ],
      [
        'an unknown network',
        () => ({ name: 'x', imageRef: imageId, flavorRef: flavorId, networks: [{ uuid: 'abc' }] }),
        /Network abc could not be found/,
      ],
      [
        'an unknown server group',
        () => ({ name: 'x', imageRef: imageId, flavorRef: flavorId }),
        /Server group g1 not found/,
        { group: 'g1' },
      ],
      [
        'bad user_data',
        () => ({ name: 'x', imageRef: imageId, flavorRef: flavorId, user_data: 'not base64!' }),
        /base64/,
      ],
      ['a blank name', () => ({ name: '   ', imageRef: imageId, flavorRef: flavorId }), /name/],
    ] as const)(
      'refuses %s with 400 and creates nothing',
      async (_n, body, msg, hints?: Record<string, string>) => {
        const before = (await api.call('GET', '/compute/v2.1/servers', member.token)).json.servers.length;
        const r = await api.call('POST', '/compute/v2.1/servers', member.token, {
          server: body(),
          ...(hints ? { 'os:scheduler_hints': hints } : {}),
        });
        expect(r.status).toBe(400);
        expect(r.json.badRequest.message).toMatch(msg);
        expect((await api.call('GET', '/compute/v2.1/servers', member.token)).json.servers.length).toBe(
          before,
        );
      },
    );

    it('refuses Secure Boot required on a BIOS image instead of booting without it', async () => {
      expect(
        (await patchImage(imageId, [{ op: 'add', path: '/os_secure_boot', value: 'required' }])).statusCode,
      ).toBe(200);
      const r = await api.call('POST', '/compute/v2.1/servers', member.token, {
        server: { name: 'sb', imageRef: imageId, flavorRef: flavorId },
      });
      expect(r.status).toBe(400);
      expect(r.json.badRequest.message).toMatch(/not UEFI/);
      await patchImage(imageId, [{ op: 'remove', path: '/os_secure_boot' }]);
    });

    it('reconciles after a restart: marks vanished guests and kills orphans', async () => {
      await api.driver.define({
        id: 'orphan',
        name: 'o',
        vcpus: 1,
        memoryMiB: 64,
        machine: 'pc',
        firmware: { type: 'bios' },
        bootDisk: { imagePath: '/x', imageFormat: 'raw', sizeGiB: 0 },
      });
      api.driver.guests.delete(sid); // the guest's process died while the daemon was down
      const r = await api.platform.compute.servers.reconcile();
      expect(r.orphansKilled).toEqual(['orphan']);
      expect(r.vanished).toEqual([sid]);
      expect((await server(sid)).status).toBe('SHUTOFF');
      expect((await server(sid)).fault.message).toMatch(/QEMU process was gone when the daemon restarted/);
    });

    it('keeps images in use, deletes servers, then the image', async () => {
      expect((await api.call('DELETE', `/image/v2/images/${imageId}`, member.token)).status).toBe(409);
      expect((await api.call('DELETE', `/compute/v2.1/servers/${sid}`, other.token)).status).toBe(404);
      expect((await api.call('DELETE', `/compute/v2.1/servers/${sid}`, member.token)).status).toBe(204);
      await api.platform.compute.servers.settled(sid);
      expect((await api.call('GET', `/compute/v2.1/servers/${sid}`, member.token)).status).toBe(404);
      expect((await api.call('DELETE', `/image/v2/images/${imageId}`, member.token)).status).toBe(204);
    });
  });
});
