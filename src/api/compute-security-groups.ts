import { Type } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import type { SecurityGroup, SecurityGroupRule } from '../network/security-groups.js';
import type { ApiContext } from './server.js';

/**
 * Nova's read-only security-group proxy (`/os-security-groups`, microversion
 * 2.1): the openstack CLI's `server add|remove security group` looks the group
 * up here before calling the server action. Groups live in Neutron; this only
 * shows them in Nova's shape, in the caller's own project.
 */
export function registerComputeSecurityGroupApi(app: FastifyInstance, ctx: ApiContext, prefix: string): void {
  const groups = ctx.network.securityGroups;

  const novaRule = (r: SecurityGroupRule) => ({
    id: r.id,
    parent_group_id: r.security_group_id,
    ip_protocol: r.protocol,
    from_port: r.port_range_min,
    to_port: r.port_range_max,
    ip_range: r.remote_ip_prefix ? { cidr: r.remote_ip_prefix } : {},
    group: r.remote_group_id ? { id: r.remote_group_id } : {},
  });
  const novaGroup = async (g: SecurityGroup) => ({
    id: g.id,
    name: g.name,
    description: g.description,
    tenant_id: g.project_id,
    // Nova's proxy shows ingress rules only.
    rules: (await groups.rules([g.id])).filter((r) => r.direction === 'ingress').map(novaRule),
  });

  for (const url of [`${prefix}/os-security-groups`, `${prefix}/os-security-groups/detail`])
    app.get(
      url,
      {
        schema: { querystring: Type.Object({ name: Type.Optional(Type.String({ maxLength: 255 })) }) },
        config: { action: 'compute:os-security-groups:list' },
      },
      async (req) => {
        const { name } = req.query as { name?: string };
        const list = await groups.list(req.auth!, { name, projectId: req.auth!.projectId ?? undefined });
        return { security_groups: await Promise.all(list.map(novaGroup)) };
      },
    );
  app.get(
    `${prefix}/os-security-groups/:id`,
    {
      schema: { params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) }) },
      config: { action: 'compute:os-security-groups:show' },
    },
    async (req) => ({
      security_group: await novaGroup(await groups.get(req.auth!, (req.params as { id: string }).id)),
    }),
  );
}
