import { CONTROLS, FRAMEWORK_NAMES } from './catalogue.js';
import type { Report } from './service.js';
import type { CheckResult } from './verdict.js';

/**
 * A framework report as JSON, Markdown or a standalone HTML page
 * (docs/compliance.md). Every value from the platform (resource names,
 * reasons) is escaped for the output's syntax: names are user input.
 */
export const REPORT_FORMATS = ['json', 'markdown', 'html'] as const;
export type ReportFormat = (typeof REPORT_FORMATS)[number];

export function renderReport(r: Report, format: ReportFormat): string {
  if (format === 'json') return `${JSON.stringify(r, null, 2)}\n`;
  return format === 'markdown' ? markdown(r) : html(r);
}

const VERDICT_WORD = { pass: 'PASS', fail: 'FAIL', not_applicable: 'N/A' } as const;

/** Markdown-inert text: no markup characters, no line breaks, no raw HTML. */
const md = (s: string) =>
  s
    .replace(/[\r\n]+/g, ' ')
    .replace(/[\\`*_{}[\]()#!|~]/g, (ch) => `\\${ch}`)
    .replace(/[&<>]/g, (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;' })[ch] ?? ch);

const offenderLine = (o: CheckResult['offenders'][number]) =>
  `${o.type} ${o.id}${o.name && o.name !== o.id ? ` (${o.name})` : ''}: ${o.detail}`;

function markdown(r: Report): string {
  const lines = [
    `# ${FRAMEWORK_NAMES[r.framework]} compliance report`,
    '',
    `Run ${md(r.run_id)} at ${md(r.generated_at)}: ${r.totals.pass} pass, ${r.totals.fail} fail, ${r.totals.not_applicable} not applicable.`,
    '',
    '| Control | Requirements | Verdict | Priority |',
    '|---|---|---|---|',
    ...r.rows.map(
      (x) =>
        `| ${md(x.control.id)} | ${x.requirements.map(md).join(', ')} | ${VERDICT_WORD[x.result.verdict]} | ${x.control.priority} |`,
    ),
    '',
  ];
  for (const x of r.rows) {
    lines.push(
      `## ${md(x.control.id)}: ${md(x.control.title)}`,
      '',
      `- Verdict: **${VERDICT_WORD[x.result.verdict]}** (${md(x.result.reason)})`,
      `- Requirements: ${x.requirements.map(md).join(', ')}`,
      `- Checked: ${md(x.result.checked)} at ${md(x.result.checked_at)}`,
    );
    if (x.result.offenders.length) {
      lines.push('- Offending resources:');
      for (const o of x.result.offenders) lines.push(`  - ${md(offenderLine(o))}`);
      lines.push(`- Remediation: ${md(x.control.remediation)}`);
    }
    lines.push('');
  }
  return lines.join('\n');
}

const esc = (s: string) =>
  s.replace(
    /[&<>"']/g,
    (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[ch] ?? ch,
  );

function html(r: Report): string {
  const rows = r.rows
    .map((x) => {
      const offenders = x.result.offenders.length
        ? `<ul>${x.result.offenders.map((o) => `<li>${esc(offenderLine(o))}</li>`).join('')}</ul><p>Remediation: ${esc(x.control.remediation)}</p>`
        : '';
      return `<tr class="${x.result.verdict}"><td>${esc(x.control.id)}<br>${esc(x.control.title)}</td><td>${x.requirements.map(esc).join(', ')}</td><td>${VERDICT_WORD[x.result.verdict]}</td><td>${esc(x.result.reason)}<br><small>Checked: ${esc(x.result.checked)} at ${esc(x.result.checked_at)}</small>${offenders}</td></tr>`;
    })
    .join('\n');
  const title = `${FRAMEWORK_NAMES[r.framework]} compliance report`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>${esc(title)}</title>
<style>body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #999;padding:4px;vertical-align:top}tr.fail td:nth-child(3){color:#a00}tr.pass td:nth-child(3){color:#060}</style>
</head><body>
<h1>${esc(title)}</h1>
<p>Run ${esc(r.run_id)} at ${esc(r.generated_at)}: ${r.totals.pass} pass, ${r.totals.fail} fail, ${r.totals.not_applicable} not applicable.</p>
<table><thead><tr><th>Control</th><th>Requirements</th><th>Verdict</th><th>Evidence</th></tr></thead><tbody>
${rows}
</tbody></table></body></html>
`;
}

/** The catalogue as the Markdown table docs/compliance.md carries (a test keeps the page equal to the data). */
export function catalogueTable(): string {
  const list = (xs: readonly string[]) => xs.join(', ') || '—';
  return [
    '| Control | Priority / effort | Scope | PCI DSS v4.0 | HIPAA | SOC 2 |',
    '|---|---|---|---|---|---|',
    ...CONTROLS.map(
      (c) =>
        `| \`${c.id}\` ${c.title} | ${c.priority} / ${c.effort}${c.rating === 'matrix' ? ' (matrix)' : ''} | ${c.scope} | ${list(c.mappings['pci-dss'])} | ${list(c.mappings.hipaa)} | ${list(c.mappings.soc2)} |`,
    ),
  ].join('\n');
}
