import type { Command } from 'commander';
import { withClient, withFormat } from '../common.js';
import { printList, printObject } from '../output.js';
import { findImage } from './compute.js';

/** `bulwark template ...` (docs/templates.md): pinned, immutable template versions, approved by a second admin. */

type Obj = Record<string, unknown>;
const globals = (cmd: Command) =>
  cmd.optsWithGlobals<{ osCloud?: string; format: 'table' | 'json' | 'value' }>();
const COLUMNS = ['id', 'name', 'version', 'status', 'image_id', 'sha256', 'approved_by'];

export function registerTemplateCommands(program: Command): void {
  const template = program
    .command('template')
    .description('Templates: immutable, versioned images; each version approved by a second admin');

  withFormat(
    template
      .command('create <name>')
      .description('Make an image the next version of template <name> (admin); it waits for approval')
      .requiredOption('--image <image>', 'the image (name or ID); it can no longer change afterwards')
      .option('--description <text>', 'what the template is'),
  ).action(async (name: string, o: { image: string; description?: string }, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) => {
      const img = await findImage(c, o.image);
      const r = await c.request<{ template: Obj; message: string }>('bulwark', 'POST', '/templates', {
        template: { name, image_id: img.id, ...(o.description ? { description: o.description } : {}) },
      });
      process.stderr.write(`${r.message}\n`);
      printObject(g.format, r.template);
    });
  });

  withFormat(
    template.command('list').description('List template versions').option('--name <name>', 'one template'),
  ).action(async (o: { name?: string }, cmd: Command) => {
    const g = globals(cmd);
    await withClient(g, async (c) => {
      const q = o.name ? `?name=${encodeURIComponent(o.name)}` : '';
      printList(
        g.format,
        COLUMNS,
        (await c.request<{ templates: Obj[] }>('bulwark', 'GET', `/templates${q}`)).templates,
      );
    });
  });

  withFormat(template.command('show <id>').description('Show a template version')).action(
    async (id: string, _o, cmd: Command) => {
      const g = globals(cmd);
      await withClient(g, async (c) => {
        printObject(
          g.format,
          (await c.request<{ template: Obj }>('bulwark', 'GET', `/templates/${encodeURIComponent(id)}`))
            .template,
        );
      });
    },
  );
}
