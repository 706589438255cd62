import { Type } from 'typebox';
import { Value } from 'typebox/value';
import type { HostReport } from '../../compute/hosts.js';

const Count = Type.Integer({ minimum: 0, maximum: 1_000_000_000 });
/** What an agent reports: validated at the boundary, unknown fields refused. */
export const ReportSchema = Type.Object(
  {
    capacity: Type.Object({ vcpus: Count, ramMiB: Count, diskGiB: Count }, { additionalProperties: false }),
    features: Type.Array(Type.String({ pattern: '^[a-z0-9-]{1,32}$' }), { maxItems: 32 }),
    health: Type.Optional(Type.Record(Type.String({ maxLength: 64 }), Type.Unknown(), { maxProperties: 32 })),
  },
  { additionalProperties: false },
);

/** The report in `body`, or what is wrong with it. */
export function parseReport(body: string): HostReport | string {
  let data: unknown;
  try {
    data = JSON.parse(body);
  } catch {
    return 'the report is not JSON';
  }
  if (!Value.Check(ReportSchema, data)) {
    const first = [...Value.Errors(ReportSchema, data)][0];
    return `the report is invalid${first ? `: ${first.instancePath || '/'} ${first.message}` : ''}`;
  }
  return data;
}
