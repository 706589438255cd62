import { type Command, Option } from 'commander';
import { ApiError, type BulwarkClient } from '../client.js';
import { findByNameOrId, withClient, withFormat } from '../common.js';
import { printList, printObject } from '../output.js';
import { parsePortRange } from './zones.js';

/**
 * `bulwark network|subnet|port|router|security group ...` and
 * `bulwark server add|remove security group`: the openstack CLI's networking
 * commands, with its names and options, against the Neutron-compatible API
 * (`/network/v2.0/...`). Every reference takes a name or an ID.
 */

type Obj = { id: string; name?: string } & Record<string, unknown>;
type Fmt = 'table' | 'json' | 'value';
const globals = (cmd: Command) => cmd.optsWithGlobals<{ osCloud?: string; format: Fmt }>();
const collect = (v: string, acc: string[]) => [...acc, v];
const enc = encodeURIComponent;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A Neutron collection: its path under the network endpoint, and its JSON keys. */
interface Kind {
  path: string;
  one: string;
  many: string;
  label: string;
}
const NETWORK: Kind = { path: '/v2.0/networks', one: 'network', many: 'networks', label: 'network' };
const SUBNET: Kind = { path: '/v2.0/subnets', one: 'subnet', many: 'subnets', label: 'subnet' };
const PORT: Kind = { path: '/v2.0/ports', one: 'port', many: 'ports', label: 'port' };
const ROUTER: Kind = { path: '/v2.0/routers', one: 'router', many: 'routers', label: 'router' };
const GROUP: Kind = {
  path: '/v2.0/security-groups',
  one: 'security_group',
  many: 'security_groups',
  label: 'security group',
};
const RULE: Kind = {
  path: '/v2.0/security-group-rules',
  one: 'security_group_rule',
  many: 'security_group_rules',
  label: 'security group rule',
};

const projectOf = (c: BulwarkClient): string | undefined =>
  (c.tokenInfo.project as { id?: string } | undefined)?.id;

/**
 * Finds a resource by ID, then by name. A name several resources share is
 * refused, unless exactly one of them is in the caller's own project (an
 * admin sees every project's `default` security group).
 */
export async function find(c: BulwarkClient, kind: Kind, ref: string): Promise<Obj> {
  if (UUID.test(ref)) {
    try {
      const one = await c.request<Record<string, Obj>>('network', 'GET', `${kind.path}/${enc(ref)}`);
      if (one[kind.one]) return one[kind.one] as Obj;
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 404) throw e;
    }
  }
  const list = await c.request<Record<string, Obj[]>>('network', 'GET', `${kind.path}?name=${enc(ref)}`);
  let matches = (list[kind.many] ?? []).filter((x) => x.name === ref);
  if (matches.length > 1) {
    const own = matches.filter((x) => x.project_id === projectOf(c));
    if (own.length === 1) matches = own;
  }
  if (matches.length === 0) throw new Error(`No ${kind.label} with a name or ID of '${ref}' exists.`);
  if (matches.length > 1)
    throw new Error(`More than one ${kind.label} exists with the name '${ref}'; use the ID.`);
  return matches[0] as Obj;
}

const list = async (c: BulwarkClient, kind: Kind, query = ''): Promise<Obj[]> =>
  (await c.request<Record<string, Obj[]>>('network', 'GET', `${kind.path}${query}`))[kind.many] ?? [];

/** `set`: refuses an empty change, then PUTs only the given fields. */
async function update(cmd: Command, kind: Kind, ref: string, body: Record<string, unknown>, flags: string) {
  nothingToChange(body, flags);
  await withClient(globals(cmd), async (c) => {
    const x = await find(c, kind, ref);
    await c.request('network', 'PUT', `${kind.path}/${x.id}`, { [kind.one]: body });
  });
}

/** `show <ref>` for a Neutron collection. */
function showCommand(parent: Command, arg: string, kind: Kind, description: string): void {
  withFormat(parent.command(`show <${arg}>`).description(description)).action(
    async (ref: string, _o, cmd: Command) => {
      const g = globals(cmd);
      await withClient(g, async (c) => printObject(g.format, await find(c, kind, ref)));
    },
  );
}

/** `delete <ref...>` for a Neutron collection: names or IDs, deleted one by one. */
function deleteCommand(parent: Command, arg: string, kind: Kind, description: string): void {
  parent
    .command(`delete <${arg}...>`)
    .description(description)
    .action(async (refs: string[], _o, cmd: Command) => {
      await withClient(globals(cmd), async (c) => {
        for (const r of refs)
          await c.request('network', 'DELETE', `${kind.path}/${(await find(c, kind, r)).id}`);
      });
    });
}

/** `--fixed-ip subnet=S,ip-address=IP` and the like: comma-separated KEY=VALUE with known keys. */
export function parseSpec(flag: string, v: string, keys: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of v.split(',')) {
    const i = part.indexOf('=');
    const k = i > 0 ? part.slice(0, i).trim() : '';
    if (!keys.includes(k))
      throw new Error(`--${flag} ${v}: expected ${keys.map((x) => `${x}=...`).join(',')}`);
    out[k] = part.slice(i + 1).trim();
  }
  return out;
}

/** Sub-command `name` of `parent`, created if no other module made it yet (`server`, `server add`...). */
function child(parent: Command, name: string, description: string): Command {
  return parent.commands.find((x) => x.name() === name) ?? parent.command(name).description(description);
}

/**
 * A `--no-...` flag that is its own boolean (`--no-security-group` → `noSecurityGroup: true`),
 * not commander's negation of the `--security-group` list, so both can be given in any order.
 */
function plainFlag(flags: string, description: string): Option {
  const o = new Option(flags, description);
  o.negate = false;
  return o;
}

/** Only the fields that were given. */
const defined = (o: Record<string, unknown>) =>
  Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));

function nothingToChange(body: Record<string, unknown>, flags: string): void {
  if (Object.keys(body).length === 0) throw new Error(`Nothing to change: give ${flags}.`);
}

const fixedIps = (p: Obj) =>
  ((p.fixed_ips as { ip_address: string; subnet_id: string }[] | undefined) ?? [])
    .map((f) => `ip_address='${f.ip_address}', subnet_id='${f.subnet_id}'`)
    .join('; ');

const ICMP_NAMES = new Set(['icmp', '1', 'ipv6-icmp', 'icmpv6', '58']);

/** `22:22` for ports, `type=8 code=0` for ICMP, empty for any. */
export function portRange(r: Obj): string {
  const lo = r.port_range_min as number | null;
  const hi = r.port_range_max as number | null;
  if (ICMP_NAMES.has(String(r.protocol))) {
    if (lo === null) return '';
    return hi === null ? `type=${lo}` : `type=${lo} code=${hi}`;
  }
  return lo === null ? '' : `${lo}:${hi ?? lo}`;
}

async function serverOf(c: BulwarkClient, ref: string): Promise<Obj> {
  return findByNameOrId<Obj>(c, 'compute', 'servers', 'server', ref);
}

function registerNetwork(program: Command): void {
  const network = program.command('network').description('Networks');
  withFormat(
    network
      .command('list')
      .description('List networks')
      .option('--external', 'only external networks (router:external)')
      .option('--internal', 'only internal networks'),
  ).action(async (o: { external?: boolean; internal?: boolean }, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) => {
      const rows = (await list(c, NETWORK)).filter(
        (n) =>
          (!o.external || n['router:external'] === true) && (!o.internal || n['router:external'] !== true),
      );
      printList(
        g.format,
        ['id', 'name', 'subnets', 'zone', 'router:external'],
        rows.map((n) => ({ ...n, subnets: ((n.subnets as string[]) ?? []).join(', ') })),
      );
    });
  });
  showCommand(network, 'network', NETWORK, 'Show a network');
  withFormat(
    network
      .command('create <name>')
      .description('Create a network')
      .option('--description <text>', 'description')
      .option('--zone <zone>', 'security zone (admin; default: default)')
      .option('--external', 'an external network routers may uplink to (admin)')
      .option('--internal', 'an ordinary tenant network (default)')
      .option('--share', 'shared with every project (admin)')
      .option('--no-share', 'not shared (default)')
      .option('--mtu <bytes>', 'MTU')
      .option('--enable-port-security', 'ports enforce security groups and anti-spoofing (default)')
      .option('--disable-port-security', "ports don't enforce security groups or anti-spoofing")
      .option('--no-port-security', 'same as --disable-port-security'),
  ).action(
    async (
      name: string,
      o: {
        description?: string;
        zone?: string;
        external?: boolean;
        internal?: boolean;
        share?: boolean;
        mtu?: string;
        enablePortSecurity?: boolean;
        disablePortSecurity?: boolean;
        portSecurity?: boolean;
      },
      cmd: Command,
    ) => {
      const g = globals(cmd);
      const off = o.disablePortSecurity === true || o.portSecurity === false;
      if (off && o.enablePortSecurity)
        throw new Error('Give only one of --enable- and --disable-port-security.');
      if (o.external && o.internal) throw new Error('Give only one of --external and --internal.');
      await withClient(g, async (c) => {
        const r = await c.request<{ network: Obj }>('network', 'POST', NETWORK.path, {
          network: defined({
            name,
            description: o.description,
            zone: o.zone,
            'router:external': o.external ? true : o.internal ? false : undefined,
            shared: o.share,
            mtu: o.mtu === undefined ? undefined : Number(o.mtu),
            port_security_enabled: off ? false : o.enablePortSecurity ? true : undefined,
          }),
        });
        printObject(g.format, r.network);
      });
    },
  );
  network
    .command('set <network>')
    .description('Change a network')
    .option('--name <name>', 'new name')
    .option('--description <text>', 'description')
    .option('--zone <zone>', 'move to a security zone (admin)')
    .option('--share', 'share with every project (admin)')
    .option('--no-share', 'stop sharing')
    .option('--enable', 'administratively up')
    .option('--disable', 'administratively down')
    .action(
      async (
        ref: string,
        o: {
          name?: string;
          description?: string;
          zone?: string;
          share?: boolean;
          enable?: boolean;
          disable?: boolean;
        },
        cmd: Command,
      ) => {
        const body = defined({
          name: o.name,
          description: o.description,
          zone: o.zone,
          shared: o.share,
          admin_state_up: o.enable ? true : o.disable ? false : undefined,
        });
        await update(
          cmd,
          NETWORK,
          ref,
          body,
          '--name, --description, --zone, --share/--no-share or --enable/--disable',
        );
      },
    );
  deleteCommand(network, 'network', NETWORK, 'Delete networks');
}

function registerSubnet(program: Command): void {
  const subnet = program.command('subnet').description('Subnets');
  withFormat(
    subnet.command('list').description('List subnets').option('--network <network>', 'only this network’s'),
  ).action(async (o: { network?: string }, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) => {
      const q = o.network ? `?network_id=${(await find(c, NETWORK, o.network)).id}` : '';
      printList(g.format, ['id', 'name', 'network_id', 'cidr'], await list(c, SUBNET, q));
    });
  });
  showCommand(subnet, 'subnet', SUBNET, 'Show a subnet');
  withFormat(
    subnet
      .command('create <name>')
      .description('Create a subnet')
      .requiredOption('--network <network>', 'network name or ID')
      .requiredOption('--subnet-range <cidr>', 'the subnet, e.g. 10.0.0.0/24')
      .option('--ip-version <4|6>', 'IP version (default: from --subnet-range)')
      .option('--gateway <ip>', "gateway address, 'auto' (first address, default) or 'none'")
      .option('--dhcp', 'serve DHCP (default)')
      .option('--no-dhcp', "don't serve DHCP")
      .option('--dns-nameserver <ip>', 'DNS server handed out by DHCP (repeatable)', collect, [])
      .option('--allocation-pool <start=IP,end=IP>', 'addresses ports get (repeatable)', collect, [])
      .option('--description <text>', 'description'),
  ).action(
    async (
      name: string,
      o: {
        network: string;
        subnetRange: string;
        ipVersion?: string;
        gateway?: string;
        dhcp?: boolean;
        dnsNameserver: string[];
        allocationPool: string[];
        description?: string;
      },
      cmd: Command,
    ) => {
      const g = globals(cmd);
      if (o.ipVersion !== undefined && o.ipVersion !== '4' && o.ipVersion !== '6')
        throw new Error(`--ip-version ${o.ipVersion} is not 4 or 6`);
      const version = o.ipVersion ? Number(o.ipVersion) : o.subnetRange.includes(':') ? 6 : 4;
      const pools = o.allocationPool.map((p) => {
        const s = parseSpec('allocation-pool', p, ['start', 'end']);
        if (!s.start || !s.end) throw new Error(`--allocation-pool ${p}: give both start= and end=`);
        return { start: s.start, end: s.end };
      });
      await withClient(g, async (c) => {
        const net = await find(c, NETWORK, o.network);
        const r = await c.request<{ subnet: Obj }>('network', 'POST', SUBNET.path, {
          subnet: defined({
            name,
            network_id: net.id,
            ip_version: version,
            cidr: o.subnetRange,
            gateway_ip:
              o.gateway === undefined || o.gateway === 'auto'
                ? undefined
                : o.gateway === 'none'
                  ? null
                  : o.gateway,
            enable_dhcp: o.dhcp,
            dns_nameservers: o.dnsNameserver.length ? o.dnsNameserver : undefined,
            allocation_pools: pools.length ? pools : undefined,
            description: o.description,
          }),
        });
        printObject(g.format, r.subnet);
      });
    },
  );
  deleteCommand(subnet, 'subnet', SUBNET, 'Delete subnets');
}

interface PortSecurityOpts {
  securityGroup: string[];
  noSecurityGroup?: boolean;
  allowedAddress: string[];
  enablePortSecurity?: boolean;
  disablePortSecurity?: boolean;
}

const pairsOf = (specs: string[]) =>
  specs.map((a) => {
    const s = parseSpec('allowed-address', a, ['ip-address', 'mac-address']);
    if (!s['ip-address']) throw new Error(`--allowed-address ${a}: ip-address= is required`);
    return defined({ ip_address: s['ip-address'], mac_address: s['mac-address'] });
  });

function portSecurityOf(o: PortSecurityOpts): boolean | undefined {
  if (o.enablePortSecurity && o.disablePortSecurity)
    throw new Error('Give only one of --enable-port-security and --disable-port-security.');
  return o.enablePortSecurity ? true : o.disablePortSecurity ? false : undefined;
}

function registerPort(program: Command): void {
  const port = program.command('port').description('Ports (a server’s network interfaces)');
  withFormat(
    port
      .command('list')
      .description('List ports')
      .option('--network <network>', 'only ports on this network')
      .option('--server <server>', 'only this server’s ports'),
  ).action(async (o: { network?: string; server?: string }, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) => {
      const q = new URLSearchParams();
      if (o.network) q.set('network_id', (await find(c, NETWORK, o.network)).id);
      if (o.server) q.set('device_id', (await serverOf(c, o.server)).id);
      const qs = q.toString();
      printList(
        g.format,
        ['id', 'name', 'mac_address', 'fixed_ips', 'status'],
        (await list(c, PORT, qs ? `?${qs}` : '')).map((p) => ({ ...p, fixed_ips: fixedIps(p) })),
      );
    });
  });
  showCommand(port, 'port', PORT, 'Show a port');
  withFormat(
    port
      .command('create <name>')
      .description('Create a port')
      .requiredOption('--network <network>', 'network name or ID')
      .option('--fixed-ip <subnet=S,ip-address=IP>', 'address to take (repeatable)', collect, [])
      .option('--mac-address <mac>', 'MAC address')
      .option(
        '--security-group <group>',
        'security group (repeatable; default: the project’s default)',
        collect,
        [],
      )
      .addOption(plainFlag('--no-security-group', 'no security groups: the port receives nothing'))
      .option(
        '--allowed-address <ip-address=IP,mac-address=MAC>',
        'extra address the port may send from (repeatable)',
        collect,
        [],
      )
      .option('--enable-port-security', 'enforce security groups and anti-spoofing (network default)')
      .option('--disable-port-security', 'enforce neither'),
  ).action(
    async (
      name: string,
      o: PortSecurityOpts & { network: string; fixedIp: string[]; macAddress?: string },
      cmd: Command,
    ) => {
      const g = globals(cmd);
      if (o.noSecurityGroup && o.securityGroup.length)
        throw new Error('Give either --security-group or --no-security-group.');
      const portSecurity = portSecurityOf(o);
      const pairs = pairsOf(o.allowedAddress);
      await withClient(g, async (c) => {
        const net = await find(c, NETWORK, o.network);
        const fixed = [];
        for (const f of o.fixedIp) {
          const s = parseSpec('fixed-ip', f, ['subnet', 'ip-address']);
          fixed.push(
            defined({
              subnet_id: s.subnet ? (await find(c, SUBNET, s.subnet)).id : undefined,
              ip_address: s['ip-address'],
            }),
          );
        }
        const groups = [];
        for (const sg of o.securityGroup) groups.push((await find(c, GROUP, sg)).id);
        const r = await c.request<{ port: Obj }>('network', 'POST', PORT.path, {
          port: defined({
            name,
            network_id: net.id,
            fixed_ips: fixed.length ? fixed : undefined,
            mac_address: o.macAddress,
            security_groups: o.noSecurityGroup ? [] : groups.length ? groups : undefined,
            allowed_address_pairs: pairs.length ? pairs : undefined,
            port_security_enabled: portSecurity,
          }),
        });
        printObject(g.format, r.port);
      });
    },
  );
  port
    .command('set <port>')
    .description('Change a port')
    .option('--name <name>', 'new name')
    .option('--security-group <group>', 'add a security group (repeatable)', collect, [])
    .addOption(
      plainFlag('--no-security-group', 'remove every security group (before adding any --security-group)'),
    )
    .option(
      '--allowed-address <ip-address=IP,mac-address=MAC>',
      'add an allowed address pair (repeatable)',
      collect,
      [],
    )
    .addOption(
      plainFlag('--no-allowed-address', 'remove every allowed address pair (before adding any given)'),
    )
    .option('--enable-port-security', 'enforce security groups and anti-spoofing')
    .option('--disable-port-security', 'enforce neither')
    .option('--enable', 'administratively up')
    .option('--disable', 'administratively down')
    .action(
      async (
        ref: string,
        o: PortSecurityOpts & {
          name?: string;
          enable?: boolean;
          disable?: boolean;
          noAllowedAddress?: boolean;
        },
        cmd: Command,
      ) => {
        const clearPairs = o.noAllowedAddress === true;
        const newPairs = pairsOf(o.allowedAddress);
        const portSecurity = portSecurityOf(o);
        await withClient(globals(cmd), async (c) => {
          const p = await find(c, PORT, ref);
          const groups = [];
          for (const sg of o.securityGroup) groups.push((await find(c, GROUP, sg)).id);
          const current = o.noSecurityGroup ? [] : ((p.security_groups as string[]) ?? []);
          const body = defined({
            name: o.name,
            security_groups:
              o.noSecurityGroup || groups.length ? [...new Set([...current, ...groups])] : undefined,
            allowed_address_pairs:
              clearPairs || newPairs.length
                ? [...(clearPairs ? [] : ((p.allowed_address_pairs as unknown[]) ?? [])), ...newPairs]
                : undefined,
            port_security_enabled: portSecurity,
            admin_state_up: o.enable ? true : o.disable ? false : undefined,
          });
          nothingToChange(
            body,
            '--name, --security-group, --no-security-group, --allowed-address, --no-allowed-address, --enable/--disable-port-security or --enable/--disable',
          );
          await c.request('network', 'PUT', `${PORT.path}/${p.id}`, { port: body });
        });
      },
    );
  deleteCommand(port, 'port', PORT, 'Delete ports');
}

function registerSecurityGroup(program: Command): void {
  const security = child(program, 'security', 'Security groups and their rules');
  const group = security.command('group').description('Security groups: allow-lists on ports');
  withFormat(group.command('list').description('List security groups')).action(async (_o, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) =>
      printList(g.format, ['id', 'name', 'description', 'project_id', 'stateful'], await list(c, GROUP)),
    );
  });
  showCommand(group, 'group', GROUP, 'Show a security group with its rules');
  withFormat(
    group
      .command('create <name>')
      .description('Create a security group: it sends anywhere and receives nothing until a rule says so')
      .option('--description <text>', 'description')
      .option('--stateful', 'replies to allowed traffic are allowed back (default)')
      .option('--stateless', 'every packet needs a rule, replies included'),
  ).action(
    async (
      name: string,
      o: { description?: string; stateful?: boolean; stateless?: boolean },
      cmd: Command,
    ) => {
      const g = globals(cmd);
      if (o.stateful && o.stateless) throw new Error('Give only one of --stateful and --stateless.');
      await withClient(g, async (c) => {
        const r = await c.request<{ security_group: Obj }>('network', 'POST', GROUP.path, {
          security_group: defined({
            name,
            description: o.description,
            stateful: o.stateless ? false : o.stateful ? true : undefined,
          }),
        });
        printObject(g.format, r.security_group);
      });
    },
  );
  group
    .command('set <group>')
    .description('Change a security group')
    .option('--name <name>', 'new name')
    .option('--description <text>', 'description')
    .option('--stateful', 'make stateful (only while no port uses it)')
    .option('--stateless', 'make stateless (only while no port uses it)')
    .action(
      async (
        ref: string,
        o: { name?: string; description?: string; stateful?: boolean; stateless?: boolean },
        cmd: Command,
      ) => {
        if (o.stateful && o.stateless) throw new Error('Give only one of --stateful and --stateless.');
        const body = defined({
          name: o.name,
          description: o.description,
          stateful: o.stateless ? false : o.stateful ? true : undefined,
        });
        await update(cmd, GROUP, ref, body, '--name, --description, --stateful or --stateless');
      },
    );
  deleteCommand(group, 'group', GROUP, 'Delete security groups');

  const rule = group.command('rule').description('Security group rules: what a group allows');
  withFormat(rule.command('list [group]').description('List rules, of one group or all')).action(
    async (ref: string | undefined, _o, cmd: Command) => {
      const g = globals(cmd);
      await withClient(g, async (c) => {
        const q = ref ? `?security_group_id=${(await find(c, GROUP, ref)).id}` : '';
        printList(
          g.format,
          [
            'id',
            'direction',
            'ethertype',
            'protocol',
            'port_range',
            'remote_ip_prefix',
            'remote_group_id',
            ...(ref ? [] : ['security_group_id']),
          ],
          (await list(c, RULE, q)).map((r) => ({ ...r, port_range: portRange(r) })),
        );
      });
    },
  );
  withFormat(rule.command('show <rule>').description('Show a rule')).action(
    async (id: string, _o, cmd: Command) => {
      const g = globals(cmd);
      await withClient(g, async (c) => {
        const r = (await c.request<{ security_group_rule: Obj }>('network', 'GET', `${RULE.path}/${enc(id)}`))
          .security_group_rule;
        printObject(g.format, r);
      });
    },
  );
  withFormat(
    rule
      .command('create <group>')
      .description('Allow traffic to (ingress) or from (egress) the group’s ports')
      .option('--ingress', 'traffic into the ports (default)')
      .option('--egress', 'traffic out of the ports')
      .option(
        '--protocol <proto>',
        'tcp, udp, icmp, ipv6-icmp, any, ... or an IP protocol number (default: any)',
      )
      .option('--dst-port <port>', 'destination port or range MIN:MAX (or MIN-MAX); tcp, udp, sctp, ...')
      .option('--icmp-type <type>', 'ICMP type (protocol icmp or ipv6-icmp)')
      .option('--icmp-code <code>', 'ICMP code (needs --icmp-type)')
      .option('--remote-ip <cidr>', 'peers in this prefix (default: anywhere)')
      .option('--remote-group <group>', 'peers are the ports of this security group')
      .option(
        '--ethertype <IPv4|IPv6>',
        'address family (default: from --remote-ip or --protocol, else IPv4)',
      )
      .option('--description <text>', 'description'),
  ).action(
    async (
      ref: string,
      o: {
        ingress?: boolean;
        egress?: boolean;
        protocol?: string;
        dstPort?: string;
        icmpType?: string;
        icmpCode?: string;
        remoteIp?: string;
        remoteGroup?: string;
        ethertype?: string;
        description?: string;
      },
      cmd: Command,
    ) => {
      const g = globals(cmd);
      if (o.ingress && o.egress) throw new Error('Give only one of --ingress and --egress.');
      if (o.remoteIp !== undefined && o.remoteGroup !== undefined)
        throw new Error('Give only one of --remote-ip and --remote-group.');
      const icmp = o.icmpType !== undefined || o.icmpCode !== undefined;
      if (o.icmpCode !== undefined && o.icmpType === undefined)
        throw new Error('--icmp-code needs --icmp-type.');
      if (icmp && o.dstPort !== undefined)
        throw new Error('Give --dst-port or --icmp-type/--icmp-code, not both.');
      let proto = o.protocol?.toLowerCase();
      if (proto === 'any') proto = undefined;
      const v6 =
        o.ethertype !== undefined
          ? o.ethertype.toLowerCase() === 'ipv6'
          : (o.remoteIp?.includes(':') ?? false) || ['ipv6-icmp', 'icmpv6', '58'].includes(proto ?? '');
      if (icmp && proto === undefined) proto = v6 ? 'ipv6-icmp' : 'icmp';
      if (icmp && !ICMP_NAMES.has(proto ?? ''))
        throw new Error(`--icmp-type and --icmp-code need --protocol icmp or ipv6-icmp, not ${o.protocol}.`);
      if (o.dstPort !== undefined && ICMP_NAMES.has(proto ?? ''))
        throw new Error('ICMP has no ports: use --icmp-type and --icmp-code.');
      const int = (flag: string, v: string | undefined) => {
        if (v === undefined) return undefined;
        if (!/^\d{1,3}$/.test(v)) throw new Error(`--${flag} ${v} is not a number`);
        return Number(v);
      };
      const ports = o.dstPort !== undefined ? parsePortRange(o.dstPort) : {};
      await withClient(g, async (c) => {
        const sg = await find(c, GROUP, ref);
        const remoteGroup =
          o.remoteGroup !== undefined ? (await find(c, GROUP, o.remoteGroup)).id : undefined;
        const r = await c.request<{ security_group_rule: Obj }>('network', 'POST', RULE.path, {
          security_group_rule: defined({
            security_group_id: sg.id,
            direction: o.egress ? 'egress' : 'ingress',
            ethertype: o.ethertype ?? (v6 ? 'IPv6' : 'IPv4'),
            protocol: proto === undefined ? undefined : /^\d+$/.test(proto) ? Number(proto) : proto,
            ...ports,
            ...(icmp
              ? { port_range_min: int('icmp-type', o.icmpType), port_range_max: int('icmp-code', o.icmpCode) }
              : {}),
            remote_ip_prefix: o.remoteIp,
            remote_group_id: remoteGroup,
            description: o.description,
          }),
        });
        printObject(g.format, r.security_group_rule);
      });
    },
  );
  rule
    .command('delete <rule...>')
    .description('Delete rules by ID')
    .action(async (ids: string[], _o, cmd: Command) => {
      await withClient(globals(cmd), async (c) => {
        for (const id of ids) await c.request('network', 'DELETE', `${RULE.path}/${enc(id)}`);
      });
    });
}

function registerRouter(program: Command): void {
  const router = program
    .command('router')
    .description('Routers: connect subnets and SNAT them out of an uplink');
  const gateway = (r: Obj) => (r.external_gateway_info as { network_id?: string } | null)?.network_id ?? '';
  withFormat(router.command('list').description('List routers')).action(async (_o, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) =>
      printList(
        g.format,
        ['id', 'name', 'status', 'external_gateway', 'project_id'],
        (await list(c, ROUTER)).map((r) => ({ ...r, external_gateway: gateway(r) })),
      ),
    );
  });
  showCommand(router, 'router', ROUTER, 'Show a router');
  withFormat(
    router
      .command('create <name>')
      .description('Create a router')
      .option('--description <text>', 'description')
      .option('--external-gateway <network>', 'uplink: an external network'),
  ).action(async (name: string, o: { description?: string; externalGateway?: string }, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) => {
      const ext = o.externalGateway ? (await find(c, NETWORK, o.externalGateway)).id : undefined;
      const r = await c.request<{ router: Obj }>('network', 'POST', ROUTER.path, {
        router: defined({
          name,
          description: o.description,
          external_gateway_info: ext ? { network_id: ext } : undefined,
        }),
      });
      printObject(g.format, r.router);
    });
  });
  router
    .command('set <router>')
    .description('Change a router')
    .option('--name <name>', 'new name')
    .option('--description <text>', 'description')
    .option('--external-gateway <network>', 'uplink: an external network')
    .option('--enable', 'administratively up')
    .option('--disable', 'administratively down')
    .action(
      async (
        ref: string,
        o: {
          name?: string;
          description?: string;
          externalGateway?: string;
          enable?: boolean;
          disable?: boolean;
        },
        cmd: Command,
      ) => {
        await withClient(globals(cmd), async (c) => {
          const body = defined({
            name: o.name,
            description: o.description,
            admin_state_up: o.enable ? true : o.disable ? false : undefined,
            external_gateway_info: o.externalGateway
              ? { network_id: (await find(c, NETWORK, o.externalGateway)).id }
              : undefined,
          });
          nothingToChange(body, '--name, --description, --external-gateway or --enable/--disable');
          const r = await find(c, ROUTER, ref);
          await c.request('network', 'PUT', `${ROUTER.path}/${r.id}`, { router: body });
        });
      },
    );
  router
    .command('unset <router>')
    .description('Clear a router’s settings')
    .option('--external-gateway', 'remove the uplink')
    .action(async (ref: string, o: { externalGateway?: boolean }, cmd: Command) => {
      if (!o.externalGateway) throw new Error('Nothing to unset: give --external-gateway.');
      await withClient(globals(cmd), async (c) => {
        const r = await find(c, ROUTER, ref);
        await c.request('network', 'PUT', `${ROUTER.path}/${r.id}`, {
          router: { external_gateway_info: null },
        });
      });
    });
  deleteCommand(router, 'router', ROUTER, 'Delete routers');
  const iface = (verb: 'add' | 'remove', action: string, description: string) =>
    child(router, verb, `${verb} router interfaces`)
      .command('subnet <router> <subnet>')
      .description(description)
      .action(async (rRef: string, sRef: string, _o, cmd: Command) => {
        await withClient(globals(cmd), async (c) => {
          const r = await find(c, ROUTER, rRef);
          const s = await find(c, SUBNET, sRef);
          await c.request('network', 'PUT', `${ROUTER.path}/${r.id}/${action}`, { subnet_id: s.id });
        });
      });
  iface('add', 'add_router_interface', 'Attach a subnet: the router becomes its gateway');
  iface('remove', 'remove_router_interface', 'Detach a subnet');
}

function registerServerSecurityGroup(program: Command): void {
  const server = child(program, 'server', 'Servers (virtual machines)');
  const verb = (name: 'add' | 'remove', action: string, description: string) =>
    child(child(server, name, `${name} things to a server`), 'security', 'security groups')
      .command('group <server> <group>')
      .description(description)
      .action(async (sRef: string, gRef: string, _o, cmd: Command) => {
        await withClient(globals(cmd), async (c) => {
          const s = await serverOf(c, sRef);
          const sg = await find(c, GROUP, gRef);
          await c.request('compute', 'POST', `/servers/${s.id}/action`, { [action]: { name: sg.id } });
        });
      });
  verb('add', 'addSecurityGroup', 'Add a security group to every port of a server');
  verb('remove', 'removeSecurityGroup', 'Remove a security group from every port of a server');
}

export function registerNetworkCommands(program: Command): void {
  registerNetwork(program);
  registerSubnet(program);
  registerPort(program);
  registerSecurityGroup(program);
  registerRouter(program);
  registerServerSecurityGroup(program);
}
