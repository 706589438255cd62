import { describe, expect, it } from 'vitest';
import { BulwarkError } from '../errors.js';
import { effectivePolicy, NO_POLICY, planCreate, planPrune } from './lifecycle.js';
import { purposeOf, requiredDescription, snapshotName } from './naming.js';

const snaps = (...days: number[]) =>
  days.map((d, i) => ({ id: `s${i}`, createdAt: new Date(Date.UTC(2026, 0, 1 + d)).toISOString() }));

describe('snapshot lifecycle rules', () => {
  it('the effective policy is the stricter of project and resource for each limit', () => {
    expect(
      effectivePolicy(
        { maxCount: 10, maxAgeDays: null, pruneOldest: false },
        { maxCount: 20, maxAgeDays: 7, pruneOldest: true },
      ),
    ).toEqual({ maxCount: 10, maxAgeDays: 7, pruneOldest: true });
    expect(effectivePolicy(null, null)).toEqual(NO_POLICY);
  });

  it('warns at count-1 and at the count, refuses beyond it unless pruning makes room', () => {
    const p = { maxCount: 3, maxAgeDays: null, pruneOldest: false };
    expect(planCreate(snaps(), p, 'V')).toEqual({ prune: [], warning: null });
    expect(planCreate(snaps(0), p, 'V').warning).toMatch(/2 of 3/);
    expect(planCreate(snaps(0, 1), p, 'V').warning).toMatch(/3 of 3 .*refused/);
    expect(() => planCreate(snaps(0, 1, 2), p, 'V')).toThrow(BulwarkError);
    const prune = planCreate(snaps(2, 0, 1, 3), { ...p, pruneOldest: true }, 'V');
    expect(prune.prune).toEqual(['s1', 's2']); // the two oldest: day 0 and day 1
    expect(prune.warning).toMatch(/prunes the oldest/);
    expect(planCreate(snaps(0, 1, 2, 3), NO_POLICY, 'V')).toEqual({ prune: [], warning: null });
  });

  it('prunes what is past the age, then the oldest beyond the count', () => {
    const now = new Date(Date.UTC(2026, 0, 31));
    const p = { maxCount: 2, maxAgeDays: 10, pruneOldest: false };
    expect(planPrune(snaps(0, 25, 26, 27), p, now)).toEqual({ expired: ['s0'], overCount: ['s1'] });
    expect(planPrune(snaps(20), p, now)).toEqual({ expired: ['s0'], overCount: [] }); // exactly 10 days
    expect(planPrune(snaps(21), p, now)).toEqual({ expired: [], overCount: [] });
    expect(planPrune(snaps(0, 1), NO_POLICY, now)).toEqual({ expired: [], overCount: [] });
  });

  it('names carry purpose and UTC time; purpose and description are required', () => {
    const at = new Date('2026-12-01T07:45:09.123Z');
    expect(snapshotName(purposeOf('pre-upgrade'), at)).toBe('pre-upgrade-20261201T074509Z');
    expect(purposeOf('nightly-20261130T000000Z')).toBe('nightly');
    for (const bad of ['', null, undefined, '-x', 'has space', 'a/b', 'x'.repeat(65)])
      expect(() => purposeOf(bad)).toThrow(/purpose/);
    for (const bad of ['', '  ', null, undefined])
      expect(() => requiredDescription(bad)).toThrow(/description/);
    expect(() => requiredDescription('x'.repeat(256))).toThrow(/255/);
    expect(requiredDescription('  why  ')).toBe('why');
  });
});
