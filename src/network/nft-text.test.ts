import { describe, expect, it } from 'vitest';
import { normaliseRule } from './model.js';
import type { NftCommand } from './nft-json.js';
import { nativeBatch } from './nft-text.js';
import { groupObjects, groupUpdate } from './sg-sets.js';

const noGroups = (id: string, family: 4 | 6) => `m_${id}_${family}`;

describe('native nft text for in-place group batches', () => {
  it('renders element changes and a rebuilt lookup chain as one line', () => {
    const before = groupObjects({ id: 'web', rules: [normaliseRule({ direction: 'egress' })] }, noGroups);
    const after = groupObjects(
      {
        id: 'web',
        rules: [
          normaliseRule({ direction: 'egress' }),
          normaliseRule({
            direction: 'ingress',
            protocol: 'tcp',
            port_range_min: 80,
            port_range_max: 90,
            remote_ip_prefix: '10.0.0.0/8',
          }),
          normaliseRule({
            direction: 'ingress',
            ethertype: 'IPv6',
            protocol: 'udp',
            remote_ip_prefix: 'fd00::/8',
          }),
        ],
      },
      noGroups,
    );
    const text = nativeBatch(groupUpdate('t', before, after));
    expect(text).toBeDefined();
    expect(text).not.toMatch(/\n/);
    expect(text).toMatch(/add element inet t a_\w+_in4_t \{ 10\.0\.0\.0\/8 \. 6 \. 80-90 \}/);
    expect(text).toMatch(/add element inet t a_\w+_in6_p \{ fd00::\/8 \. 17 \}/);
    expect(text).toMatch(
      /flush chain inet t g_\w+_in; add rule inet t g_\w+_in ip saddr \. meta l4proto \. th dport @a_\w+_in4_t accept/,
    );
    const egress = nativeBatch(groupUpdate('t', after, before));
    expect(egress).toMatch(/delete element inet t a_\w+_in4_t/);
  });

  it('the egress verdict: mark and return', () => {
    const cmds: NftCommand[] = [
      {
        add: {
          rule: {
            family: 'inet',
            table: 't',
            chain: 'g_x_out',
            expr: [
              {
                match: {
                  op: '==',
                  left: {
                    concat: [{ payload: { protocol: 'ip', field: 'daddr' } }, { meta: { key: 'l4proto' } }],
                  },
                  right: '@a_x_out4_p',
                },
              },
              {
                mangle: {
                  key: { meta: { key: 'mark' } },
                  value: { '|': [{ meta: { key: 'mark' } }, 0x10000000] },
                },
              },
              { return: null },
            ],
          },
        },
      },
    ];
    expect(nativeBatch(cmds)).toBe(
      'add rule inet t g_x_out ip daddr . meta l4proto @a_x_out4_p meta mark set meta mark | 268435456 return',
    );
  });

  it('refuses what it cannot render exactly, and any value that could end the line or start a command', () => {
    const el = (elem: unknown[]): NftCommand[] => [
      { add: { element: { family: 'inet', table: 't', name: 's', elem: elem as never } } },
    ];
    expect(nativeBatch(el(['10.0.0.1']))).toBe('add element inet t s { 10.0.0.1 }');
    for (const bad of [
      '10.0.0.1\nflush ruleset',
      '10.0.0.1; flush ruleset',
      '1 }',
      '#x',
      '',
      -1,
      1.5,
      true,
      null,
    ])
      expect(nativeBatch(el([bad])), JSON.stringify(bad)).toBeUndefined();
    expect(
      nativeBatch([
        { add: { element: { family: 'inet', table: 't;flush ruleset', name: 's', elem: ['10.0.0.1'] } } },
      ]),
    ).toBeUndefined();
    // A rule a set cannot hold (here a `!=` match) and commands other than these four go as JSON.
    expect(
      nativeBatch([
        {
          add: {
            rule: {
              family: 'inet',
              table: 't',
              chain: 'c',
              expr: [{ match: { op: '!=', left: 1, right: 2 } }],
            },
          },
        },
      ]),
    ).toBeUndefined();
    expect(nativeBatch([{ flush: { table: { family: 'inet', name: 't' } } }])).toBeUndefined();
    expect(
      nativeBatch([{ add: { rule: { family: 'inet', table: 't', chain: 'c', expr: [{ counter: 'x' }] } } }]),
    ).toBeUndefined();
  });
});
