import { afterEach, describe, expect, it } from 'vitest';
import { compileRuleset, names } from '../../src/network/compile.js';
import { portDrops } from '../../src/network/counters.js';
import { loadDataplaneState } from '../../src/network/dataplane-state.js';
import { normaliseRule, ruleKey, tapName } from '../../src/network/model.js';
import { openStore, type Store } from '../../src/store/database.js';
import { type TestDb, testDb } from '../helpers/store.js';

/** From stored networks, ports and groups to the compiler's input (SQLite). */
describe('loadDataplaneState', () => {
  let db: TestDb | undefined;
  let store: Store | undefined;
  afterEach(async () => {
    await store?.close();
    await db?.drop();
  });

  it('reads local ports with zone, pairs, groups and quarantine; other ports become remote members', async () => {
    db = await testDb('sqlite');
    store = await openStore({ url: db.url });
    const now = new Date().toISOString();
    const x = store.db;
    await x
      .insertInto('networks')
      .values({
        id: 'n1',
        name: 'dmz',
        project_id: 'p',
        description: '',
        admin_state_up: 1,
        shared: 0,
        mtu: 1500,
        port_security_enabled: 1,
        zone: 'dmz',
        created_at: now,
        updated_at: now,
      })
      .execute();
    await x
      .insertInto('subnets')
      .values({
        id: 's1',
        name: 's',
        network_id: 'n1',
        project_id: 'p',
        description: '',
        ip_version: 4,
        cidr: '10.0.0.0/24',
        gateway_ip: '10.0.0.1',
        enable_dhcp: 1,
        allocation_pools: '[]',
        dns_nameservers: '[]',
        created_at: now,
        updated_at: now,
      })
      .execute();
    const port = (
      id: string,
      mac: string,
      owner: string,
      extra: { quarantined?: number; pairs?: string } = {},
    ) => ({
      id,
      name: '',
      network_id: 'n1',
      project_id: 'p',
      description: '',
      mac_address: mac,
      device_id: owner ? 'server' : '',
      device_owner: owner,
      admin_state_up: 1,
      port_security_enabled: 1,
      allowed_address_pairs: extra.pairs ?? '[]',
      quarantined: extra.quarantined ?? 0,
      created_at: now,
      updated_at: now,
    });
    await x
      .insertInto('ports')
      .values([
        port('11111111-aaaa-bbbb-cccc-000000000001', 'fa:16:3e:00:00:01', 'compute:nova', {
          quarantined: 1,
          pairs: JSON.stringify([{ ip_address: '10.0.5.0/24', mac_address: 'fa:16:3e:00:00:01' }]),
        }),
        port('11111111-aaaa-bbbb-cccc-000000000002', 'fa:16:3e:00:00:02', ''),
      ])
      .execute();
    await x
      .insertInto('port_ips')
      .values([
        { port_id: '11111111-aaaa-bbbb-cccc-000000000001', subnet_id: 's1', ip_address: '10.0.0.5' },
        { port_id: '11111111-aaaa-bbbb-cccc-000000000002', subnet_id: 's1', ip_address: '10.0.0.6' },
      ])
      .execute();
    await x
      .insertInto('security_groups')
      .values({
        id: 'g',
        name: 'web',
        project_id: 'p',
        description: '',
        stateful: 1,
        created_at: now,
        updated_at: now,
      })
      .execute();
    const r = normaliseRule({
      direction: 'ingress',
      protocol: 'tcp',
      port_range_min: 443,
      remote_group_id: 'g',
    });
    await x
      .insertInto('security_group_rules')
      .values({
        id: 'r1',
        security_group_id: 'g',
        project_id: 'p',
        direction: r.direction,
        ethertype: r.ethertype,
        protocol: r.protocol,
        port_range_min: r.portRangeMin,
        port_range_max: r.portRangeMax,
        remote_ip_prefix: r.remoteIpPrefix,
        remote_group_id: r.remoteGroupId,
        description: '',
        rule_key: ruleKey(r),
        created_at: now,
      })
      .execute();
    await x
      .insertInto('port_security_groups')
      .values([
        { port_id: '11111111-aaaa-bbbb-cccc-000000000001', security_group_id: 'g' },
        { port_id: '11111111-aaaa-bbbb-cccc-000000000002', security_group_id: 'g' },
      ])
      .execute();

    const state = await loadDataplaneState(store);
    expect(state.ports).toEqual([
      {
        id: '11111111-aaaa-bbbb-cccc-000000000001',
        device: tapName('11111111-aaaa-bbbb-cccc-000000000001'),
        mac: 'fa:16:3e:00:00:01',
        ips: ['10.0.0.5'],
        allowedAddressPairs: [{ ip: '10.0.5.0/24', mac: 'fa:16:3e:00:00:01' }],
        portSecurity: true,
        groupIds: ['g'],
        zone: 'dmz',
        quarantined: true,
        network: 'n1',
      },
    ]);
    expect(state.groups).toEqual([{ id: 'g', stateful: true, rules: [r], remoteMembers: ['10.0.0.6'] }]);
    const rs = compileRuleset({ table: 'bulwark', ...state });
    const set = rs.nftables.flatMap((c) =>
      'add' in c && 'set' in c.add && c.add.set.name === names.groupSet('g', 4) ? [c.add.set] : [],
    );
    expect(set[0]?.elem).toEqual(['10.0.0.5', '10.0.0.6', { prefix: { addr: '10.0.5.0', len: 24 } }]);
    // Counter readings fold back into per-port drops.
    const id = '11111111-aaaa-bbbb-cccc-000000000001';
    const k = id.replaceAll('-', '');
    expect(
      portDrops(
        [
          { family: 'inet', name: `p_${k}_ingress`, packets: 4, bytes: 1 },
          { family: 'arp', name: `p_${k}_arp`, packets: 2, bytes: 1 },
        ],
        [id, 'other'],
      ),
    ).toEqual(new Map([[id, { ingress: 4, egress: 0, spoof: 0, zone: 0, arp: 2 }]]));
  });
});
