import { appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

/** Where reliability suites write their figures, one JSON object a line (scripts/test.sh prints them). */
export const FIGURES_FILE = join('.test-artifacts', 'figures.jsonl');

export type Figures = Record<string, number | string>;

/**
 * Reports a suite's figures (routes × roles checked, leaks, fuzz requests, 5xx ...):
 * prints one summary line and appends it to .test-artifacts/figures.jsonl, so CI
 * shows what a suite measured, not just that it passed. Returns the summary line.
 */
export function reportFigures(suite: string, figures: Figures): string {
  const line = `figures ${suite}: ${Object.entries(figures)
    .map(([k, v]) => `${k}: ${v}`)
    .join(', ')}`;
  mkdirSync('.test-artifacts', { recursive: true });
  appendFileSync(FIGURES_FILE, `${JSON.stringify({ suite, at: new Date().toISOString(), ...figures })}\n`);
  console.log(line);
  return line;
}
