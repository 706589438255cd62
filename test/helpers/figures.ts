import { appendFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Where reliability suites write their figures, one JSON object a line (scripts/test.sh prints them). */
export const FIGURES_FILE = fileURLToPath(new URL('../../.test-artifacts/figures.jsonl', import.meta.url));

/** True for the long variants (`BULWARK_LONG=1`): more iterations, more clients, longer runs. */
export const LONG = process.env.BULWARK_LONG === '1';

export type Figures = Record<string, unknown>;

/**
 * Reports a suite's figures (routes × roles checked, leaks, fuzz requests, 5xx, crash iterations,
 * orphans ...): prints one summary line and appends it to .test-artifacts/figures.jsonl, so CI
 * shows what a suite measured, not just that it passed. Returns the summary line.
 */
export function reportFigures(suite: string, figures: Figures): string {
  const show = (v: unknown) => (typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v));
  const line = `figures ${suite}: ${Object.entries(figures)
    .map(([k, v]) => `${k}: ${show(v)}`)
    .join(', ')}`;
  mkdirSync(dirname(FIGURES_FILE), { recursive: true });
  appendFileSync(
    FIGURES_FILE,
    `${JSON.stringify({ suite, at: new Date().toISOString(), ...(LONG ? { long: true } : {}), ...figures })}\n`,
  );
  console.log(line);
  return line;
}
