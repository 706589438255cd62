import type { Command } from 'commander';
import type { BulwarkClient } from '../client.js';
import { findByNameOrId, withClient, withFormat } from '../common.js';
import { printList, printObject } from '../output.js';

type Obj = { id: string; name?: string } & Record<string, unknown>;
const globals = (cmd: Command) =>
  cmd.optsWithGlobals<{ osCloud?: string; format: 'table' | 'json' | 'value' }>();

export function registerIdentityCommands(program: Command): void {
  const token = program.command('token').description('Identity tokens');
  withFormat(token.command('issue').description('Issue a new token')).action(async (_o, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) => {
      await c.authenticate();
      const t = c.tokenInfo as { expires_at?: string; project?: { id?: string }; user?: { id?: string } };
      printObject(g.format, { expires: t.expires_at, project_id: t.project?.id, user_id: t.user?.id });
    });
  });

  const project = program.command('project').description('Projects (tenants)');
  withFormat(project.command('list').description('List projects')).action(async (_o, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) => {
      const r = await c.request<{ projects: Obj[] }>('identity', 'GET', '/projects');
      printList(g.format, ['id', 'name', 'domain_id', 'enabled'], r.projects);
    });
  });
  withFormat(project.command('show <project>').description('Show a project')).action(
    async (ref: string, _o, cmd: Command) => {
      const g = globals(cmd);
      await withClient(g, async (c) =>
        printObject(g.format, await findByNameOrId<Obj>(c, 'identity', 'projects', 'project', ref)),
      );
    },
  );
  withFormat(
    project
      .command('create <name>')
      .description('Create a project')
      .option('--description <text>', 'description')
      .option('--domain <domain>', 'owning domain id', 'default')
      .option('--disable', 'create disabled'),
  ).action(
    async (name: string, o: { description?: string; domain: string; disable?: boolean }, cmd: Command) => {
      const g = globals(cmd);
      await withClient(g, async (c) => {
        const r = await c.request<{ project: Obj }>('identity', 'POST', '/projects', {
          project: {
            name,
            domain_id: o.domain,
            enabled: !o.disable,
            ...(o.description ? { description: o.description } : {}),
          },
        });
        printObject(g.format, r.project);
      });
    },
  );
  project
    .command('delete <project...>')
    .description('Delete projects')
    .action(async (refs: string[], _o, cmd: Command) => {
      await withClient(globals(cmd), async (c) => {
        for (const ref of refs) {
          const p = await findByNameOrId<Obj>(c, 'identity', 'projects', 'project', ref);
          await c.request('identity', 'DELETE', `/projects/${p.id}`);
        }
      });
    });

  const user = program.command('user').description('Users');
  withFormat(user.command('list').description('List users')).action(async (_o, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) => {
      const r = await c.request<{ users: Obj[] }>('identity', 'GET', '/users');
      printList(g.format, ['id', 'name', 'domain_id', 'enabled'], r.users);
    });
  });
  withFormat(user.command('show <user>').description('Show a user')).action(
    async (ref: string, _o, cmd: Command) => {
      const g = globals(cmd);
      await withClient(g, async (c) =>
        printObject(g.format, await findByNameOrId<Obj>(c, 'identity', 'users', 'user', ref)),
      );
    },
  );
  withFormat(
    user
      .command('create <name>')
      .description('Create a user')
      .option('--password <password>', 'password (prefer --password-prompt or OS env in scripts)')
      .option('--project <project>', 'default project')
      .option('--email <email>', 'email')
      .option('--description <text>', 'description')
      .option('--domain <domain>', 'domain id', 'default')
      .option('--disable', 'create disabled'),
  ).action(
    async (
      name: string,
      o: {
        password?: string;
        project?: string;
        email?: string;
        description?: string;
        domain: string;
        disable?: boolean;
      },
      cmd: Command,
    ) => {
      const g = globals(cmd);
      await withClient(g, async (c) => {
        const projectId = o.project
          ? (await findByNameOrId<Obj>(c, 'identity', 'projects', 'project', o.project)).id
          : undefined;
        const r = await c.request<{ user: Obj }>('identity', 'POST', '/users', {
          user: {
            name,
            domain_id: o.domain,
            enabled: !o.disable,
            ...(o.password ? { password: o.password } : {}),
            ...(projectId ? { default_project_id: projectId } : {}),
            ...(o.email ? { email: o.email } : {}),
            ...(o.description ? { description: o.description } : {}),
          },
        });
        printObject(g.format, r.user);
      });
    },
  );
  user
    .command('set <user>')
    .description('Change a user')
    .option('--name <name>', 'new name')
    .option('--password <password>', 'new password')
    .option('--email <email>', 'email')
    .option('--enable', 'enable')
    .option('--disable', 'disable')
    .action(
      async (
        ref: string,
        o: { name?: string; password?: string; email?: string; enable?: boolean; disable?: boolean },
        cmd: Command,
      ) => {
        await withClient(globals(cmd), async (c) => {
          const u = await findByNameOrId<Obj>(c, 'identity', 'users', 'user', ref);
          await c.request('identity', 'PATCH', `/users/${u.id}`, {
            user: {
              ...(o.name ? { name: o.name } : {}),
              ...(o.password ? { password: o.password } : {}),
              ...(o.email ? { email: o.email } : {}),
              ...(o.enable ? { enabled: true } : {}),
              ...(o.disable ? { enabled: false } : {}),
            },
          });
        });
      },
    );
  user
    .command('delete <user...>')
    .description('Delete users')
    .action(async (refs: string[], _o, cmd: Command) => {
      await withClient(globals(cmd), async (c) => {
        for (const ref of refs) {
          const u = await findByNameOrId<Obj>(c, 'identity', 'users', 'user', ref);
          await c.request('identity', 'DELETE', `/users/${u.id}`);
        }
      });
    });

  // Cloud admin: another user's second factors (docs/identity.md), listed without secrets, revoked by id.
  const mfa = user
    .command('mfa')
    .description("Admin: a user's second factors (TOTP, security keys, recovery codes)");
  const devicesOf = async (c: BulwarkClient, ref: string) =>
    `/users/${(await findByNameOrId<Obj>(c, 'identity', 'users', 'user', ref)).id}/mfa-devices`;
  withFormat(mfa.command('list <user>').description("List a user's second factors")).action(
    async (ref: string, _o, cmd: Command) => {
      const g = globals(cmd);
      await withClient(g, async (c) => {
        const r = await c.request<{ mfa_devices: Obj[] }>('bulwark', 'GET', await devicesOf(c, ref));
        printList(g.format, ['id', 'type', 'name', 'created_at', 'last_used_at', 'remaining'], r.mfa_devices);
      });
    },
  );
  mfa
    .command('revoke <user> <device>')
    .description(
      "Revoke one of a user's factors by its id (from `mfa list`; `recovery-codes` for their codes)",
    )
    .action(async (ref: string, device: string, _o, cmd: Command) => {
      await withClient(globals(cmd), async (c) => {
        await c.request('bulwark', 'DELETE', `${await devicesOf(c, ref)}/${encodeURIComponent(device)}`);
      });
    });

  const role = program.command('role').description('Roles and assignments');
  withFormat(role.command('list').description('List roles')).action(async (_o, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) => {
      const r = await c.request<{ roles: Obj[] }>('identity', 'GET', '/roles');
      printList(g.format, ['id', 'name'], r.roles);
    });
  });
  const grant =
    (method: 'PUT' | 'DELETE') =>
    async (roleRef: string, o: { project: string; user: string }, cmd: Command) => {
      await withClient(globals(cmd), async (c) => {
        const [r, p, u] = await Promise.all([
          findByNameOrId<Obj>(c, 'identity', 'roles', 'role', roleRef),
          findByNameOrId<Obj>(c, 'identity', 'projects', 'project', o.project),
          findByNameOrId<Obj>(c, 'identity', 'users', 'user', o.user),
        ]);
        await c.request('identity', method, `/projects/${p.id}/users/${u.id}/roles/${r.id}`);
      });
    };
  role
    .command('add <role>')
    .description('Grant a role')
    .requiredOption('--project <project>')
    .requiredOption('--user <user>')
    .action(grant('PUT'));
  role
    .command('remove <role>')
    .description('Revoke a role')
    .requiredOption('--project <project>')
    .requiredOption('--user <user>')
    .action(grant('DELETE'));
  withFormat(
    role
      .command('assignment')
      .command('list')
      .description('List role assignments')
      .option('--user <user>')
      .option('--project <project>'),
  ).action(async (o: { user?: string; project?: string }, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) => {
      const q = new URLSearchParams({ include_names: 'true' });
      if (o.user) q.set('user.id', (await findByNameOrId<Obj>(c, 'identity', 'users', 'user', o.user)).id);
      if (o.project)
        q.set(
          'scope.project.id',
          (await findByNameOrId<Obj>(c, 'identity', 'projects', 'project', o.project)).id,
        );
      const r = await c.request<{ role_assignments: { role: Obj; user: Obj; scope: { project: Obj } }[] }>(
        'identity',
        'GET',
        `/role_assignments?${q}`,
      );
      printList(
        g.format,
        ['role', 'user', 'project'],
        r.role_assignments.map((a) => ({
          role: a.role.name,
          user: a.user.name,
          project: a.scope.project.name,
        })),
      );
    });
  });
}
