import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import type { VerifyResult } from '../../audit/verify.js';
import { verifyAuditChain } from '../../audit/verify.js';
import { openStore } from '../../store/database.js';
import { withClient, withFormat } from '../common.js';
import { printList, printObject } from '../output.js';

const globals = (cmd: Command) =>
  cmd.optsWithGlobals<{ osCloud?: string; format: 'table' | 'json' | 'value' }>();

function report(format: 'table' | 'json' | 'value', v: VerifyResult): void {
  printObject(
    format,
    {
      ok: v.ok,
      checked: v.checked,
      first_bad_seq: v.failure?.seq ?? null,
      first_bad_id: v.failure?.id ?? null,
      problem: v.failure?.problem ?? null,
    },
    ['ok', 'checked', 'first_bad_seq', 'first_bad_id', 'problem'],
  );
  if (!v.ok) process.exitCode = 3;
}

export function registerAuditCommands(program: Command): void {
  const audit = program.command('audit').description('The hash-chained audit log');
  withFormat(
    audit
      .command('list')
      .description('List audit events, newest first')
      .option('--since <time>', 'ISO time')
      .option('--until <time>', 'ISO time')
      .option('--user <user>', 'user name or id')
      .option('--action <action>', 'policy action, e.g. identity:create_project')
      .option('--outcome <outcome>', 'success, failure or denied')
      .option('--limit <n>', 'most events to show', '100'),
  ).action(async (o: Record<string, string | undefined>, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) => {
      const q = new URLSearchParams();
      for (const k of ['since', 'until', 'user', 'action', 'outcome', 'limit']) {
        const v = o[k];
        if (v !== undefined) q.set(k, k === 'since' || k === 'until' ? new Date(v).toISOString() : v);
      }
      const r = await c.request<{ events: Record<string, unknown>[] }>(
        'bulwark',
        'GET',
        `/audit/events?${q}`,
      );
      printList(
        g.format,
        [
          'seq',
          'time',
          'user_name',
          'project_id',
          'source_ip',
          'action',
          'target_id',
          'outcome',
          'status',
          'reason',
        ],
        r.events,
      );
    });
  });
  withFormat(
    audit
      .command('verify')
      .description('Walk the audit chain and report the first altered, deleted or reordered record')
      .option('--data-dir <dir>', 'verify the store in this data directory directly, without the API')
      .option('--database-url <url>', 'verify this database directly, without the API'),
  ).action(async (o: { dataDir?: string; databaseUrl?: string }, cmd: Command) => {
    const g = globals(cmd);
    const url = o.databaseUrl ?? (o.dataDir ? join(resolve(o.dataDir), 'bulwark.db') : undefined);
    if (url) {
      const store = await openStore({ url });
      try {
        report(g.format, await verifyAuditChain(store));
      } finally {
        await store.close();
      }
      return;
    }
    await withClient(g, async (c) => {
      report(
        g.format,
        (await c.request<{ verification: VerifyResult }>('bulwark', 'GET', '/audit/verify')).verification,
      );
    });
  });
}
