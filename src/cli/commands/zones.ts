import type { Command } from 'commander';
import type { BulwarkClient } from '../client.js';
import { withClient, withFormat } from '../common.js';
import { printList, printObject } from '../output.js';

/**
 * `bulwark zone ...`: security zones and the inter-zone policy
 * (`/network/v2.0/bulwark-zones`, `/network/v2.0/bulwark-zone-rules`).
 */

type Obj = Record<string, unknown>;
interface ZoneRule {
  id: string;
  from_zone: string;
  to_zone: string;
  protocol: string;
  port_range_min: number | null;
  port_range_max: number | null;
  description: string;
}

const globals = (cmd: Command) =>
  cmd.optsWithGlobals<{ osCloud?: string; format: 'table' | 'json' | 'value' }>();
const Z = '/v2.0/bulwark-zones';
const R = '/v2.0/bulwark-zone-rules';
const enc = encodeURIComponent;

/** `tcp/443`, `tcp/8000-8090`, `icmp`, `any`. */
export const ruleSummary = (r: ZoneRule): string =>
  r.port_range_min === null
    ? r.protocol
    : `${r.protocol}/${r.port_range_min}${r.port_range_max === r.port_range_min ? '' : `-${r.port_range_max}`}`;

/** `--dst-port 443` or `--dst-port 8000:8090` (as `openstack security group rule create`). */
export function parsePortRange(v: string): { port_range_min: number; port_range_max: number } {
  const m = /^(\d{1,5})(?:[:-](\d{1,5}))?$/.exec(v.trim());
  if (!m) throw new Error(`--dst-port ${v} is not PORT or MIN:MAX`);
  const lo = Number(m[1]);
  return { port_range_min: lo, port_range_max: m[2] === undefined ? lo : Number(m[2]) };
}

async function rulesOf(c: BulwarkClient, query = ''): Promise<ZoneRule[]> {
  return (await c.request<{ bulwark_zone_rules: ZoneRule[] }>('network', 'GET', `${R}${query}`))
    .bulwark_zone_rules;
}

export function registerZoneCommands(program: Command): void {
  const zone = program
    .command('zone')
    .description('Security zones: isolated domains of networks and the admin policy between them');

  withFormat(zone.command('list').description('List zones and who may reach them')).action(
    async (_o, cmd: Command) => {
      const g = globals(cmd);
      await withClient(g, async (c) => {
        const zones = (await c.request<{ bulwark_zones: Obj[] }>('network', 'GET', Z)).bulwark_zones;
        const rules = await rulesOf(c);
        printList(
          g.format,
          ['name', 'host_access', 'reachable_from', 'description'],
          zones.map((z) => ({
            ...z,
            reachable_from: rules
              .filter((r) => r.to_zone === z.name)
              .map((r) => `${r.from_zone} ${ruleSummary(r)}`)
              .join(', '),
          })),
        );
      });
    },
  );

  withFormat(zone.command('show <name>').description('Show a zone with its rules in and out')).action(
    async (name: string, _o, cmd: Command) => {
      const g = globals(cmd);
      await withClient(g, async (c) => {
        const z = (await c.request<{ bulwark_zone: Obj }>('network', 'GET', `${Z}/${enc(name)}`))
          .bulwark_zone;
        const rules = await rulesOf(c);
        printObject(g.format, {
          ...z,
          allowed_in: rules
            .filter((r) => r.to_zone === name)
            .map((r) => `${r.from_zone} ${ruleSummary(r)} (${r.id})`),
          allowed_out: rules
            .filter((r) => r.from_zone === name)
            .map((r) => `${r.to_zone} ${ruleSummary(r)} (${r.id})`),
        });
      });
    },
  );

  withFormat(
    zone
      .command('create <name>')
      .description('Create a zone (admin)')
      .option('--description <text>', 'description')
      .option('--host-access', 'ports may reach host services such as DNS and ping (default)')
      .option('--no-host-access', 'ports reach the host for DHCP only'),
  ).action(async (name: string, o: { description?: string; hostAccess?: boolean }, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) => {
      const r = await c.request<{ bulwark_zone: Obj }>('network', 'POST', Z, {
        bulwark_zone: {
          name,
          ...(o.description !== undefined ? { description: o.description } : {}),
          ...(o.hostAccess !== undefined ? { host_access: o.hostAccess } : {}),
        },
      });
      printObject(g.format, r.bulwark_zone);
    });
  });

  zone
    .command('set <name>')
    .description('Change a zone (admin)')
    .option('--description <text>', 'description')
    .option('--host-access', 'ports may reach host services')
    .option('--no-host-access', 'ports reach the host for DHCP only')
    .action(async (name: string, o: { description?: string; hostAccess?: boolean }, cmd: Command) => {
      if (o.description === undefined && o.hostAccess === undefined)
        throw new Error('Nothing to change: give --description, --host-access or --no-host-access.');
      await withClient(globals(cmd), async (c) => {
        await c.request('network', 'PUT', `${Z}/${enc(name)}`, {
          bulwark_zone: {
            ...(o.description !== undefined ? { description: o.description } : {}),
            ...(o.hostAccess !== undefined ? { host_access: o.hostAccess } : {}),
          },
        });
      });
    });

  zone
    .command('delete <name...>')
    .description('Delete zones no network uses (admin); their rules go with them')
    .action(async (names: string[], _o, cmd: Command) => {
      await withClient(globals(cmd), async (c) => {
        for (const n of names) await c.request('network', 'DELETE', `${Z}/${enc(n)}`);
      });
    });

  const rule = zone.command('rule').description('Inter-zone rules: which zone may open connections to which');
  withFormat(
    rule
      .command('list')
      .description('List inter-zone rules')
      .option('--from <zone>', 'only rules from this zone')
      .option('--to <zone>', 'only rules into this zone'),
  ).action(async (o: { from?: string; to?: string }, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) => {
      const q = new URLSearchParams({
        ...(o.from ? { from_zone: o.from } : {}),
        ...(o.to ? { to_zone: o.to } : {}),
      }).toString();
      printList(
        g.format,
        ['id', 'from_zone', 'to_zone', 'protocol', 'port_range_min', 'port_range_max', 'description'],
        (await rulesOf(c, q ? `?${q}` : '')) as unknown as Obj[],
      );
    });
  });
  withFormat(
    rule
      .command('add')
      .description('Let one zone open connections to another (admin); replies flow back, nothing else')
      .requiredOption('--from <zone>', 'zone that opens the connections')
      .requiredOption('--to <zone>', 'zone that accepts them')
      .option('--protocol <proto>', 'any, tcp, udp, icmp or an IP protocol number', 'any')
      .option('--dst-port <port>', 'destination port or MIN:MAX (tcp and udp)')
      .option('--description <text>', 'description'),
  ).action(
    async (
      o: { from: string; to: string; protocol: string; dstPort?: string; description?: string },
      cmd: Command,
    ) => {
      const g = globals(cmd);
      const proto = /^\d+$/.test(o.protocol) ? Number(o.protocol) : o.protocol;
      const ports = o.dstPort === undefined ? {} : parsePortRange(o.dstPort);
      await withClient(g, async (c) => {
        const r = await c.request<{ bulwark_zone_rule: Obj }>('network', 'POST', R, {
          bulwark_zone_rule: {
            from_zone: o.from,
            to_zone: o.to,
            protocol: proto,
            ...ports,
            ...(o.description !== undefined ? { description: o.description } : {}),
          },
        });
        printObject(g.format, r.bulwark_zone_rule);
      });
    },
  );
  rule
    .command('remove <id...>')
    .description('Remove inter-zone rules by id (admin)')
    .action(async (ids: string[], _o, cmd: Command) => {
      await withClient(globals(cmd), async (c) => {
        for (const id of ids) await c.request('network', 'DELETE', `${R}/${enc(id)}`);
      });
    });
}
