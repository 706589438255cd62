import type { Command } from 'commander';
import type { ApprovalView, Trigger } from '../../governance/approvals.js';
import { withClient, withFormat } from '../common.js';
import { printList, printObject } from '../output.js';

const globals = (cmd: Command) =>
  cmd.optsWithGlobals<{ osCloud?: string; format: 'table' | 'json' | 'value' }>();

const COLUMNS = [
  'id',
  'kind',
  'status',
  'requester_name',
  'project_id',
  'summary',
  'created_at',
  'decided_by_name',
];

/** Prints a decided approval; an approved request that failed to run exits 1. */
function printDecision(format: 'table' | 'json' | 'value', a: ApprovalView): void {
  printObject(format, { ...a });
  if (a.status === 'failed') process.exitCode = 1;
}

/** A request the API held for approval (202): says so on stderr and prints the approval. */
export function printHeld(
  format: 'table' | 'json' | 'value',
  r: { approval: Record<string, unknown>; message: string },
) {
  process.stderr.write(`${r.message}\n`);
  printObject(format, r.approval, ['id', 'kind', 'status', 'summary', 'approve_with']);
}

/** `bulwark approval list|show|approve|reject` and `approval trigger list|set` (docs/approvals.md). */
export function registerApprovalCommands(program: Command): void {
  const approval = program.command('approval').description('Requests held for a second administrator');
  withFormat(
    approval
      .command('list')
      .description("List approvals (admins: every project's; others: their project's)")
      .option('--status <status>', 'pending, approved, executed, failed or rejected')
      .option('--kind <kind>', 'e.g. server-create')
      .option('--project-only', "admins: only the token's project"),
  ).action(async (o: { status?: string; kind?: string; projectOnly?: boolean }, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) => {
      const q = new URLSearchParams();
      if (o.status) q.set('status', o.status);
      if (o.kind) q.set('kind', o.kind);
      if (o.projectOnly) q.set('all_projects', 'false');
      const r = await c.request<{ approvals: ApprovalView[] }>('bulwark', 'GET', `/approvals?${q}`);
      printList(g.format, COLUMNS, r.approvals as unknown as Record<string, unknown>[]);
    });
  });
  withFormat(
    approval.command('show <id>').description('Show one approval, its request and its outcome'),
  ).action(async (id: string, _o, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) => {
      const r = await c.request<{ approval: ApprovalView }>(
        'bulwark',
        'GET',
        `/approvals/${encodeURIComponent(id)}`,
      );
      printObject(g.format, { ...r.approval });
    });
  });
  for (const decision of ['approve', 'reject'] as const) {
    withFormat(
      approval
        .command(`${decision} <id>`)
        .description(
          decision === 'approve'
            ? 'Approve (cloud admin, not the requester): the request runs as its requester'
            : 'Reject (cloud admin, not the requester): the request never runs',
        )
        .requiredOption('--reason <text>', 'why; stored with the decision and in the audit log'),
    ).action(async (id: string, o: { reason: string }, cmd: Command) => {
      const g = globals(cmd);
      await withClient(g, async (c) => {
        const r = await c.request<{ approval: ApprovalView }>(
          'bulwark',
          'POST',
          `/approvals/${encodeURIComponent(id)}/${decision}`,
          { reason: o.reason },
        );
        printDecision(g.format, r.approval);
      });
    });
  }

  const trigger = approval.command('trigger').description('What turns a request into a pending approval');
  withFormat(
    trigger.command('list').description('The triggers, whether each is on, and their thresholds'),
  ).action(async (_o, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) => {
      const r = await c.request<{ triggers: Trigger[] }>('bulwark', 'GET', '/approval-triggers');
      printList(
        g.format,
        ['kind', 'enabled', 'params', 'description', 'updated_by'],
        r.triggers as unknown as Record<string, unknown>[],
      );
    });
  });
  withFormat(
    trigger
      .command('set <kind>')
      .description('Turn a trigger on or off, or change a threshold (cloud admin)')
      .option('--enable', 'hold matching requests for approval')
      .option('--disable', 'let matching requests run without approval')
      .option(
        '--param <name=value>',
        'a threshold, e.g. vcpus=16 (repeatable)',
        (v: string, acc: string[]) => [...acc, v],
        [] as string[],
      ),
  ).action(
    async (kind: string, o: { enable?: boolean; disable?: boolean; param: string[] }, cmd: Command) => {
      const g = globals(cmd);
      if (o.enable && o.disable) throw new Error('Give --enable or --disable, not both.');
      const params: Record<string, number> = {};
      for (const p of o.param) {
        const m = /^([a-z_]+)=(\d+)$/.exec(p);
        if (!m) throw new Error(`--param ${p}: use name=whole-number, e.g. vcpus=16.`);
        params[m[1] as string] = Number(m[2]);
      }
      await withClient(g, async (c) => {
        const r = await c.request<{ trigger: Trigger }>(
          'bulwark',
          'PUT',
          `/approval-triggers/${encodeURIComponent(kind)}`,
          {
            trigger: {
              ...(o.enable ? { enabled: true } : o.disable ? { enabled: false } : {}),
              ...(o.param.length ? { params } : {}),
            },
          },
        );
        printObject(g.format, { ...r.trigger });
      });
    },
  );
}
