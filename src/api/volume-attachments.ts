import { Type } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import type { Static } from 'typebox';
import type { Attachment } from '../volumes/volumes.js';
import type { ApiContext } from './server.js';

const Id = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.-]+$' });
const Params = Type.Object({ id: Id });
const OneParams = Type.Object({ id: Id, volume_id: Id });
const Body = Type.Object(
  {
    volumeAttachment: Type.Object(
      {
        volumeId: Id,
        // The guest names its disks itself; like Nova with virtio, a requested name is only a hint.
        device: Type.Optional(Type.Union([Type.String({ maxLength: 64 }), Type.Null()])),
        tag: Type.Optional(Type.Null()),
        delete_on_termination: Type.Optional(Type.Literal(false)),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);

/**
 * Nova's `os-volume_attachments` (`openstack server add volume` / `server
 * remove volume`): the volume is plugged into the running guest over QMP,
 * LUKS key included (docs/volumes.md). Scoped like servers and volumes: both
 * must be the caller's project's.
 */
export function registerVolumeAttachmentApi(app: FastifyInstance, ctx: ApiContext, prefix: string): void {
  const { volumes } = ctx.volume;
  const url = `${prefix}/servers/:id/os-volume_attachments`;
  const view = (a: Attachment) => ({
    id: a.volume_id,
    serverId: a.server_id,
    volumeId: a.volume_id,
    device: a.device,
  });
  app.get(
    url,
    { schema: { params: Params }, config: { action: 'compute:servers:volume_attachments:list' } },
    async (req) => ({
      volumeAttachments: (await volumes.listAttachments(req.auth!, (req.params as { id: string }).id)).map(
        view,
      ),
    }),
  );
  app.get(
    `${url}/:volume_id`,
    { schema: { params: OneParams }, config: { action: 'compute:servers:volume_attachments:show' } },
    async (req) => {
      const p = req.params as Static<typeof OneParams>;
      return { volumeAttachment: view(await volumes.getAttachment(req.auth!, p.id, p.volume_id)) };
    },
  );
  app.post(
    url,
    {
      schema: { params: Params, body: Body },
      config: { action: 'compute:servers:volume_attachments:create', targetType: 'server' },
    },
    async (req) => {
      const b = (req.body as Static<typeof Body>).volumeAttachment;
      const a = await volumes.attach(req.auth!, (req.params as { id: string }).id, b.volumeId);
      return { volumeAttachment: view(a) };
    },
  );
  app.delete(
    `${url}/:volume_id`,
    {
      schema: { params: OneParams },
      config: { action: 'compute:servers:volume_attachments:delete', targetType: 'server' },
    },
    async (req, reply) => {
      const p = req.params as Static<typeof OneParams>;
      await volumes.detach(req.auth!, p.id, p.volume_id);
      return reply.code(202).send();
    },
  );
}
