/** What one control's check found (docs/compliance.md). */

export type Verdict = 'pass' | 'fail' | 'not_applicable';

/** A resource that makes a check fail, named so an operator can find it. */
export interface Offender {
  type: string;
  id: string;
  name?: string | null;
  /** What is wrong with it, e.g. `ingress tcp 22 from 0.0.0.0/0`. */
  detail: string;
}

/** The evidence behind one verdict. */
export interface CheckResult {
  control_id: string;
  verdict: Verdict;
  /** What was examined, in words (e.g. "12 servers, 3 volumes"). */
  checked: string;
  /** Why the verdict: the failing summary, or why the control does not apply. */
  reason: string;
  offenders: Offender[];
  /** Readings the verdict rests on (settings, counts, per-host values). */
  observed: Record<string, unknown>;
  checked_at: string;
}

export type Evidence = Omit<CheckResult, 'control_id' | 'verdict' | 'checked_at'>;

/** fail when there are offenders, pass otherwise. */
export const byOffenders = (
  offenders: Offender[],
  checked: string,
  failReason: string,
  observed: Record<string, unknown> = {},
): { verdict: Verdict } & Evidence => ({
  verdict: offenders.length > 0 ? 'fail' : 'pass',
  checked,
  reason: offenders.length > 0 ? failReason : 'no offending resource found',
  offenders,
  observed,
});

export const notApplicable = (
  checked: string,
  reason: string,
  observed: Record<string, unknown> = {},
): { verdict: Verdict } & Evidence => ({
  verdict: 'not_applicable',
  checked,
  reason,
  offenders: [],
  observed,
});
