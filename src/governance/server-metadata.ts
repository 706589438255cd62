import { badRequest } from '../errors.js';

/**
 * VM metadata (guide 14, docs/metadata.md): the keys every server carries,
 * which the platform sets and which users set, and how their values are
 * checked. Pure: the rules' store is metadata-rules.ts.
 */

/** Set by the platform when a server is made; never given or changed by a user. */
export const PLATFORM_KEYS = ['created_by', 'created_at', 'approved_by'] as const;

export const ENVIRONMENTS = ['production', 'staging', 'development', 'test'] as const;
export const DATA_CLASSIFICATIONS = ['public', 'internal', 'confidential', 'restricted'] as const;

const oneOf = (allowed: readonly string[]) => (v: string) =>
  allowed.includes(v) ? null : `must be one of ${allowed.join(', ')}`;
const pattern = (re: RegExp, example: string) => (v: string) =>
  re.test(v) ? null : `must look like ${example}`;
const text = (v: string) =>
  v.trim() === v && v.length > 0 ? null : 'must be text without leading or trailing spaces';

/** The governance keys users set, each with its check (other keys stay free-form, as in Nova). */
export const USER_KEYS: Readonly<Record<string, (v: string) => string | null>> = {
  purpose: text,
  ticket: pattern(
    /^[A-Za-z0-9][A-Za-z0-9_.:#/-]{0,63}$/,
    'JIRA-1234 (letters, digits, - _ . : # /; up to 64)',
  ),
  cost_center: text,
  environment: oneOf(ENVIRONMENTS),
  compliance_level: pattern(/^[a-z0-9][a-z0-9.-]{0,63}$/, 'pci-dss (lowercase letters, digits, - and .)'),
  data_classification: oneOf(DATA_CLASSIFICATIONS),
};

export const isPlatformKey = (k: string): boolean => (PLATFORM_KEYS as readonly string[]).includes(k);

/** Refuses platform keys and bad values of the known keys, naming the key and what it must be. */
export function checkUserMetadata(md: Readonly<Record<string, string>>): void {
  for (const [k, v] of Object.entries(md)) {
    if (isPlatformKey(k))
      throw badRequest(`Server metadata ${k} is set by the platform and cannot be given or changed.`);
    const problem = USER_KEYS[k]?.(v);
    if (problem) throw badRequest(`Server metadata ${k}=${JSON.stringify(v)} is not valid: it ${problem}.`);
  }
}

/** The platform's keys of a stored metadata map (kept across a user's full replace). */
export const platformPart = (md: Readonly<Record<string, string>>): Record<string, string> =>
  Object.fromEntries(Object.entries(md).filter(([k]) => isPlatformKey(k)));

export interface MetadataRule {
  id: string;
  when: { key: string; value: string };
  requires: string[];
  created_by: string;
  created_at: string;
}

/** What the rules say is missing, one sentence per broken rule (empty when all hold). */
export function ruleViolations(
  rules: readonly MetadataRule[],
  md: Readonly<Record<string, string>>,
): string[] {
  const out: string[] = [];
  for (const r of rules) {
    if (md[r.when.key] !== r.when.value) continue;
    const missing = r.requires.filter((k) => !md[k]);
    if (missing.length)
      out.push(
        `Servers with ${r.when.key}=${r.when.value} require ${missing.join(' and ')} (metadata rule ${r.id}); ` +
          `set it, e.g. --property ${missing[0]}=JIRA-1234.`,
      );
  }
  return out;
}

export type Diff = Record<string, { from: unknown; to: unknown }>;

/** The fields that differ between two flat maps, each key prefixed (e.g. `metadata.ticket`). */
export function mapDiff(
  before: Readonly<Record<string, unknown>>,
  after: Readonly<Record<string, unknown>>,
  prefix = '',
): Diff {
  const out: Diff = {};
  for (const k of new Set([...Object.keys(before), ...Object.keys(after)])) {
    const from = before[k] ?? null;
    const to = after[k] ?? null;
    if (JSON.stringify(from) !== JSON.stringify(to)) out[`${prefix}${k}`] = { from, to };
  }
  return out;
}
