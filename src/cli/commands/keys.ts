import type { Command } from 'commander';
import { withClient, withFormat } from '../common.js';
import { printObject } from '../output.js';

const globals = (cmd: Command) =>
  cmd.optsWithGlobals<{ osCloud?: string; format: 'table' | 'json' | 'value' }>();

/**
 * `bulwark key-manager rotate-kek`: the cloud admin rotates the key manager's
 * KEK without downtime (a new version, every data key re-wrapped, the old
 * version retired; docs/keys.md). Secrets themselves are managed with
 * `openstack secret store|list|get|delete`.
 */
export function registerKeyManagerCommands(program: Command): void {
  const km = program.command('key-manager').description('The key manager (Barbican v1 secrets)');
  withFormat(
    km
      .command('rotate-kek')
      .description(
        'Admin: create a new KEK version, re-wrap every data key with it, retire the old one (secrets stay readable throughout)',
      ),
  ).action(async (_o: unknown, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) => {
      const r = await c.request<{
        kek_rotation: { kek_id: string; from_versions: number[]; to_version: number; rewrapped: number };
      }>('key-manager', 'POST', '/bulwark/rotate-kek');
      const k = r.kek_rotation;
      printObject(
        g.format,
        {
          kek_id: k.kek_id,
          retired_versions: k.from_versions.join(','),
          current_version: k.to_version,
          rewrapped: k.rewrapped,
        },
        ['kek_id', 'retired_versions', 'current_version', 'rewrapped'],
      );
    });
  });
}
