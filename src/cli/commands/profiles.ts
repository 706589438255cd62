import { readFileSync, writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { findByNameOrId, withClient, withFormat } from '../common.js';
import { printObject } from '../output.js';
import { untilActive } from './compute.js';

/** `bulwark profile import|export` (docs/profiles.md): Hyper-NixOS style per-VM JSON profiles. */

type Obj = { id: string; name?: string } & Record<string, unknown>;
const globals = (cmd: Command) =>
  cmd.optsWithGlobals<{ osCloud?: string; format: 'table' | 'json' | 'value' }>();

function readProfile(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`Cannot read profile ${file}: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`Profile ${file} is not JSON: ${(e as Error).message}`);
  }
}

export function registerProfileCommands(program: Command): void {
  const profile = program
    .command('profile')
    .description('VM profiles: import Hyper-NixOS JSON profiles as servers, export servers as profiles');

  withFormat(
    profile
      .command('import <file>')
      .description('Create a server from a JSON profile (checked first: a refused profile changes nothing)')
      .option('--dry-run', 'only check the profile and show the flavor, image and network it would use')
      .option('--create-flavor', 'administrators: create a private flavor when none matches')
      .option('--wait', 'wait until the server is ACTIVE'),
  ).action(
    async (file: string, o: { dryRun?: boolean; createFlavor?: boolean; wait?: boolean }, cmd: Command) => {
      const g = globals(cmd);
      const body = {
        profile: readProfile(file),
        ...(o.dryRun ? { dry_run: true } : {}),
        ...(o.createFlavor ? { create_flavor: true } : {}),
      };
      await withClient(g, async (c) => {
        const r = (
          await c.request<{ import: Record<string, Obj | null | boolean> }>(
            'bulwark',
            'POST',
            '/profiles',
            body,
          )
        ).import;
        const flavor = r.flavor as Obj & { created: boolean };
        const server = r.server as Obj | null;
        const summary = {
          dry_run: r.dry_run,
          flavor: `${flavor.name}${flavor.created ? (o.dryRun ? ' (would be created)' : ' (created)') : ''}`,
          image: (r.image as Obj).name,
          network: r.network ? `${(r.network as Obj).name} (zone ${String((r.network as Obj).zone)})` : null,
          server_id: server?.id ?? null,
          status: server
            ? (await untilActive(c, `importing ${String(server.name)}`, server.id, o.wait)).status
            : null,
        };
        printObject(g.format, summary);
      });
    },
  );

  profile
    .command('export <server>')
    .description('Print a server as a JSON profile (import it again with `bulwark profile import`)')
    .option('-o, --output <file>', 'write the profile to this file instead of stdout')
    .action(async (ref: string, o: { output?: string }, cmd: Command) => {
      const g = globals(cmd);
      await withClient(g, async (c) => {
        const s = await findByNameOrId<Obj>(c, 'compute', 'servers', 'server', ref);
        const p = (await c.request<{ profile: unknown }>('bulwark', 'GET', `/profiles/${s.id}`)).profile;
        const text = `${JSON.stringify(p, null, 2)}\n`;
        if (o.output) writeFileSync(o.output, text, { mode: 0o600 });
        else console.log(text.trimEnd());
      });
    });
}
