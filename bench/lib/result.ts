/** What every bench part prints as its last stdout line (one JSON object), for bench/run.ts. */
export interface BenchRow {
  /** What is measured, e.g. "list 1,000 servers, 50 clients". */
  what: string;
  /** The baseline measured in the same run, with its figure ("static route: 9,800 req/s"); "—" when none. */
  baseline: string;
  /** Bulwark's figure. */
  subject: string;
  /** subject / baseline in the sense of the target (higher is better unless the target says otherwise). */
  ratio: string;
  target: string;
  met: boolean;
  /** Why a target is missed (with a profile summary), or how to read the figure. */
  note?: string;
}

export interface BenchPart {
  rows: BenchRow[];
  /** Free-form details for the reading section (method, sample counts). */
  details?: string[];
}

/** Prints the part's result as the last stdout line. */
export function emit(part: BenchPart): void {
  console.log(JSON.stringify(part));
}

export const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};

export const percentile = (xs: readonly number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] as number;
};

export const fmt = (n: number, digits = 0): string =>
  n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

/** Seconds a function takes on the wall clock. */
export async function secs(fn: () => unknown): Promise<number> {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e9;
}
