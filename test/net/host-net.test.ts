import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runNet } from '../../src/host/net/exec.js';
import {
  createTap,
  deleteLink,
  linkExists,
  listLinks,
  plugPort,
  prepareRouter,
  unplugPort,
} from '../../src/host/net/links.js';
import {
  applyCommands,
  applyRuleset,
  deleteTables,
  listTables,
  readCounters,
} from '../../src/host/net/nft.js';
import { compileRuleset, type PortState } from '../../src/network/compile.js';
import { normaliseRule, tapName } from '../../src/network/model.js';
import { hasTools, isRoot } from './topology.js';

/** Host-side effects (taps, routes, nft tables) inside a private namespace. */
describe.skipIf(!(isRoot() && hasTools()))('host networking primitives (netns)', () => {
  const ns = `bwt-host-${randomBytes(3).toString('hex')}`;
  const opts = { netns: ns };
  const portId = randomBytes(16).toString('hex');
  const tap = tapName(portId);

  beforeAll(async () => {
    await runNet('ip', ['netns', 'add', ns]);
  });
  afterAll(async () => {
    await runNet('ip', ['netns', 'del', ns]).catch(() => {});
  });

  it('creates a tap the VM user owns, routes the port to it, and removes it', async () => {
    expect(tap).toHaveLength(14);
    await createTap(tap, { ...opts, uid: 65534, gid: 65534, vnetHdr: true });
    expect(await runNet('ip', ['tuntap', 'show'], opts)).toMatch(
      new RegExp(`${tap}: tap .*user 65534 group 65534`),
    );
    expect(await linkExists(tap, opts)).toBe(true);
    expect(await listLinks('tap', opts)).toEqual([tap]);
    const gw = await prepareRouter(['10.91.0.1', 'fd00:91::1'], opts);
    expect(await runNet('ip', ['addr', 'show', 'dev', gw], opts)).toContain('10.91.0.1/32');
    await plugPort({ ...opts, device: tap, ips: ['10.91.0.5', 'fd00:91::5'] });
    expect(await runNet('ip', ['route', 'show', 'dev', tap], opts)).toContain('10.91.0.5');
    expect(await runNet('ip', ['-6', 'route', 'show', 'dev', tap], opts)).toContain('fd00:91::5');
    expect((await runNet('sysctl', ['-n', `net.ipv4.conf.${tap}.proxy_arp`], opts)).trim()).toBe('1');
    expect((await runNet('sysctl', ['-n', `net.ipv4.neigh.${tap}.proxy_delay`], opts)).trim()).toBe('0');
    expect((await runNet('sysctl', ['-n', `net.ipv6.conf.${tap}.accept_ra`], opts)).trim()).toBe('0');
    await unplugPort({ ...opts, device: tap, ips: ['10.91.0.5', 'fd00:91::5'] });
    expect(await runNet('ip', ['route', 'show', 'dev', tap], opts)).not.toContain('10.91.0.5');
    expect(await deleteLink(tap, opts)).toBe(true);
    expect(await deleteLink(tap, opts)).toBe(false);
    expect(await linkExists(tap, opts)).toBe(false);
    await expect(createTap('this-name-is-too-long', { ...opts, uid: 1 })).rejects.toThrow(
      /not a valid interface name/,
    );
  });

  it('refuses a broken batch as a whole and keeps the running ruleset; deletes both tables', async () => {
    const port: PortState = {
      id: portId,
      device: tap,
      mac: 'fa:16:3e:00:00:05',
      ips: ['10.91.0.5'],
      allowedAddressPairs: [],
      portSecurity: true,
      groupIds: ['g'],
    };
    const rs = compileRuleset({
      table: 'bwtest',
      ports: [port],
      groups: [{ id: 'g', stateful: true, rules: [normaliseRule({ direction: 'egress' })] }],
    });
    await applyRuleset(rs, opts);
    const before = await runNet('nft', ['list', 'ruleset'], opts);
    expect((await listTables(opts)).map((t) => `${t.family} ${t.name}`).sort()).toEqual([
      'arp bwtest',
      'inet bwtest',
    ]);
    // A batch whose last command fails (a rule jumping to a chain that does not exist) changes nothing.
    const broken = {
      nftables: [
        ...rs.nftables,
        {
          add: {
            rule: {
              family: 'inet' as const,
              table: 'bwtest',
              chain: 'forward',
              expr: [{ jump: { target: 'nope' } }],
            },
          },
        },
      ],
    };
    await expect(applyRuleset(broken, opts)).rejects.toThrow(/nft/);
    expect(await runNet('nft', ['list', 'ruleset'], opts)).toBe(before);
    await expect(
      applyCommands(
        [{ add: { element: { family: 'inet', table: 'bwtest', name: 'no_such_set', elem: ['x'] } } }],
        opts,
      ),
    ).rejects.toThrow();
    expect(await runNet('nft', ['list', 'ruleset'], opts)).toBe(before);
    const counters = await readCounters('bwtest', opts);
    expect(counters.some((c) => c.family === 'arp' && c.name === 'quarantine')).toBe(true);
    expect(counters.every((c) => c.packets === 0)).toBe(true);
    await deleteTables('bwtest', opts);
    expect(await listTables(opts)).toEqual([]);
    // Deleting what is not there is not an error.
    await deleteTables('bwtest', opts);
  });
});
