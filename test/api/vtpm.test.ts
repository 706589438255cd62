import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { HostCapabilities } from '../../src/compute/properties.js';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { waitFor } from '../helpers/guests.js';
import { dialects } from '../helpers/store.js';
import { vtpmAudit } from '../helpers/tpm.js';

/**
 * vTPM key lifecycle and the Secure Boot policy through the API (fake
 * hypervisor, real key manager): refusals first, then the key made at build,
 * read for every start, never shown, destroyed with the server; fail closed.
 */
describe.each(dialects())('vTPM and Secure Boot policy on %s (fake hypervisor)', (dialect) => {
  let api: TestApi;
  let member: { token: string; projectId: string };
  let flavorId: string;
  let imageId: string;

  const server = async (id: string) =>
    (await api.call('GET', `/compute/v2.1/servers/${id}`, member.token)).json.server;
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
  const extraSpecs = (body: Record<string, string>, flavor = flavorId) =>
    api.call('POST', `/compute/v2.1/flavors/${flavor}/os-extra_specs`, undefined, { extra_specs: body });
  const patchImage = (ops: unknown[]) =>
    api.app.inject({
      method: 'PATCH',
      url: `/image/v2/images/${imageId}`,
      headers: {
        'x-auth-token': member.token,
        'content-type': 'application/openstack-images-v2.1-json-patch',
      },
      payload: JSON.stringify(ops),
    });
  const create = async (name: string, flavor = flavorId) => {
    const r = await api.call('POST', '/compute/v2.1/servers', member.token, {
      server: { name, imageRef: imageId, flavorRef: flavor },
    });
    return r;
  };
  const row = (id: string) =>
    api.store.db.selectFrom('servers').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
  const capabilities = (): HostCapabilities =>
    (api.platform.compute.servers as unknown as { host: { capabilities: HostCapabilities } }).host
      .capabilities;

  beforeAll(async () => {
    api = await startTestApi(dialect);
    member = await api.persona('vtpm-a', 'vtpm-member', 'member');
    ({ flavorId, imageId } = await api.bootable(member.token, 'vtpm'));
  });
  afterAll(async () => api?.close());

  it('refuses unknown TPM values at flavor set and image set, changing nothing', async () => {
    expect((await extraSpecs({ 'hw:tpm_model': 'tpm-spapr' })).status).toBe(400);
    expect((await extraSpecs({ 'hw:tpm_version': '3.0' })).status).toBe(400);
    expect(
      (await api.call('GET', `/compute/v2.1/flavors/${flavorId}/os-extra_specs`)).json.extra_specs,
    ).toEqual({});
    expect((await patchImage([{ op: 'add', path: '/hw_tpm_model', value: 'tpm-xyz' }])).statusCode).toBe(400);
    expect((await patchImage([{ op: 'add', path: '/hw_tpm_version', value: '1.3' }])).statusCode).toBe(400);
    const img = (await api.call('GET', `/image/v2/images/${imageId}`, member.token)).json;
    expect(img.hw_tpm_model).toBeUndefined();
    expect(img.hw_tpm_version).toBeUndefined();
  });

  it('refuses at server create when flavor and image disagree, creating nothing', async () => {
    expect((await extraSpecs({ 'hw:tpm_model': 'tpm-crb', 'hw:tpm_version': '2.0' })).status).toBe(200);
    expect((await patchImage([{ op: 'add', path: '/hw_tpm_model', value: 'tpm-tis' }])).statusCode).toBe(200);
    const before = (await api.call('GET', '/compute/v2.1/servers', member.token)).json.servers.length;
    const r = await create('disagree');
    expect(r.status).toBe(400);
    expect(r.json.badRequest.message).toMatch(
      /hw:tpm_model=tpm-crb conflicts with image hw_tpm_model=tpm-tis/,
    );
    expect((await api.call('GET', '/compute/v2.1/servers', member.token)).json.servers.length).toBe(before);
    expect((await patchImage([{ op: 'replace', path: '/hw_tpm_model', value: 'tpm-crb' }])).statusCode).toBe(
      200,
    );
  });

  it('fails closed: key manager down at build = ERROR with a fault, no guest, no unencrypted TPM', async () => {
    const spy = vi.spyOn(api.platform.keys, 'createKey').mockRejectedValueOnce(new Error('KEK unavailable'));
    const r = await create('no-keys');
    expect(r.status).toBe(202);
    const s = await until(r.json.server.id, 'ERROR');
    spy.mockRestore();
    expect(s.fault.message).toMatch(/vTPM state could not be created in the key manager: KEK unavailable/);
    expect(api.driver.guests.has(r.json.server.id)).toBe(false);
    expect((await row(r.json.server.id)).tpm_secret_id).toBeNull();
    await api.call('DELETE', `/compute/v2.1/servers/${r.json.server.id}`, member.token);
  });

  it('fails closed: a key that cannot be read at start = ERROR', async () => {
    const spy = vi.spyOn(api.platform.keys, 'readKeyFor').mockRejectedValueOnce(new Error('sealed'));
    const r = await create('unreadable');
    const s = await until(r.json.server.id, 'ERROR');
    spy.mockRestore();
    expect(s.fault.message).toMatch(/sealed/);
    await api.call('DELETE', `/compute/v2.1/servers/${r.json.server.id}`, member.token);
    await api.platform.compute.servers.settled(r.json.server.id);
  });

  let sid: string;
  let secretId: string;
  it('a vTPM server gets a 256-bit key owned by its project; only its id is stored, never shown', async () => {
    const r = await create('vtpm');
    expect(r.status).toBe(202);
    sid = r.json.server.id;
    const s = await until(sid, 'ACTIVE');
    const rec = await row(sid);
    expect(rec.tpm_secret_id).toMatch(/^[0-9a-f-]{36}$/);
    secretId = rec.tpm_secret_id as string;
    const key = await api.platform.keys.readKeyFor(member.projectId, secretId);
    expect(key.length).toBe(32);
    expect(api.driver.tpmKeysSeen.get(sid)).toBe(32);
    expect(api.driver.guests.get(sid)?.spec.tpm).toMatchObject({ version: '2.0', model: 'tpm-crb' });
    // Neither the key nor its id in what the owner sees, nor in the stored guest plan.
    const shown = JSON.stringify(s);
    expect(shown).not.toContain(secretId);
    expect(shown).not.toContain(key.toString('hex'));
    expect(shown).not.toContain(key.toString('base64'));
    expect(rec.guest).not.toContain(key.toString('base64'));
    // Another project cannot read it.
    const other = await api.persona('vtpm-b', 'vtpm-other', 'member');
    await expect(api.platform.keys.readKeyFor(other.projectId, secretId)).rejects.toThrow();
  });

  it('every start reads the key again (in memory); stop/start keeps the same secret', async () => {
    const reads = vi.spyOn(api.platform.keys, 'readKeyFor');
    await api.call('POST', `/compute/v2.1/servers/${sid}/action`, member.token, { 'os-stop': null });
    await until(sid, 'SHUTOFF');
    await api.call('POST', `/compute/v2.1/servers/${sid}/action`, member.token, { 'os-start': null });
    await until(sid, 'ACTIVE');
    expect(reads).toHaveBeenCalledWith(member.projectId, secretId);
    reads.mockRestore();
    expect((await row(sid)).tpm_secret_id).toBe(secretId);
  });

  it('deleting the server destroys its vTPM key', async () => {
    expect((await api.call('DELETE', `/compute/v2.1/servers/${sid}`, member.token)).status).toBe(204);
    await api.platform.compute.servers.settled(sid);
    await expect(api.platform.keys.readKeyFor(member.projectId, secretId)).rejects.toThrow();
    expect((await row(sid)).tpm_secret_id).toBeNull();
    expect(api.driver.guests.has(sid)).toBe(false);
  });

  it('swtpm dying (TPM_LOST): SHUTOFF with a fault, audited, restarted by itself; past the budget ERROR', async () => {
    const r = await create('tpm-lost');
    const id = r.json.server.id;
    await until(id, 'ACTIVE');
    const servers = api.platform.compute.servers;
    servers.vtpmRestarts = 1;
    try {
      api.driver.emit(id, 'TPM_LOST', { reason: 'it ended with signal SIGKILL' });
      const down = await waitFor(
        'SHUTOFF',
        async () => ((await server(id)).status === 'SHUTOFF' ? server(id) : undefined),
        5000,
        20,
      );
      expect(down['OS-EXT-STS:task_state']).toBe('powering-on');
      expect(down.fault.message).toMatch(/swtpm\) exited .*signal SIGKILL.*automatic restart 1 of 1/);
      // Busy until the restart: a user's action is refused meanwhile.
      const start = await api.call('POST', `/compute/v2.1/servers/${id}/action`, member.token, {
        'os-start': null,
      });
      expect(start.status).toBe(409);
      const back = await waitFor(
        'ACTIVE after the restart',
        async () => {
          const s = await server(id);
          return s.status === 'ACTIVE' && s['OS-EXT-STS:task_state'] === null ? s : undefined;
        },
        30_000,
        100,
      );
      expect(back.fault).toBeUndefined();
      expect(api.driver.guests.get(id)?.state).toBe('running');

      api.driver.emit(id, 'TPM_LOST', { reason: 'it ended with status 1' });
      const failed = await until(id, 'ERROR');
      expect(failed.fault.message).toMatch(
        /used up \(1 an hour\).*openstack server stop.*openstack server start/,
      );
      expect(api.driver.guests.get(id)?.state).toBe('shutoff');
      // The refusal is audited right after the state change.
      const audit = await waitFor(
        'five vTPM audit records',
        async () => {
          const rows = await vtpmAudit(api.store, id);
          return rows.length >= 5 ? rows : undefined;
        },
        5000,
        20,
      );
      expect(audit).toEqual([
        { action: 'server:vtpm_lost', outcome: 'failure' },
        { action: 'server:vtpm_restart', outcome: 'success' },
        { action: 'server:vtpm_recovered', outcome: 'success' },
        { action: 'server:vtpm_lost', outcome: 'failure' },
        { action: 'server:vtpm_restarts_exhausted', outcome: 'failure' },
      ]);
      // A loss reported for a server that is not running changes nothing.
      api.driver.emit(id, 'TPM_LOST', { reason: 'late' });
      await new Promise((res) => setTimeout(res, 200));
      expect((await server(id)).status).toBe('ERROR');
    } finally {
      servers.vtpmRestarts = 3;
    }
  });

  describe('Secure Boot', () => {
    let plainFlavor: string;
    beforeAll(async () => {
      plainFlavor = (
        await api.call('POST', '/compute/v2.1/flavors', undefined, {
          flavor: { name: 'sb-plain', ram: 256, vcpus: 1, disk: 1 },
        })
      ).json.flavor.id;
      const r = await patchImage([
        { op: 'remove', path: '/hw_tpm_model' },
        { op: 'add', path: '/hw_firmware_type', value: 'uefi' },
        { op: 'add', path: '/hw_machine_type', value: 'q35' },
        { op: 'add', path: '/os_secure_boot', value: 'required' },
      ]);
      expect(r.statusCode).toBe(200);
    });

    it('refuses required on a pc machine (400) and bad values at image set', async () => {
      expect((await patchImage([{ op: 'add', path: '/os_secure_boot', value: 'maybe' }])).statusCode).toBe(
        400,
      );
      await patchImage([{ op: 'replace', path: '/hw_machine_type', value: 'pc' }]);
      const r = await create('sb-pc', plainFlavor);
      expect(r.status).toBe(400);
      expect(r.json.badRequest.message).toMatch(/q35/);
      await patchImage([{ op: 'replace', path: '/hw_machine_type', value: 'q35' }]);
    });

    it('required on a host that cannot enforce it: ERROR with a clear fault, never booted', async () => {
      const caps = capabilities();
      caps.secureBoot = false;
      try {
        const r = await create('sb-nohost', plainFlavor);
        expect(r.status).toBe(202);
        const s = await until(r.json.server.id, 'ERROR');
        expect(s.fault.message).toMatch(/Secure Boot is not supported by host/);
        expect(s.fault.message).toMatch(/not booted without it/);
        expect(api.driver.guests.has(r.json.server.id)).toBe(false);
      } finally {
        caps.secureBoot = true;
      }
    });

    it('required boots with Secure Boot on; optional follows the host; disabled is plain OVMF', async () => {
      const r = await create('sb-on', plainFlavor);
      await until(r.json.server.id, 'ACTIVE');
      expect(api.driver.guests.get(r.json.server.id)?.spec).toMatchObject({
        machine: 'q35',
        firmware: { type: 'uefi', secureBoot: true },
      });
      await patchImage([{ op: 'replace', path: '/os_secure_boot', value: 'disabled' }]);
      const d = await create('sb-off', plainFlavor);
      await until(d.json.server.id, 'ACTIVE');
      expect(api.driver.guests.get(d.json.server.id)?.spec.firmware).toEqual({
        type: 'uefi',
        secureBoot: false,
      });
      await patchImage([{ op: 'replace', path: '/os_secure_boot', value: 'required' }]);
    });

    it('firmware refusing the image (SECURE_BOOT_DENIED) puts the server in ERROR saying so', async () => {
      const r = await create('sb-denied', plainFlavor);
      const id = r.json.server.id;
      await until(id, 'ACTIVE');
      api.driver.emit(id, 'SECURE_BOOT_DENIED');
      const s = await until(id, 'ERROR');
      expect(s.fault.message).toMatch(/Secure Boot refused the image's boot loader/);
    });
  });
});
