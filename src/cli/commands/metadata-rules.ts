import type { Command } from 'commander';
import type { MetadataRule } from '../../governance/server-metadata.js';
import { withClient, withFormat } from '../common.js';
import { printList, printObject } from '../output.js';

const globals = (cmd: Command) =>
  cmd.optsWithGlobals<{ osCloud?: string; format: 'table' | 'json' | 'value' }>();

/** `bulwark metadata-rule list|create|delete`: required server metadata (docs/metadata.md). */
export function registerMetadataRuleCommands(program: Command): void {
  const rule = program
    .command('metadata-rule')
    .description('Required server metadata, e.g. environment=production requires ticket');
  withFormat(
    rule.command('list').description('The rules every server create and metadata change must meet'),
  ).action(async (_o, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) => {
      const r = await c.request<{ rules: MetadataRule[] }>('bulwark', 'GET', '/metadata-rules');
      printList(
        g.format,
        ['id', 'when', 'requires', 'created_by', 'created_at'],
        r.rules.map((x) => ({ ...x, when: `${x.when.key}=${x.when.value}`, requires: x.requires.join(',') })),
      );
    });
  });
  withFormat(
    rule
      .command('create <id>')
      .description('Add a rule (cloud admin)')
      .requiredOption('--when <key=value>', 'the metadata the rule is about, e.g. compliance_level=pci-dss')
      .requiredOption(
        '--require <key>',
        'a key such servers must have (repeatable)',
        (v: string, acc: string[]) => [...acc, v],
        [] as string[],
      ),
  ).action(async (id: string, o: { when: string; require: string[] }, cmd: Command) => {
    const g = globals(cmd);
    const eq = o.when.indexOf('=');
    if (eq < 1) throw new Error('--when takes key=value, e.g. environment=production.');
    await withClient(g, async (c) => {
      const r = await c.request<{ rule: MetadataRule }>('bulwark', 'POST', '/metadata-rules', {
        rule: { id, when: { key: o.when.slice(0, eq), value: o.when.slice(eq + 1) }, requires: o.require },
      });
      printObject(g.format, { ...r.rule });
    });
  });
  rule
    .command('delete <id>')
    .description('Remove a rule (cloud admin)')
    .action(async (id: string, _o, cmd: Command) => {
      await withClient(globals(cmd), async (c) => {
        await c.request('bulwark', 'DELETE', `/metadata-rules/${encodeURIComponent(id)}`);
      });
    });
}
