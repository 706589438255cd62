import { writeFile } from 'node:fs/promises';
import { type Command, Option } from 'commander';
import { FRAMEWORKS } from '../../compliance/catalogue.js';
import { REPORT_FORMATS } from '../../compliance/render.js';
import { withClient, withFormat } from '../common.js';
import { printList } from '../output.js';

/** `bulwark compliance ...` (docs/compliance.md): the control catalogue, live reports and their history. */

type Obj = Record<string, unknown>;
const globals = (cmd: Command) =>
  cmd.optsWithGlobals<{ osCloud?: string; format: 'table' | 'json' | 'value' }>();

export function registerComplianceCommands(program: Command): void {
  const compliance = program
    .command('compliance')
    .description(
      'Compliance: controls mapped to PCI DSS, HIPAA and SOC 2, checked live against this platform',
    );

  withFormat(
    compliance
      .command('controls')
      .description('List the control catalogue (admin)')
      .addOption(
        new Option('--framework <framework>', 'only the controls one framework maps').choices(FRAMEWORKS),
      ),
  ).action(async (o: { framework?: string }, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) => {
      const q = o.framework ? `?framework=${o.framework}` : '';
      const { controls } = await c.request<{ controls: Obj[] }>('bulwark', 'GET', `/compliance/controls${q}`);
      const rows = controls.map((x) => {
        const m = x.mappings as Record<string, string[]>;
        return {
          ...x,
          'pci-dss': m['pci-dss']?.join(', '),
          hipaa: m.hipaa?.join(', '),
          soc2: m.soc2?.join(', '),
        };
      });
      printList(g.format, ['id', 'title', 'priority', 'effort', 'scope', 'pci-dss', 'hipaa', 'soc2'], rows);
    });
  });

  compliance
    .command('report')
    .description(
      "Check every control now, keep the run, and print one framework's report with its evidence (admin)",
    )
    .addOption(
      new Option('--framework <framework>', 'the framework').choices(FRAMEWORKS).makeOptionMandatory(),
    )
    .addOption(new Option('--format <format>', 'report format').choices(REPORT_FORMATS).default('markdown'))
    .option('--output <file>', 'write the report to a file instead of standard output')
    .action(async (o: { framework: string; format: string; output?: string }, cmd: Command) => {
      const g = cmd.optsWithGlobals<{ osCloud?: string }>();
      await withClient(g, async (c) => {
        process.stderr.write('Checking every control against the platform and its hosts...\n');
        const { run } = await c.request<{ run: Obj }>('bulwark', 'POST', '/compliance/runs', {});
        process.stderr.write(
          `Run ${String(run.id)}: ${String(run.passed)} pass, ${String(run.failed)} fail, ${String(run.not_applicable)} not applicable.\n`,
        );
        const { report } = await c.request<{ report: Obj }>(
          'bulwark',
          'GET',
          `/compliance/runs/${encodeURIComponent(String(run.id))}/report?framework=${o.framework}&format=${o.format}`,
        );
        const text = o.format === 'json' ? `${JSON.stringify(report, null, 2)}\n` : String(report.content);
        if (o.output) {
          await writeFile(o.output, text, { mode: 0o600 });
          process.stderr.write(`Wrote ${o.output}\n`);
        } else console.log(text.replace(/\n$/, ''));
      });
    });

  withFormat(
    compliance
      .command('history')
      .description('List past compliance runs, newest first (admin)')
      .option('--limit <n>', 'how many runs', '20'),
  ).action(async (o: { limit: string }, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) => {
      const { runs } = await c.request<{ runs: Obj[] }>(
        'bulwark',
        'GET',
        `/compliance/runs?limit=${encodeURIComponent(o.limit)}`,
      );
      printList(
        g.format,
        ['id', 'created_at', 'created_by_name', 'passed', 'failed', 'not_applicable'],
        runs,
      );
    });
  });
}
