import { randomUUID } from 'node:crypto';

/** A JSON schema as the routes register it (TypeBox output: plain JSON schema). */
export type JsonSchema = {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  allOf?: JsonSchema[];
  const?: unknown;
  enum?: unknown[];
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  minItems?: number;
  minProperties?: number;
  pattern?: string;
  format?: string;
  default?: unknown;
  patternProperties?: Record<string, JsonSchema>;
  additionalProperties?: boolean | JsonSchema;
};

/** Strings tried, in order, for a `pattern`: the first that matches (and fits the lengths) is used. */
const CANDIDATES = () => [
  'x',
  randomUUID(),
  'a1',
  '1',
  'abc-1',
  'k',
  'ssh',
  '10.0.0.0/24',
  '10.0.0.1',
  'AAAA',
  'x'.repeat(32),
  '0000:03:00.0',
  '1af4:1000',
  'a'.repeat(64),
];

function sampleString(s: JsonSchema): string {
  const min = s.minLength ?? 0;
  const max = s.maxLength ?? 255;
  const fits = (v: string) =>
    v.length >= min && v.length <= max && (!s.pattern || new RegExp(s.pattern, 'u').test(v));
  switch (s.format) {
    case 'uuid':
      return randomUUID();
    case 'date-time':
      return new Date(Date.now() + 3600_000).toISOString();
    case 'ipv4':
      return '10.0.0.1';
    case 'ipv6':
      return 'fd00::1';
    case 'uri':
      return 'https://example.test/';
  }
  const found = CANDIDATES().find(fits);
  return found ?? 'x'.repeat(Math.max(min, 1));
}

/**
 * The smallest value a schema accepts that this can build: required properties only (or the first
 * `minProperties`), the first of an `anyOf`/`enum`, the lowest number. Used where a suite needs a
 * body that passes validation so the handler itself answers (tenant isolation, fuzzing's seeds).
 */
export function minimalValue(schema: JsonSchema | undefined): unknown {
  if (!schema) return undefined;
  if ('const' in schema) return schema.const;
  if (schema.enum) return schema.enum[0];
  const alt = schema.anyOf ?? schema.oneOf;
  if (alt) return minimalValue(alt.find((a) => a.type !== 'null') ?? alt[0]);
  if (schema.allOf) return minimalValue(Object.assign({}, ...schema.allOf));
  const type = Array.isArray(schema.type) ? (schema.type.find((t) => t !== 'null') ?? 'null') : schema.type;
  switch (type) {
    case 'object': {
      const props = schema.properties ?? {};
      const keys = new Set(schema.required ?? []);
      for (const k of Object.keys(props)) if (keys.size < (schema.minProperties ?? 0)) keys.add(k);
      const out: Record<string, unknown> = {};
      for (const k of keys) out[k] = minimalValue(props[k] ?? {});
      return out;
    }
    case 'array':
      return Array.from({ length: schema.minItems ?? 0 }, () => minimalValue(schema.items));
    case 'string':
      return sampleString(schema);
    case 'integer':
    case 'number':
      return schema.minimum ?? (schema.exclusiveMinimum !== undefined ? schema.exclusiveMinimum + 1 : 1);
    case 'boolean':
      return false;
    case 'null':
      return null;
    default:
      return schema.default ?? {};
  }
}
