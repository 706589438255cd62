import { Type } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import type { Static } from 'typebox';
import { BULWARK_PREFIX } from './bulwark.js';
import type { ApiContext } from './server.js';

const Id = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.-]+$' });
const Hex4 = Type.String({ pattern: '^(0x)?[0-9A-Fa-f]{4}$' });
const Body = Type.Object(
  {
    host_devices: Type.Object(
      {
        pci: Type.Optional(Type.Array(Type.String({ minLength: 12, maxLength: 16 }), { maxItems: 16 })),
        usb: Type.Optional(
          Type.Array(Type.Object({ vendor_id: Hex4, product_id: Hex4 }, { additionalProperties: false }), {
            maxItems: 16,
          }),
        ),
      },
      { additionalProperties: false, minProperties: 1 },
    ),
  },
  { additionalProperties: false },
);

/** Host device passthrough (docs/passthrough-and-agent.md): cloud admin only, whole IOMMU groups, audited. */
export function registerHostDeviceApi(app: FastifyInstance, ctx: ApiContext): void {
  const { hostDevices } = ctx.compute;
  const url = `${BULWARK_PREFIX}/servers/:id/host-devices`;
  const params = Type.Object({ id: Id });
  app.get(url, { schema: { params }, config: { action: 'server:host_devices:show' } }, async (req) => ({
    host_devices: await hostDevices.show(req.auth!, (req.params as { id: string }).id),
  }));
  app.post(
    url,
    {
      schema: { params, body: Body },
      config: { action: 'server:host_devices:attach', targetType: 'server' },
    },
    async (req) => {
      const { host_devices: d } = req.body as Static<typeof Body>;
      const plan = await hostDevices.attach(req.auth!, (req.params as { id: string }).id, {
        pci: d.pci ?? [],
        usb: (d.usb ?? []).map((u) => ({ vendorId: u.vendor_id, productId: u.product_id })),
      });
      req.auditNote.reason = plan.summary;
      return { host_devices: plan };
    },
  );
  app.delete(
    url,
    { schema: { params }, config: { action: 'server:host_devices:detach', targetType: 'server' } },
    async (req, reply) => {
      await hostDevices.detach(req.auth!, (req.params as { id: string }).id);
      return reply.code(204).send();
    },
  );
}
