/**
 * The subset of the nftables JSON format (libnftables-json(5), `nft -j`) that
 * Bulwark writes, with small builders so the compiler reads like nft syntax.
 * Expressions are plain JSON; the command/object envelope is typed.
 */

export type Json = string | number | boolean | null | readonly Json[] | { readonly [k: string]: Json };
export type NftExpr = Json;
/** One statement of a rule's `expr` list. */
export type NftStmt = { readonly [k: string]: Json };

export type NftFamily = 'inet' | 'arp' | 'ip' | 'ip6' | 'bridge' | 'netdev';

export interface NftTable {
  family: NftFamily;
  name: string;
}
export interface NftChain {
  family: NftFamily;
  table: string;
  name: string;
  type?: 'filter' | 'nat';
  hook?: 'prerouting' | 'input' | 'forward' | 'output' | 'postrouting';
  prio?: number;
  policy?: 'accept' | 'drop';
}
export interface NftRule {
  family: NftFamily;
  table: string;
  chain: string;
  expr: NftStmt[];
  comment?: string;
}
export interface NftSet {
  family: NftFamily;
  table: string;
  name: string;
  type: string | string[];
  flags?: ('interval' | 'constant' | 'timeout')[];
  elem?: Json[];
  comment?: string;
}
export interface NftMap extends NftSet {
  map: string;
}
export interface NftCounter {
  family: NftFamily;
  table: string;
  name: string;
  packets?: number;
  bytes?: number;
}
/** `add element` / `delete element`: members of an existing set or map. */
export interface NftElement {
  family: NftFamily;
  table: string;
  name: string;
  elem: Json[];
}

export type NftObject =
  | { table: NftTable }
  | { chain: NftChain }
  | { rule: NftRule }
  | { set: NftSet }
  | { map: NftMap }
  | { counter: NftCounter }
  | { element: NftElement };

/** Names an existing table object, for `flush` and `delete`. */
export interface NftRef {
  family: NftFamily;
  table: string;
  name: string;
}

export type NftCommand =
  | { add: NftObject }
  | { delete: NftObject | { set: NftRef } | { map: NftRef } | { chain: NftRef } | { counter: NftRef } }
  | { flush: { set: NftRef } | { map: NftRef } | { chain: NftRef } | { table: NftTable } };

/** What `nft -j -f` reads: one batch, applied as one kernel transaction. */
export interface NftRuleset {
  nftables: NftCommand[];
}

// ---- expression builders ------------------------------------------------------

export const meta = (key: string): NftExpr => ({ meta: { key } });
export const payload = (protocol: string, field: string): NftExpr => ({ payload: { protocol, field } });
export const raw = (base: 'll' | 'nh' | 'th', offset: number, len: number): NftExpr => ({
  payload: { base, offset, len },
});
export const ct = (key: string): NftExpr => ({ ct: { key } });
export const concat = (...parts: NftExpr[]): NftExpr => ({ concat: parts });
export const set = (elems: readonly NftExpr[]): NftExpr => ({ set: elems });
export const prefix = (addr: string, len: number): NftExpr => ({ prefix: { addr, len } });
export const range = (lo: NftExpr, hi: NftExpr): NftExpr => ({ range: [lo, hi] });
export const and = (left: NftExpr, mask: number): NftExpr => ({ '&': [left, mask] });
export const ref = (setName: string): string => `@${setName}`;

export const match = (left: NftExpr, right: NftExpr, op: '==' | '!=' | 'in' = '=='): NftStmt => ({
  match: { op, left, right },
});
export const accept: NftStmt = { accept: null };
export const drop: NftStmt = { drop: null };
export const ret: NftStmt = { return: null };
export const notrack: NftStmt = { notrack: null };
export const jump = (target: string): NftStmt => ({ jump: { target } });
export const namedCounter = (name: string): NftStmt => ({ counter: name });
export const vmap = (key: NftExpr, mapName: string): NftStmt => ({ vmap: { key, data: ref(mapName) } });
export const setMark = (value: NftExpr): NftStmt => ({ mangle: { key: meta('mark'), value } });
