import { readFileSync } from 'node:fs';
import { type Command, Option } from 'commander';
import { BulwarkClient } from '../client.js';
import { withClient, withFormat } from '../common.js';
import { printCsv, printList, printObject } from '../output.js';

type Obj = Record<string, unknown>;
const globals = (cmd: Command) =>
  cmd.optsWithGlobals<{ osCloud?: string; format: 'table' | 'json' | 'value' }>();

/** The sealed secret, from a file or stdin (`-`): never from the command line, where `ps` shows it. */
function readSecret(file: string): string {
  const text = readFileSync(file === '-' ? 0 : file, 'utf8').trim();
  if (!text) throw new Error(`no secret in ${file === '-' ? 'stdin' : file}`);
  return text;
}

const REVIEW_COLUMNS = [
  'id',
  'user_name',
  'opened_at',
  'expires_at',
  'source_ip',
  'reason',
  'open',
  'closed_by',
  'note',
];
const REVIEW_USER_COLUMNS = [
  'name',
  'enabled',
  'cloud_admin',
  'roles',
  'mfa_enabled',
  'totp_credentials',
  'application_credentials',
  'last_login_at',
  'password_age_days',
  'locked',
  'flags',
];

export function registerBreakGlassCommands(program: Command): void {
  const bg = program
    .command('break-glass')
    .description(
      'Emergency admin access: sealed credential, stated reason, short session, reviewed (docs/identity.md)',
    );
  withFormat(
    bg.command('create <name>').description('Create an emergency admin; prints its sealed credential once'),
  ).action(async (name: string, _o, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) => {
      const r = await c.request<{ account: Obj; secret: string; notice: string }>(
        'bulwark',
        'POST',
        '/break-glass/accounts',
        { account: { name } },
      );
      printObject(g.format, { ...r.account, secret: r.secret, notice: r.notice });
    });
  });
  withFormat(bg.command('list').description('List emergency admin accounts')).action(
    async (_o, cmd: Command) => {
      const g = globals(cmd);
      await withClient(g, async (c) => {
        const r = await c.request<{ accounts: Obj[] }>('bulwark', 'GET', '/break-glass/accounts');
        printList(g.format, ['id', 'name', 'user_id', 'created_at', 'created_by'], r.accounts);
      });
    },
  );
  bg.command('delete <id>')
    .description('Delete an emergency admin account (e.g. to rotate its credential after use)')
    .action(async (id: string, _o, cmd: Command) => {
      await withClient(globals(cmd), async (c) => {
        await c.request('bulwark', 'DELETE', `/break-glass/accounts/${encodeURIComponent(id)}`);
      });
    });
  withFormat(
    bg
      .command('use <name>')
      .description('Open a 15-minute emergency admin session; prints OS_TOKEN for the other commands')
      .requiredOption('--reason <text>', 'why emergency access is needed (recorded, alerted, reviewed)')
      .option('--secret-file <file>', 'file holding the sealed credential, or - for stdin', '-'),
  ).action(async (name: string, o: { reason: string; secretFile: string }, cmd: Command) => {
    const g = globals(cmd);
    const authUrl = process.env.OS_AUTH_URL;
    if (!authUrl)
      throw new Error('Set OS_AUTH_URL (and OS_CACERT) to the cloud, e.g. https://HOST:8443/identity/v3');
    const client = new BulwarkClient({
      authUrl,
      username: name,
      password: '',
      projectName: undefined,
      userDomainName: 'Default',
      projectDomainName: 'Default',
      cacert: process.env.OS_CACERT,
    });
    try {
      const r = await client.publicPost<{ session: Obj }>('/break-glass/sessions', {
        session: { name, secret: readSecret(o.secretFile), reason: o.reason },
      });
      printObject(g.format, r.json.session, ['token', 'expires_at', 'review_id', 'user_id', 'project_id']);
    } finally {
      await client.close();
    }
  });
  withFormat(
    bg
      .command('reviews')
      .description('List break-glass uses and their review state')
      .option('--open', 'only reviews not yet closed'),
  ).action(async (o: { open?: boolean }, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) => {
      const r = await c.request<{ reviews: Obj[] }>(
        'bulwark',
        'GET',
        `/break-glass/reviews${o.open ? '?open=true' : ''}`,
      );
      printList(g.format, REVIEW_COLUMNS, r.reviews);
    });
  });
  withFormat(
    bg
      .command('close <review>')
      .description('Close a break-glass review with the post-incident note')
      .requiredOption('--note <text>', 'what happened, what was done, whether the credential was rotated'),
  ).action(async (id: string, o: { note: string }, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) => {
      const r = await c.request<{ review: Obj }>(
        'bulwark',
        'POST',
        `/break-glass/reviews/${encodeURIComponent(id)}/close`,
        { note: o.note },
      );
      printObject(g.format, r.review, REVIEW_COLUMNS);
    });
  });

  const access = program.command('access').description('Access governance');
  access
    .command('review')
    .description(
      'Every user with roles per project, MFA, last login and credential age; flags stale or over-privileged',
    )
    .addOption(
      new Option('-f, --format <format>', 'output format')
        .choices(['table', 'json', 'value', 'csv'])
        .default('table'),
    )
    .option('--stale-days <n>', 'no login for this many days is stale (default 90)')
    .option('--flagged', 'only users with at least one flag')
    .action(async (o: { staleDays?: string; flagged?: boolean }, cmd: Command) => {
      const g = cmd.optsWithGlobals<{ osCloud?: string; format: 'table' | 'json' | 'value' | 'csv' }>();
      await withClient(g, async (c) => {
        const r = await c.request<{ access_review: { users: Obj[] } }>(
          'bulwark',
          'GET',
          `/access-review${o.staleDays ? `?stale_days=${encodeURIComponent(o.staleDays)}` : ''}`,
        );
        const users = r.access_review.users.filter((u) => !o.flagged || (u.flags as string[]).length > 0);
        if (g.format === 'json') console.log(JSON.stringify({ ...r.access_review, users }, null, 2));
        else if (g.format === 'csv') printCsv(REVIEW_USER_COLUMNS, users);
        else printList(g.format, REVIEW_USER_COLUMNS, users);
      });
    });
}
