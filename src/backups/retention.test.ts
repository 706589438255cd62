import { describe, expect, it } from 'vitest';
import { retained } from './retention.js';

const at = (iso: string) => ({ id: iso, created_at: new Date(iso).toISOString() });

describe('retention', () => {
  // Hourly backups over 70 days (oldest first), as a schedule would make them.
  const hourly = Array.from({ length: 70 * 24 }, (_, i) =>
    at(new Date(Date.UTC(2026, 0, 1) + i * 3_600_000).toISOString()),
  );

  it('keeps the last N, then the newest of each recent day, ISO week and month', () => {
    const keep = retained(hourly, { last: 3, daily: 2, weekly: 2, monthly: 2 });
    const ids = [...keep].sort();
    const last = hourly.slice(-3).map((b) => b.id);
    for (const id of last) expect(keep.has(id)).toBe(true);
    // Days: the newest of the last day is already kept, plus the newest of the day before (23:00).
    expect(keep.has(new Date(Date.UTC(2026, 2, 10, 23)).toISOString())).toBe(true); // 2026-03-11 is day 70
    // Months: newest of March (the last backup) and of February (Feb 28 23:00).
    expect(keep.has(new Date(Date.UTC(2026, 1, 28, 23)).toISOString())).toBe(true);
    // Weeks: 2026-03-11 is in W11; the newest of W10 is Sunday 2026-03-08 23:00.
    expect(keep.has(new Date(Date.UTC(2026, 2, 8, 23)).toISOString())).toBe(true);
    expect(ids.length).toBe(3 + 1 + 1 + 1);
  });

  it('keeps nothing with an all-zero policy, and everything it has when rules reach far', () => {
    expect(retained(hourly, { last: 0, daily: 0, weekly: 0, monthly: 0 }).size).toBe(0);
    expect(retained(hourly.slice(0, 5), { last: 10, daily: 0, weekly: 0, monthly: 0 }).size).toBe(5);
  });

  it('ISO weeks cross years the ISO way (2027-01-01 is in 2026-W53, 2027-01-04 in 2027-W01)', () => {
    const keep = retained(
      [at('2026-12-31T10:00:00Z'), at('2027-01-01T10:00:00Z'), at('2027-01-04T10:00:00Z')],
      {
        last: 0,
        daily: 0,
        weekly: 5,
        monthly: 0,
      },
    );
    expect([...keep].sort()).toEqual(['2027-01-01T10:00:00Z', '2027-01-04T10:00:00Z']);
  });
});
