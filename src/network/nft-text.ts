import type { Json, NftCommand, NftStmt } from './nft-json.js';

/**
 * nft's native syntax for the small in-place batches a group change makes
 * (`sg-sets.ts#groupUpdate`): set elements added and deleted, and a group
 * chain flushed and refilled with set lookups. A long-lived `nft -i` keeps
 * its cache only for native commands (with JSON input nft 1.0.6 re-reads the
 * whole table for every command, measured), so these go in as text.
 *
 * Only the shapes those batches use are rendered; anything else (a rule a
 * set cannot hold, an unknown expression) returns undefined and the caller
 * sends the JSON batch instead. Every token is checked against a narrow
 * pattern, so a value can never end the line (one line is one transaction)
 * or start another command.
 */

const TOKEN = /^[A-Za-z0-9_.:/-]+$/;

class Unrenderable extends Error {}

function token(s: string): string {
  if (!TOKEN.test(s)) throw new Unrenderable(s);
  return s;
}

function num(n: Json): string {
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) throw new Unrenderable(String(n));
  return String(n);
}

const isObj = (v: Json): v is { readonly [k: string]: Json } =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** One expression: values (numbers, addresses, prefixes, ranges, concatenations), payload and meta keys. */
function expr(e: Json): string {
  if (typeof e === 'number') return num(e);
  if (typeof e === 'string') return e.startsWith('@') ? `@${token(e.slice(1))}` : token(e);
  if (!isObj(e)) throw new Unrenderable(JSON.stringify(e));
  const [key, v] = Object.entries(e)[0] ?? [];
  if (Object.keys(e).length !== 1 || v === undefined) throw new Unrenderable(JSON.stringify(e));
  if (key === 'concat' && Array.isArray(v) && v.length > 1) return v.map(expr).join(' . ');
  if (key === 'range' && Array.isArray(v) && v.length === 2) return `${expr(v[0])}-${expr(v[1])}`;
  if (key === 'prefix' && isObj(v) && typeof v.addr === 'string')
    return `${token(v.addr)}/${num(v.len ?? -1)}`;
  if (key === 'payload' && isObj(v) && typeof v.protocol === 'string' && typeof v.field === 'string')
    return `${token(v.protocol)} ${token(v.field)}`;
  if (key === 'meta' && isObj(v) && typeof v.key === 'string') return `meta ${token(v.key)}`;
  if (key === '|' && Array.isArray(v) && v.length === 2) return `${expr(v[0])} | ${num(v[1])}`;
  throw new Unrenderable(JSON.stringify(e));
}

function stmt(s: NftStmt): string {
  const [key, v] = Object.entries(s)[0] ?? [];
  if (Object.keys(s).length !== 1 || v === undefined) throw new Unrenderable(JSON.stringify(s));
  if (key === 'accept' && v === null) return 'accept';
  if (key === 'return' && v === null) return 'return';
  if (key === 'match' && isObj(v) && v.op === '==' && v.left !== undefined && v.right !== undefined)
    return `${expr(v.left)} ${expr(v.right)}`;
  if (key === 'mangle' && isObj(v) && v.key !== undefined && v.value !== undefined)
    return `${expr(v.key)} set ${expr(v.value)}`;
  throw new Unrenderable(JSON.stringify(s));
}

function command(c: NftCommand): string {
  if ('add' in c && 'element' in c.add) {
    const { family, table, name, elem } = c.add.element;
    return `add element ${token(family)} ${token(table)} ${token(name)} { ${elem.map(expr).join(', ')} }`;
  }
  if ('delete' in c && 'element' in c.delete) {
    const { family, table, name, elem } = c.delete.element;
    return `delete element ${token(family)} ${token(table)} ${token(name)} { ${elem.map(expr).join(', ')} }`;
  }
  if ('flush' in c && 'chain' in c.flush) {
    const { family, table, name } = c.flush.chain;
    return `flush chain ${token(family)} ${token(table)} ${token(name)}`;
  }
  if ('add' in c && 'rule' in c.add) {
    const { family, table, chain, expr: stmts, comment } = c.add.rule;
    if (comment !== undefined || stmts.length === 0) throw new Unrenderable('rule');
    return `add rule ${token(family)} ${token(table)} ${token(chain)} ${stmts.map(stmt).join(' ')}`;
  }
  throw new Unrenderable(JSON.stringify(c));
}

/** The batch as one line of native commands (one transaction), or undefined where a command has no rendering here. */
export function nativeBatch(cmds: readonly NftCommand[]): string | undefined {
  try {
    return cmds.map(command).join('; ');
  } catch (err) {
    if (err instanceof Unrenderable) return undefined;
    throw err;
  }
}
