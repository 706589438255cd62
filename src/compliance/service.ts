import type { SiemStatus } from '../audit/siem.js';
import { notFound } from '../errors.js';
import { type HardeningFacts, reportedFacts } from '../host/hardening.js';
import type { AuthContext } from '../policy/context.js';
import { nowIso, uuid } from '../util/ids.js';
import { CONTROLS, type Control, controlsFor, type Framework } from './catalogue.js';
import { type CheckDeps, PLATFORM_CHECKS } from './checks.js';
import { HOST_CHECKS, SYSCTL_BASELINE } from './host-checks.js';
import type { CheckResult, Verdict } from './verdict.js';

/**
 * Runs the control catalogue against the running platform and keeps every
 * run (docs/compliance.md). Host controls are judged per hypervisor host from
 * the readings taken where the host is; hosts that sent none are named.
 */

export interface RunSummary {
  id: string;
  created_at: string;
  created_by_name: string;
  passed: number;
  failed: number;
  not_applicable: number;
}
export interface Run extends RunSummary {
  results: CheckResult[];
}

export interface ReportRow {
  control: Control;
  requirements: readonly string[];
  result: CheckResult;
}
export interface Report {
  framework: Framework;
  run_id: string;
  generated_at: string;
  totals: Record<Verdict, number>;
  rows: ReportRow[];
}

/** Reads the local host's hardening facts (host/hardening.ts#probeHardening with its roots). */
export type LocalProbe = (sysctls: readonly string[]) => Promise<HardeningFacts>;

export class ComplianceService {
  private siem: (() => Promise<SiemStatus>) | null = null;

  constructor(
    private readonly deps: Omit<CheckDeps, 'siem'>,
    private readonly probeLocal: LocalProbe,
  ) {}

  /** The daemon attaches its SIEM forwarder; without one, SIEM forwarding fails as not configured. */
  attachSiem(status: () => Promise<SiemStatus>): void {
    this.siem = status;
  }

  /** Evaluates every control now and stores the run. */
  async run(auth: AuthContext): Promise<Run> {
    const results = await this.evaluate();
    const count = (v: Verdict) => results.filter((r) => r.verdict === v).length;
    const run: Run = {
      id: uuid(),
      created_at: nowIso(),
      created_by_name: auth.userName,
      passed: count('pass'),
      failed: count('fail'),
      not_applicable: count('not_applicable'),
      results,
    };
    await this.deps.store.db
      .insertInto('compliance_runs')
      .values({
        id: run.id,
        created_at: run.created_at,
        created_by: auth.userId,
        created_by_name: run.created_by_name,
        passed: run.passed,
        failed: run.failed,
        not_applicable: run.not_applicable,
        results: JSON.stringify(results),
      })
      .execute();
    return run;
  }

  async evaluate(): Promise<CheckResult[]> {
    const deps: CheckDeps = { ...this.deps, siem: this.siem };
    const hosts = await this.hostFacts();
    const out: CheckResult[] = [];
    for (const control of CONTROLS) {
      const checked_at = this.deps.now().toISOString();
      if (control.scope === 'host') {
        out.push({ control_id: control.id, checked_at, ...this.acrossHosts(control.id, hosts) });
        continue;
      }
      const check = PLATFORM_CHECKS[control.id];
      if (!check) throw new Error(`control ${control.id} has no check`);
      out.push({ control_id: control.id, checked_at, ...(await check(deps)) });
    }
    return out;
  }

  /** The local host's readings, taken now, and each agent host's from its last report (or why there are none). */
  private async hostFacts(): Promise<Map<string, HardeningFacts | string>> {
    const facts = new Map<string, HardeningFacts | string>();
    facts.set(this.deps.settings.localHost, await this.probeLocal(SYSCTL_BASELINE.map((s) => s.name)));
    const agents = await this.deps.store.db
      .selectFrom('hosts')
      .select(['name', 'state', 'health', 'last_heartbeat'])
      .where('local', '=', 0)
      .orderBy('name')
      .execute();
    for (const a of agents)
      facts.set(
        a.name,
        a.state === 'down'
          ? `the agent host is down (last report ${a.last_heartbeat ?? 'never'})`
          : (reportedFacts(a.health) ?? 'the agent sent no hardening readings in its reports'),
      );
    return facts;
  }

  /** One control over all hosts: fail if any fails, pass if any passes, else not applicable. */
  private acrossHosts(id: string, hosts: Map<string, HardeningFacts | string>) {
    const check = HOST_CHECKS[id];
    if (!check) throw new Error(`control ${id} has no host check`);
    const per = [...hosts].map(([host, f]) =>
      typeof f !== 'string'
        ? { host, ...check(host, f, { dataDir: this.deps.settings.dataDir }), collected_at: f.collected_at }
        : {
            host,
            verdict: 'not_applicable' as Verdict,
            checked: `host ${host}`,
            reason: f,
            offenders: [],
            observed: {},
            collected_at: null,
          },
    );
    const verdict: Verdict = per.some((p) => p.verdict === 'fail')
      ? 'fail'
      : per.some((p) => p.verdict === 'pass')
        ? 'pass'
        : 'not_applicable';
    return {
      verdict,
      checked: per.map((p) => `${p.host}: ${p.checked}`).join('; '),
      reason: per.map((p) => `${p.host}: ${p.verdict} (${p.reason})`).join('; '),
      offenders: per.flatMap((p) => p.offenders),
      observed: Object.fromEntries(
        per.map((p) => [p.host, { verdict: p.verdict, collected_at: p.collected_at, ...p.observed }]),
      ),
    };
  }

  async list(limit = 20): Promise<RunSummary[]> {
    return this.deps.store.db
      .selectFrom('compliance_runs')
      .select(['id', 'created_at', 'created_by_name', 'passed', 'failed', 'not_applicable'])
      .orderBy('created_at', 'desc')
      .orderBy('id')
      .limit(limit)
      .execute();
  }

  async get(id: string): Promise<Run> {
    const row = await this.deps.store.db
      .selectFrom('compliance_runs')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst();
    if (!row) throw notFound('compliance run', id);
    const { created_by: _, results, ...summary } = row;
    return { ...summary, results: JSON.parse(results) as CheckResult[] };
  }

  /** A run seen through one framework: its controls, with the requirement ids each maps to. */
  report(run: Run, framework: Framework): Report {
    const rows = controlsFor(framework).flatMap((control) => {
      const result = run.results.find((r) => r.control_id === control.id);
      return result ? [{ control, requirements: control.mappings[framework], result }] : [];
    });
    const totals = { pass: 0, fail: 0, not_applicable: 0 };
    for (const r of rows) totals[r.result.verdict]++;
    return { framework, run_id: run.id, generated_at: run.created_at, totals, rows };
  }
}
