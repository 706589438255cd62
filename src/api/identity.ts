import type { FastifyInstance } from 'fastify';
import { registerCredentialRoutes } from './identity-credentials.js';
import { registerDirectoryRoutes } from './identity-directory.js';
import { registerRoleRoutes } from './identity-roles.js';
import { PREFIX } from './identity-schemas.js';
import { registerTokenRoutes } from './identity-tokens.js';
import { registerUserRoutes } from './identity-users.js';
import type { ApiContext } from './server.js';

const VERSION = (publicUrl: string) => ({
  id: 'v3.14',
  status: 'stable',
  updated: '2020-04-07T00:00:00Z',
  links: [{ rel: 'self', href: `${publicUrl}${PREFIX}/` }],
  'media-types': [{ base: 'application/json', type: 'application/vnd.openstack.identity-v3+json' }],
});

/** Keystone v3 at /identity/v3: version discovery here, the resources in the identity-*.ts modules. */
export async function registerIdentityApi(app: FastifyInstance, ctx: ApiContext): Promise<void> {
  const { publicUrl } = ctx;
  const base = `${publicUrl}${PREFIX}`;
  ctx.services.push({ type: 'identity', name: 'keystone', path: PREFIX });

  // ---- version discovery --------------------------------------------------
  app.get('/identity', { config: { action: 'identity:version' } }, async (_req, reply) =>
    reply.code(300).send({ versions: { values: [VERSION(publicUrl)] } }),
  );
  app.get(PREFIX, { config: { action: 'identity:version' } }, async () => ({ version: VERSION(publicUrl) }));
  app.get(`${PREFIX}/`, { config: { action: 'identity:version' } }, async () => ({
    version: VERSION(publicUrl),
  }));

  await registerTokenRoutes(app, ctx, base);
  await registerDirectoryRoutes(app, ctx, base);
  await registerUserRoutes(app, ctx, base);
  await registerRoleRoutes(app, ctx, base);
  await registerCredentialRoutes(app, ctx, base);
}
