import { badRequest } from '../errors.js';
import { mergePrefixes, type Prefix, parsePrefix } from './addr.js';
import { DEVICE_NAME, names, TABLE_NAME } from './dataplane-names.js';
import type { NftCommand } from './nft-json.js';
import { ipElem } from './port-security.js';

/** Small in-place changes to a running ruleset, applied with `host/net/nft.ts#applyCommands`. */

function fail(message: string): never {
  throw badRequest(message);
}

/**
 * Commands that replace a remote group's member sets in place, for a member
 * joining or leaving without rebuilding the table. Apply with `applyCommands`;
 * the flush and the new elements commit in one transaction.
 */
export function compileGroupMembers(
  table: string,
  groupId: string,
  members: readonly string[],
): NftCommand[] {
  if (!TABLE_NAME.test(table)) fail(`Table name '${table}' must match ${TABLE_NAME.source}.`);
  const ps = mergePrefixes(members.map((m) => parsePrefix(m, `Security group ${groupId} member`)));
  const cmds: NftCommand[] = [];
  for (const family of [4, 6] as const) {
    const name = names.groupSet(groupId, family);
    cmds.push({ flush: { set: { family: 'inet', table, name } } });
    const elem = ps.filter((p) => p.version === family).map(ipElem);
    if (elem.length) cmds.push({ add: { element: { family: 'inet', table, name, elem } } });
  }
  return cmds;
}

/**
 * Commands that quarantine (or release) devices at once in both tables,
 * without recompiling: the devices join the `quarantined` sets that the base
 * chains check before anything else. Persist the flag too, so the next full
 * apply keeps it.
 */
export function compileQuarantine(table: string, devices: readonly string[], on: boolean): NftCommand[] {
  if (!TABLE_NAME.test(table)) fail(`Table name '${table}' must match ${TABLE_NAME.source}.`);
  for (const d of devices) if (!DEVICE_NAME.test(d)) fail(`'${d}' is not a valid interface name.`);
  if (devices.length === 0) return [];
  // Release adds before deleting, so releasing a device that is not quarantined is not an error.
  return (['inet', 'arp'] as const).flatMap((family): NftCommand[] => {
    const element = { family, table, name: names.quarantineSet, elem: [...devices] };
    return on ? [{ add: { element } }] : [{ add: { element } }, { delete: { element } }];
  });
}

/** An address set as the full compile declares it (remote-group members, SNAT sources). */
export function addrSetDecl(
  table: string,
  name: string,
  family: 4 | 6,
  members: readonly Prefix[],
): NftCommand {
  const elem = mergePrefixes(members).map(ipElem);
  return {
    add: {
      set: {
        family: 'inet',
        table,
        name,
        type: family === 4 ? 'ipv4_addr' : 'ipv6_addr',
        flags: ['interval'],
        ...(elem.length ? { elem } : {}),
      },
    },
  };
}
