import { Type } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import type { Static } from 'typebox';
import { BULWARK_PREFIX } from './bulwark.js';
import type { ApiContext } from './server.js';

const Id = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.-]+$' });
const Key = Type.String({ minLength: 1, maxLength: 64 });
const RuleBody = Type.Object(
  {
    rule: Type.Object(
      {
        id: Id,
        when: Type.Object(
          { key: Key, value: Type.String({ minLength: 1, maxLength: 255 }) },
          { additionalProperties: false },
        ),
        requires: Type.Array(Key, { minItems: 1, maxItems: 16 }),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);

/** Server change history, the metadata rules (docs/metadata.md) and storage pools, under /bulwark/v1. */
export function registerServerGovernanceApi(app: FastifyInstance, ctx: ApiContext): void {
  const { metadataRules, serverHistory } = ctx.governance;

  app.get(
    `${BULWARK_PREFIX}/servers/:id/history`,
    { schema: { params: Type.Object({ id: Id }) }, config: { action: 'server:history' } },
    async (req) => ({ changes: await serverHistory.list(req.auth!, (req.params as { id: string }).id) }),
  );

  // Storage pools and their thresholds (docs/storage-thresholds.md): a state past a threshold is audited when seen.
  app.get(`${BULWARK_PREFIX}/storage-pools`, { config: { action: 'storage:pools:list' } }, async () => ({
    storage_pools: await ctx.governance.storage.list(),
  }));

  const rules = `${BULWARK_PREFIX}/metadata-rules`;
  app.get(rules, { config: { action: 'metadata_rule:list' } }, async () => ({
    rules: await metadataRules.list(),
  }));
  app.post(
    rules,
    { schema: { body: RuleBody }, config: { action: 'metadata_rule:create', targetType: 'metadata-rule' } },
    async (req, reply) => {
      const { rule } = req.body as Static<typeof RuleBody>;
      req.auditNote.targetId = rule.id;
      return reply.code(201).send({ rule: await metadataRules.create(req.auth!, rule) });
    },
  );
  app.delete(
    `${rules}/:id`,
    {
      schema: { params: Type.Object({ id: Id }) },
      config: { action: 'metadata_rule:delete', targetType: 'metadata-rule' },
    },
    async (req, reply) => {
      await metadataRules.delete((req.params as { id: string }).id);
      return reply.code(204).send();
    },
  );
}
