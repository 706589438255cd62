import { appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { REPO } from './daemon-process.js';

/** Where every reliability suite appends its figures, one JSON line each (docs/reliability.md). */
export const FIGURES_FILE = join(REPO, '.test-artifacts', 'figures.jsonl');

/** True for the long variants (`BULWARK_LONG=1`): more iterations, more clients, longer runs. */
export const LONG = process.env.BULWARK_LONG === '1';

/** Appends `{suite, figures}` to the figures file and prints it, so a CI log shows the numbers too. */
export function reportFigures(suite: string, figures: Record<string, unknown>): void {
  mkdirSync(join(REPO, '.test-artifacts'), { recursive: true });
  const line = JSON.stringify({ suite, figures, long: LONG, at: new Date().toISOString() });
  appendFileSync(FIGURES_FILE, `${line}\n`);
  console.log(`[figures] ${line}`);
}
