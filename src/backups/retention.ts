/**
 * Which scheduled backups to keep (restic's `forget --keep-*` semantics):
 * the `last` newest, plus the newest backup of each of the `daily` most
 * recent days, `weekly` ISO weeks and `monthly` months that have one. A
 * backup kept by any rule stays. Times are UTC.
 */
export interface RetentionPolicy {
  last: number;
  daily: number;
  weekly: number;
  monthly: number;
}

const day = (d: Date) => d.toISOString().slice(0, 10);
const month = (d: Date) => d.toISOString().slice(0, 7);
function isoWeek(d: Date): string {
  const t = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()));
  const dow = t.getUTCDay() || 7;
  t.setUTCDate(t.getUTCDate() + 4 - dow); // the week's Thursday decides its year
  const y = t.getUTCFullYear();
  const week = Math.ceil(((t.getTime() - Date.UTC(y, 0, 1)) / 86_400_000 + 1) / 7);
  return `${y}-W${String(week).padStart(2, '0')}`;
}

export function retained(
  backups: readonly { id: string; created_at: string }[],
  p: RetentionPolicy,
): Set<string> {
  const newest = [...backups].sort((a, b) => b.created_at.localeCompare(a.created_at));
  const keep = new Set(newest.slice(0, Math.max(0, p.last)).map((b) => b.id));
  for (const [n, bucket] of [
    [p.daily, day],
    [p.weekly, isoWeek],
    [p.monthly, month],
  ] as const) {
    const seen = new Set<string>();
    for (const b of newest) {
      if (seen.size >= n) break;
      const k = bucket(new Date(b.created_at));
      if (seen.has(k)) continue;
      seen.add(k);
      keep.add(b.id);
    }
  }
  return keep;
}
