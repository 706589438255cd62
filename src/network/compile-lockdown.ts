import { badRequest } from '../errors.js';
import { TABLE_NAME } from './dataplane-names.js';
import { drop, match, meta, type NftChain, type NftCommand, type NftRuleset } from './nft-json.js';

/**
 * The emergency ruleset for when the full one cannot be applied: its own
 * tables (so it works whatever state the main ones are in), hooked before
 * everything else, dropping every packet to or from a VM device. A failed
 * apply may have been meant to take an allow away, so keeping the old rules
 * is not safe; cutting the VMs off is.
 */

/** Lockdown tables are named after the main table: `<table>_lockdown`. */
export const lockdownTable = (table: string): string => {
  const name = `${table}_lockdown`;
  if (!TABLE_NAME.test(name)) throw badRequest(`Table name '${name}' must match ${TABLE_NAME.source}.`);
  return name;
};

// Before conntrack (-200) and before the main table's raw chains (-300).
const PRIO = -400;

export function compileLockdown(table: string, devicePrefixes: readonly string[]): NftRuleset {
  const t = lockdownTable(table);
  if (devicePrefixes.length === 0) throw badRequest('Lockdown needs at least one device prefix.');
  const cmds: NftCommand[] = [];
  const hooks = {
    inet: ['prerouting', 'input', 'forward', 'output'],
    arp: ['input', 'output'],
  } as const;
  for (const family of ['inet', 'arp'] as const) {
    cmds.push({ add: { table: { family, name: t } } });
    for (const hook of hooks[family]) {
      const chain: NftChain = {
        family,
        table: t,
        name: hook,
        type: 'filter',
        hook,
        prio: PRIO,
        policy: 'accept',
      };
      cmds.push({ add: { chain } });
      const keys =
        hook === 'output' ? ['oifname'] : hook === 'forward' ? ['iifname', 'oifname'] : ['iifname'];
      for (const key of keys)
        for (const p of devicePrefixes)
          cmds.push({
            add: { rule: { family, table: t, chain: hook, expr: [match(meta(key), `${p}*`), drop] } },
          });
    }
  }
  return { nftables: cmds };
}
