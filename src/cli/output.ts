export type Format = 'table' | 'json' | 'value';

type Row = Record<string, unknown>;

const cell = (v: unknown): string =>
  v === null || v === undefined ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v);

function table(columns: readonly string[], rows: readonly Row[]): string {
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = `+${widths.map((w) => '-'.repeat(w + 2)).join('+')}+`;
  const fmt = (vals: readonly string[]) => `| ${vals.map((v, i) => v.padEnd(widths[i] ?? 0)).join(' | ')} |`;
  return [line, fmt(columns), line, ...rows.map((r) => fmt(columns.map((c) => cell(r[c])))), line].join('\n');
}

/** Prints a list the way `openstack ... list -f FORMAT` does. */
export function printList(format: Format, columns: readonly string[], rows: readonly Row[]): void {
  if (format === 'json') {
    console.log(
      JSON.stringify(
        rows.map((r) => Object.fromEntries(columns.map((c) => [c, r[c] ?? null]))),
        null,
        2,
      ),
    );
  } else if (format === 'value') {
    for (const r of rows) console.log(columns.map((c) => cell(r[c])).join(' '));
  } else {
    console.log(table(columns, rows));
  }
}

/** Prints one object as Field/Value pairs, like `openstack ... show`. */
export function printObject(format: Format, obj: Row, columns?: readonly string[]): void {
  const keys = columns ?? Object.keys(obj).sort();
  if (format === 'json') {
    console.log(JSON.stringify(Object.fromEntries(keys.map((k) => [k, obj[k] ?? null])), null, 2));
  } else if (format === 'value') {
    for (const k of keys) console.log(cell(obj[k]));
  } else {
    console.log(
      table(
        ['Field', 'Value'],
        keys.map((k) => ({ Field: k, Value: obj[k] })),
      ),
    );
  }
}

/** RFC 4180 CSV: a header row, fields quoted when they hold a comma, quote or line break. */
export function printCsv(columns: readonly string[], rows: readonly Row[]): void {
  const q = (v: string) => (/[",\r\n]/.test(v) ? `"${v.replaceAll('"', '""')}"` : v);
  const lines = [columns.map(q).join(','), ...rows.map((r) => columns.map((c) => q(cell(r[c]))).join(','))];
  console.log(lines.join('\r\n'));
}
