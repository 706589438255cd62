import { Type } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import type { Static } from 'typebox';
import { CONTROLS, FRAMEWORKS, type Framework } from '../compliance/catalogue.js';
import { REPORT_FORMATS, renderReport } from '../compliance/render.js';
import { BULWARK_PREFIX } from './bulwark.js';
import type { ApiContext } from './server.js';

/**
 * Compliance under /bulwark/v1 (docs/compliance.md), cloud admins only: the
 * control catalogue, runs (each evaluates every control now and is kept, so
 * posture has a history), and a run's report for one framework.
 */
const FrameworkSchema = Type.Union(FRAMEWORKS.map((f) => Type.Literal(f)));
const RunBody = Type.Object({}, { additionalProperties: false });
const IdParam = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.-]+$' }),
});
const ControlsQuery = Type.Object(
  { framework: Type.Optional(FrameworkSchema) },
  { additionalProperties: false },
);
const ListQuery = Type.Object(
  { limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500 })) },
  { additionalProperties: false },
);
const ReportQuery = Type.Object(
  {
    framework: FrameworkSchema,
    format: Type.Optional(Type.Union(REPORT_FORMATS.map((f) => Type.Literal(f)))),
  },
  { additionalProperties: false },
);

const P = `${BULWARK_PREFIX}/compliance`;

export function registerComplianceApi(app: FastifyInstance, ctx: ApiContext): void {
  const { compliance } = ctx;
  app.get(
    `${P}/controls`,
    { schema: { querystring: ControlsQuery }, config: { action: 'compliance:controls:list' } },
    async (req) => {
      const fw = (req.query as { framework?: Framework }).framework;
      return { controls: CONTROLS.filter((c) => !fw || c.mappings[fw].length > 0) };
    },
  );
  app.post(
    `${P}/runs`,
    { schema: { body: RunBody }, config: { action: 'compliance:runs:create', targetType: 'compliance_run' } },
    async (req, reply) => {
      const run = await compliance.run(req.auth!);
      req.auditNote.targetId = run.id;
      return reply.code(201).send({ run });
    },
  );
  app.get(
    `${P}/runs`,
    { schema: { querystring: ListQuery }, config: { action: 'compliance:runs:list' } },
    async (req) => ({ runs: await compliance.list((req.query as Static<typeof ListQuery>).limit) }),
  );
  app.get(
    `${P}/runs/:id`,
    { schema: { params: IdParam }, config: { action: 'compliance:runs:show' } },
    async (req) => ({ run: await compliance.get((req.params as { id: string }).id) }),
  );
  // Markdown and HTML come back as text inside JSON, never as a page served from the API's origin.
  app.get(
    `${P}/runs/:id/report`,
    { schema: { params: IdParam, querystring: ReportQuery }, config: { action: 'compliance:runs:report' } },
    async (req) => {
      const q = req.query as { framework: Framework; format?: (typeof REPORT_FORMATS)[number] };
      const report = compliance.report(await compliance.get((req.params as { id: string }).id), q.framework);
      const format = q.format ?? 'json';
      return format === 'json' ? { report } : { report: { format, content: renderReport(report, format) } };
    },
  );
}
