import { createReadStream, readFileSync, statSync } from 'node:fs';
import type { Command } from 'commander';
import type { BulwarkClient } from '../client.js';
import { findByNameOrId, withClient, withFormat } from '../common.js';
import { printList, printObject } from '../output.js';
import { byteProgress, waitWithStatus } from '../progress.js';
import { printHeld } from './approvals.js';
import { registerServerBackupCommands } from './server-backups.js';

type Obj = { id: string; name?: string } & Record<string, unknown>;
const globals = (cmd: Command) =>
  cmd.optsWithGlobals<{ osCloud?: string; format: 'table' | 'json' | 'value' }>();
const collect = (v: string, acc: string[]) => [...acc, v];
const kv = (pairs: string[]) =>
  Object.fromEntries(
    pairs.map((p) => {
      const i = p.indexOf('=');
      if (i <= 0) throw new Error(`--property ${p} is not KEY=VALUE`);
      return [p.slice(0, i), p.slice(i + 1)];
    }),
  );

async function findFlavor(c: BulwarkClient, ref: string): Promise<Obj> {
  const list = await c.request<{ flavors: Obj[] }>('compute', 'GET', '/flavors/detail?is_public=None');
  const f = list.flavors.find((x) => x.id === ref) ?? list.flavors.find((x) => x.name === ref);
  if (!f) throw new Error(`No flavor with a name or ID of '${ref}' exists.`);
  return f;
}

export async function findImage(c: BulwarkClient, ref: string): Promise<Obj> {
  const list = await c.request<{ images: Obj[] }>('image', 'GET', '/v2/images');
  const matches = list.images.filter((x) => x.id === ref || x.name === ref);
  if (matches.length !== 1)
    throw new Error(
      matches.length
        ? `More than one image is named '${ref}'; use the ID.`
        : `No image with a name or ID of '${ref}' exists.`,
    );
  return matches[0] as Obj;
}

const serverStatus = (s: Obj) =>
  `${String(s.status)}${s['OS-EXT-STS:task_state'] ? ` (${String(s['OS-EXT-STS:task_state'])})` : ''}`;

/** The server, once ACTIVE when `wait` (progress on stderr); ERROR fails with its fault. */
export const untilActive = async (c: BulwarkClient, what: string, id: string, wait: boolean | undefined) => {
  const get = async () => (await c.request<{ server: Obj }>('compute', 'GET', `/servers/${id}`)).server;
  if (!wait) return get();
  return waitWithStatus(
    what,
    get,
    (v) =>
      v.status === 'ACTIVE'
        ? ''
        : v.status === 'ERROR'
          ? `server went to ERROR: ${String((v.fault as { message?: string } | undefined)?.message ?? 'no reason given')}`
          : null,
    serverStatus,
  );
};

export function registerComputeCommands(program: Command): void {
  const flavor = program.command('flavor').description('Flavors (machine sizes)');
  withFormat(flavor.command('list').description('List flavors')).action(async (_o, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) => {
      const r = await c.request<{ flavors: Obj[] }>('compute', 'GET', '/flavors/detail');
      printList(g.format, ['id', 'name', 'ram', 'vcpus', 'disk'], r.flavors);
    });
  });
  withFormat(
    flavor
      .command('create <name>')
      .requiredOption('--vcpus <n>', 'virtual CPUs')
      .requiredOption('--ram <mib>', 'memory in MiB')
      .requiredOption('--disk <gib>', 'root disk in GiB')
      .option('--property <key=value>', 'extra spec (repeatable)', collect, []),
  ).action(
    async (
      name: string,
      o: { vcpus: string; ram: string; disk: string; property: string[] },
      cmd: Command,
    ) => {
      const g = globals(cmd);
      await withClient(g, async (c) => {
        const r = await c.request<{ flavor: Obj }>('compute', 'POST', '/flavors', {
          flavor: { name, vcpus: Number(o.vcpus), ram: Number(o.ram), disk: Number(o.disk) },
        });
        const specs = o.property.length
          ? (
              await c.request<{ extra_specs: Obj }>(
                'compute',
                'POST',
                `/flavors/${r.flavor.id}/os-extra_specs`,
                { extra_specs: kv(o.property) },
              )
            ).extra_specs
          : {};
        printObject(g.format, { ...r.flavor, properties: specs });
      });
    },
  );
  flavor
    .command('set <flavor>')
    .option('--property <key=value>', 'extra spec (repeatable)', collect, [])
    .action(async (ref: string, o: { property: string[] }, cmd: Command) => {
      await withClient(globals(cmd), async (c) => {
        const f = await findFlavor(c, ref);
        await c.request('compute', 'POST', `/flavors/${f.id}/os-extra_specs`, {
          extra_specs: kv(o.property),
        });
      });
    });
  flavor.command('delete <flavor>').action(async (ref: string, _o, cmd: Command) => {
    await withClient(globals(cmd), async (c) =>
      c.request('compute', 'DELETE', `/flavors/${(await findFlavor(c, ref)).id}`),
    );
  });

  const image = program.command('image').description('Images');
  withFormat(image.command('list')).action(async (_o, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) =>
      printList(
        g.format,
        ['id', 'name', 'status', 'visibility', 'size'],
        (await c.request<{ images: Obj[] }>('image', 'GET', '/v2/images')).images,
      ),
    );
  });
  withFormat(image.command('show <image>')).action(async (ref: string, _o, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) => printObject(g.format, await findImage(c, ref)));
  });
  withFormat(
    image
      .command('create <name>')
      .requiredOption('--file <path>', 'disk image to upload')
      .option('--disk-format <format>', 'raw or qcow2', 'raw')
      .option('--property <key=value>', 'image property (repeatable)', collect, []),
  ).action(
    async (name: string, o: { file: string; diskFormat: string; property: string[] }, cmd: Command) => {
      const g = globals(cmd);
      await withClient(g, async (c) => {
        const img = await c.request<Obj>('image', 'POST', '/v2/images', {
          name,
          disk_format: o.diskFormat,
          container_format: 'bare',
          ...kv(o.property),
        });
        const size = statSync(o.file).size;
        const body = createReadStream(o.file).pipe(byteProgress(`uploading ${name}`, size));
        await c.request('image', 'PUT', `/v2/images/${img.id}/file`, undefined, {
          contentType: 'application/octet-stream',
          stream: body,
          length: size,
        });
        printObject(g.format, await c.request<Obj>('image', 'GET', `/v2/images/${img.id}`));
      });
    },
  );
  image.command('delete <image>').action(async (ref: string, _o, cmd: Command) => {
    await withClient(globals(cmd), async (c) =>
      c.request('image', 'DELETE', `/v2/images/${(await findImage(c, ref)).id}`),
    );
  });

  const server = program.command('server').description('Servers (virtual machines)');
  registerServerBackupCommands(server);
  /** The server, once ACTIVE when `wait` (with progress; ERROR fails with its fault). */
  withFormat(server.command('list')).action(async (_o, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) =>
      printList(
        g.format,
        ['id', 'name', 'status'],
        await c.listAll<Obj>('compute', '/servers/detail', 'servers'),
      ),
    );
  });
  withFormat(server.command('show <server>')).action(async (ref: string, _o, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) =>
      printObject(g.format, await findByNameOrId<Obj>(c, 'compute', 'servers', 'server', ref)),
    );
  });
  withFormat(
    server
      .command('create <name>')
      .requiredOption('--flavor <flavor>', 'flavor name or id')
      .requiredOption('--image <image>', 'image name or id')
      .option('--property <key=value>', 'metadata (repeatable)', collect, [])
      .option('--user-data <file>', 'script for the guest')
      .option('--wait', 'wait until the server is ACTIVE, showing progress'),
  ).action(
    async (
      name: string,
      o: { flavor: string; image: string; property: string[]; userData?: string; wait?: boolean },
      cmd: Command,
    ) => {
      const g = globals(cmd);
      await withClient(g, async (c) => {
        const [f, i] = await Promise.all([findFlavor(c, o.flavor), findImage(c, o.image)]);
        const r = await c.request<{ server: Obj } | { approval: Obj; message: string }>(
          'compute',
          'POST',
          '/servers',
          {
            server: {
              name,
              flavorRef: f.id,
              imageRef: i.id,
              metadata: kv(o.property),
              ...(o.userData ? { user_data: readFileSync(o.userData).toString('base64') } : {}),
            },
          },
        );
        // Held for a second admin (docs/approvals.md): say so and show the approval, nothing to wait for.
        if ('approval' in r) return printHeld(g.format, r);
        printObject(g.format, await untilActive(c, `creating ${name}`, String(r.server.id), o.wait));
      });
    },
  );
  // Clones (docs/clones.md): held for a second admin; `--wait` waits when the trigger is off.
  withFormat(
    server
      .command('clone <source>')
      .description(
        'Clone a stopped server: a copy of its disk with a fresh identity (a second admin approves)',
      )
      .requiredOption('--name <name>', "the clone's name")
      .option('--wait', 'wait until the clone is ACTIVE, showing progress'),
  ).action(async (ref: string, o: { name: string; wait?: boolean }, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) => {
      const src = await findByNameOrId<Obj>(c, 'compute', 'servers', 'server', ref);
      const r = await c.request<{ server: Obj } | { approval: Obj; message: string }>(
        'bulwark',
        'POST',
        `/servers/${src.id}/clone`,
        { clone: { name: o.name } },
      );
      if ('approval' in r) return printHeld(g.format, r);
      printObject(g.format, await untilActive(c, `cloning ${ref} as ${o.name}`, String(r.server.id), o.wait));
    });
  });
  const action = (verb: string, body: unknown, want: string) =>
    server
      .command(`${verb} <server>`)
      .option('--wait', `wait until the server is ${want}`)
      .action(async (ref: string, o: { wait?: boolean }, cmd: Command) => {
        await withClient(globals(cmd), async (c) => {
          const s = await findByNameOrId<Obj>(c, 'compute', 'servers', 'server', ref);
          await c.request('compute', 'POST', `/servers/${s.id}/action`, body);
          if (o.wait) {
            await waitWithStatus(
              `${verb} ${ref}`,
              async () => (await c.request<{ server: Obj }>('compute', 'GET', `/servers/${s.id}`)).server,
              (v) =>
                v.status === want && !v['OS-EXT-STS:task_state']
                  ? ''
                  : v.status === 'ERROR'
                    ? 'server went to ERROR'
                    : null,
              serverStatus,
            );
          }
        });
      });
  action('start', { 'os-start': null }, 'ACTIVE');
  action('stop', { 'os-stop': null }, 'SHUTOFF');
  action('reboot', { reboot: { type: 'SOFT' } }, 'ACTIVE');
  action('pause', { pause: null }, 'PAUSED');
  action('unpause', { unpause: null }, 'ACTIVE');
  action('suspend', { suspend: null }, 'SUSPENDED');
  action('resume', { resume: null }, 'ACTIVE');
  server
    .command('delete <server>')
    .option('--wait', 'wait until the server is gone')
    .action(async (ref: string, o: { wait?: boolean }, cmd: Command) => {
      await withClient(globals(cmd), async (c) => {
        const s = await findByNameOrId<Obj>(c, 'compute', 'servers', 'server', ref);
        await c.request('compute', 'DELETE', `/servers/${s.id}`);
        if (o.wait) {
          await waitWithStatus(
            `deleting ${ref}`,
            async () => (await c.listAll<Obj>('compute', '/servers', 'servers')).some((x) => x.id === s.id),
            (present) => (present ? null : ''),
            (present) => (present ? 'deleting' : 'gone'),
          );
        }
      });
    });
  type Quarantine = { reason: string; steps: { step: string; outcome: string; detail: string }[] } & Obj;
  withFormat(
    server
      .command('quarantine <server>')
      .description('Incident response (admin): suspend the guest, cut its network, take a forensic snapshot')
      .requiredOption('--reason <text>', 'why; recorded in the audit log and the evidence'),
  ).action(async (ref: string, o: { reason: string }, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) => {
      const s = await findByNameOrId<Obj>(c, 'compute', 'servers', 'server', ref);
      process.stderr.write(`Quarantining ${ref}: suspend, isolate, snapshot...\n`);
      const r = await c.request<{ quarantine: Quarantine }>(
        'compute',
        'POST',
        `/servers/${s.id}/os-quarantine`,
        {
          quarantine: { reason: o.reason },
        },
      );
      printList(g.format, ['step', 'outcome', 'detail'], r.quarantine.steps);
      if (r.quarantine.steps.some((x) => x.outcome !== 'success')) process.exitCode = 1;
    });
  });
  withFormat(
    server.command('quarantine-show <server>').description("Show a server's quarantine record (admin)"),
  ).action(async (ref: string, _o, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) => {
      const s = await findByNameOrId<Obj>(c, 'compute', 'servers', 'server', ref);
      const r = await c.request<{ quarantine: Quarantine | null }>(
        'compute',
        'GET',
        `/servers/${s.id}/os-quarantine`,
      );
      if (!r.quarantine) throw new Error(`Server ${ref} is not quarantined.`);
      printObject(g.format, r.quarantine);
    });
  });
  server
    .command('unquarantine <server>')
    .description('Lift a quarantine (admin): restores the network; the guest stays paused until unpaused')
    .action(async (ref: string, _o, cmd: Command) => {
      await withClient(globals(cmd), async (c) => {
        const s = await findByNameOrId<Obj>(c, 'compute', 'servers', 'server', ref);
        await c.request('compute', 'DELETE', `/servers/${s.id}/os-quarantine`);
      });
    });
  withFormat(
    server
      .command('history <server>')
      .description("Who changed what on a server, and when, with each change's diff (oldest first)"),
  ).action(async (ref: string, _o, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) => {
      // A deleted server is no longer found by name; its id still shows its history.
      const id = await findByNameOrId<Obj>(c, 'compute', 'servers', 'server', ref).then(
        (s) => String(s.id),
        (err: unknown) => {
          if (/^[0-9a-f-]{36}$/.test(ref)) return ref;
          throw err;
        },
      );
      const r = await c.request<{ changes: Obj[] }>('bulwark', 'GET', `/servers/${id}/history`);
      printList(g.format, ['at', 'user_name', 'change', 'diff'], r.changes);
    });
  });
  // The guest agent, through the daemon's filter (docs/passthrough-and-agent.md).
  withFormat(
    server
      .command('guest-agent <server> <command>')
      .description(
        'Send a guest agent command through the filter (read-only monitoring unless an admin granted more)',
      )
      .option('--arguments <json>', "the command's arguments as a JSON object"),
  ).action(async (ref: string, command: string, o: { arguments?: string }, cmd: Command) => {
    const g = globals(cmd);
    let args: unknown;
    if (o.arguments !== undefined) {
      try {
        args = JSON.parse(o.arguments);
      } catch {
        throw new Error('--arguments must be a JSON object, e.g. \'{"path": "/bin/true"}\'.');
      }
    }
    await withClient(g, async (c) => {
      const s = await findByNameOrId<Obj>(c, 'compute', 'servers', 'server', ref);
      const r = await c.request<{ result: { return?: unknown; error?: Obj } }>(
        'bulwark',
        'POST',
        `/servers/${s.id}/guest-agent`,
        { execute: command, ...(args === undefined ? {} : { arguments: args }) },
      );
      if (r.result.error)
        throw new Error(`The guest agent answered with an error: ${JSON.stringify(r.result.error)}`);
      const ret = r.result.return;
      if (g.format === 'json' || typeof ret !== 'object' || ret === null || Array.isArray(ret))
        console.log(JSON.stringify(ret ?? null, null, 2));
      else printObject(g.format, ret as Obj);
    });
  });
  withFormat(
    server
      .command('guest-agent-grant <server>')
      .description('Allow guest-exec / guest-file-* on one server until an expiry (cloud admin)')
      .requiredOption('--command <name>', 'a grantable command, e.g. guest-exec (repeatable)', collect, [])
      .requiredOption('--expires <time>', 'ISO 8601 time the grant ends, e.g. 2026-12-01T12:00:00Z')
      .requiredOption('--reason <text>', 'why; stored with the grant and in the audit log'),
  ).action(async (ref: string, o: { command: string[]; expires: string; reason: string }, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) => {
      const s = await findByNameOrId<Obj>(c, 'compute', 'servers', 'server', ref);
      const r = await c.request<{ grant: Obj }>('bulwark', 'POST', `/servers/${s.id}/guest-agent/grants`, {
        grant: { commands: o.command, expires_at: new Date(o.expires).toISOString(), reason: o.reason },
      });
      printObject(g.format, r.grant);
    });
  });
  withFormat(
    server.command('guest-agent-grants <server>').description("A server's guest agent grants"),
  ).action(async (ref: string, _o, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) => {
      const s = await findByNameOrId<Obj>(c, 'compute', 'servers', 'server', ref);
      const r = await c.request<{ grants: Obj[] }>('bulwark', 'GET', `/servers/${s.id}/guest-agent/grants`);
      printList(g.format, ['id', 'commands', 'granted_by_name', 'expires_at', 'reason'], r.grants);
    });
  });
  server
    .command('guest-agent-revoke <server> <grant>')
    .description('End a guest agent grant now (cloud admin)')
    .action(async (ref: string, grant: string, _o, cmd: Command) => {
      await withClient(globals(cmd), async (c) => {
        const s = await findByNameOrId<Obj>(c, 'compute', 'servers', 'server', ref);
        await c.request(
          'bulwark',
          'DELETE',
          `/servers/${s.id}/guest-agent/grants/${encodeURIComponent(grant)}`,
        );
      });
    });
  // Host device passthrough (cloud admin; held for a second admin's approval while that trigger is on).
  withFormat(
    server
      .command('host-device-add <server>')
      .description('Pass host PCI/USB devices through to a stopped server (cloud admin; whole IOMMU groups)')
      .option('--pci <address>', 'a PCI address, e.g. 0000:03:00.0 (repeatable)', collect, [])
      .option('--usb <vendor:product>', 'a USB device, e.g. 046d:c52b (repeatable)', collect, []),
  ).action(async (ref: string, o: { pci: string[]; usb: string[] }, cmd: Command) => {
    const g = globals(cmd);
    const usb = o.usb.map((u) => {
      const [vendor_id, product_id, ...rest] = u.split(':');
      if (!vendor_id || !product_id || rest.length)
        throw new Error(`--usb ${u}: use vendor:product, e.g. 046d:c52b.`);
      return { vendor_id, product_id };
    });
    await withClient(g, async (c) => {
      const s = await findByNameOrId<Obj>(c, 'compute', 'servers', 'server', ref);
      const r = await c.request<{ host_devices: Obj } | { approval: Obj; message: string }>(
        'bulwark',
        'POST',
        `/servers/${s.id}/host-devices`,
        { host_devices: { pci: o.pci, usb } },
      );
      if ('approval' in r) printHeld(g.format, r);
      else printObject(g.format, r.host_devices);
    });
  });
  server
    .command('host-device-remove <server>')
    .description("Take a stopped server's host devices back (cloud admin)")
    .action(async (ref: string, _o, cmd: Command) => {
      await withClient(globals(cmd), async (c) => {
        const s = await findByNameOrId<Obj>(c, 'compute', 'servers', 'server', ref);
        await c.request('bulwark', 'DELETE', `/servers/${s.id}/host-devices`);
      });
    });
  server
    .command('console-log <server>')
    .option('--lines <n>', 'last N lines')
    .action(async (ref: string, o: { lines?: string }, cmd: Command) => {
      await withClient(globals(cmd), async (c) => {
        const s = await findByNameOrId<Obj>(c, 'compute', 'servers', 'server', ref);
        const r = await c.request<{ output: string }>('compute', 'POST', `/servers/${s.id}/action`, {
          'os-getConsoleOutput': { length: o.lines ? Number(o.lines) : null },
        });
        process.stdout.write(r.output);
      });
    });
}
