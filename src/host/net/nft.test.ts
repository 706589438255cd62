import { describe, expect, it } from 'vitest';
import type { NftRuleset } from '../../network/nft-json.js';
import { carryCounters, countersOf, parseNftList, replacementBatch, setElementsOf, tablesOf } from './nft.js';

const listing = (items: unknown[]) =>
  JSON.stringify({ nftables: [{ metainfo: { json_schema_version: 1 } }, ...items] });

describe('nft output validation', () => {
  it('accepts nft -j listings and rejects anything else', () => {
    expect(parseNftList(listing([{ table: { family: 'inet', name: 't', handle: 1 } }]))).toHaveLength(2);
    expect(() => parseNftList('Error: no such table')).toThrow(/not JSON/);
    expect(() => parseNftList('{"tables": []}')).toThrow(/no "nftables" array/);
    expect(() => parseNftList('{"nftables": [1]}')).toThrow(/malformed item/);
    expect(() => parseNftList('{"nftables": [{"a": 1, "b": 2}]}')).toThrow(/malformed item/);
  });

  it('reads counters only when every field has the right type', () => {
    const ok = { family: 'inet', table: 't', name: 'c', handle: 3, packets: 5, bytes: 300 };
    expect(countersOf(parseNftList(listing([{ counter: ok }])))).toEqual([
      { family: 'inet', table: 't', name: 'c', packets: 5, bytes: 300 },
    ]);
    for (const bad of [
      { ...ok, packets: '5' },
      { ...ok, bytes: -1 },
      { ...ok, packets: 1.5 },
      { ...ok, family: 'nope' },
      { ...ok, name: 7 },
      null,
    ])
      expect(() => countersOf(parseNftList(listing([{ counter: bad }])))).toThrow(/malformed counter/);
  });

  it('reads tables and set elements', () => {
    expect(tablesOf(parseNftList(listing([{ table: { family: 'arp', name: 'b', handle: 2 } }])))).toEqual([
      { family: 'arp', name: 'b' },
    ]);
    expect(() => tablesOf(parseNftList(listing([{ table: { family: 'inet' } }])))).toThrow(/malformed table/);
    const set = {
      set: {
        family: 'inet',
        name: 's',
        table: 't',
        type: 'ipv4_addr',
        elem: [
          '10.0.0.1',
          { prefix: { addr: '10.1.0.0', len: 16 } },
          { elem: { val: '10.2.0.1', counter: {} } },
        ],
      },
    };
    expect(setElementsOf(parseNftList(listing([set])))).toEqual(['10.0.0.1', '10.1.0.0/16', '10.2.0.1']);
    expect(() => setElementsOf(parseNftList(listing([{ set: { elem: [{ weird: true }] } }])))).toThrow(
      /unknown shape/,
    );
  });
});

describe('atomic replacement batch', () => {
  const rs: NftRuleset = {
    nftables: [
      { add: { table: { family: 'inet', name: 'b' } } },
      { add: { counter: { family: 'inet', table: 'b', name: 'c1' } } },
      { add: { counter: { family: 'inet', table: 'b', name: 'c2' } } },
      { add: { table: { family: 'arp', name: 'b' } } },
    ],
  };

  it('prefixes add+delete of every table so the whole swap is one transaction', () => {
    const batch = replacementBatch(rs);
    expect(batch.nftables.slice(0, 4)).toEqual([
      { add: { table: { family: 'inet', name: 'b' } } },
      { delete: { table: { family: 'inet', name: 'b' } } },
      { add: { table: { family: 'arp', name: 'b' } } },
      { delete: { table: { family: 'arp', name: 'b' } } },
    ]);
    expect(batch.nftables.slice(4)).toEqual(rs.nftables);
    expect(() => replacementBatch({ nftables: [] })).toThrow(/creates no table/);
  });

  it('carries counter values into the new tables by family, table and name', () => {
    const out = carryCounters(rs, [
      { family: 'inet', table: 'b', name: 'c1', packets: 9, bytes: 900 },
      { family: 'arp', table: 'b', name: 'c2', packets: 1, bytes: 1 },
    ]);
    expect(out.nftables[1]).toEqual({
      add: { counter: { family: 'inet', table: 'b', name: 'c1', packets: 9, bytes: 900 } },
    });
    expect(out.nftables[2]).toEqual(rs.nftables[2]);
  });
});
