import { useState } from 'react';
import { get, post } from '../api';
import { useAction, useLoad } from '../hooks';
import { ErrorBox, Field, Loading, Page } from '../ui';

interface Offender {
  type: string;
  id: string;
  name?: string | null;
  detail: string;
}
interface ReportRow {
  control: { id: string; title: string; priority: string; remediation: string };
  requirements: string[];
  result: {
    verdict: 'pass' | 'fail' | 'not_applicable';
    checked: string;
    reason: string;
    offenders: Offender[];
    checked_at: string;
  };
}
interface Report {
  framework: string;
  run_id: string;
  generated_at: string;
  totals: { pass: number; fail: number; not_applicable: number };
  rows: ReportRow[];
}
interface RunSummary {
  id: string;
  created_at: string;
  created_by_name: string;
  passed: number;
  failed: number;
  not_applicable: number;
}

const FRAMEWORKS: [string, string][] = [
  ['pci-dss', 'PCI DSS v4.0'],
  ['hipaa', 'HIPAA (164.312)'],
  ['soc2', 'SOC 2'],
];
const WORD = { pass: 'Pass', fail: 'Fail', not_applicable: 'Not applicable' } as const;

/** Compliance (docs/compliance.md): one framework's verdicts with their evidence, and the runs over time. */
export function CompliancePage() {
  const [framework, setFramework] = useState('pci-dss');
  const [chosen, setChosen] = useState<string | null>(null);
  const action = useAction();
  const runs = useLoad(() =>
    get<{ runs: RunSummary[] }>('/bulwark/v1/compliance/runs?limit=20').then((r) => r.runs),
  );
  const runId = chosen ?? runs.data?.[0]?.id ?? null;
  const report = useLoad(
    () =>
      runId
        ? get<{ report: Report }>(
            `/bulwark/v1/compliance/runs/${encodeURIComponent(runId)}/report?framework=${framework}`,
          ).then((r) => r.report)
        : Promise.resolve(null),
    [runId, framework],
  );
  const runNow = () =>
    action.run(async () => {
      const r = await post<{ run: RunSummary }>('/bulwark/v1/compliance/runs', {});
      setChosen(r.run.id);
      runs.reload();
    });
  const rep = report.data;
  return (
    <Page title="Compliance">
      <div className="inline-form">
        <Field label="Framework">
          <select name="framework" value={framework} onChange={(e) => setFramework(e.target.value)}>
            {FRAMEWORKS.map(([v, label]) => (
              <option key={v} value={v}>
                {label}
              </option>
            ))}
          </select>
        </Field>
        <button type="button" onClick={runNow} disabled={action.busy}>
          {action.busy ? 'Checking…' : 'Run checks now'}
        </button>
      </div>
      <ErrorBox error={action.error ?? runs.error ?? report.error} />
      {runs.data === null ? (
        <Loading what="compliance runs" />
      ) : runs.data.length === 0 ? (
        <p>No compliance run yet: run the checks to see where the platform stands.</p>
      ) : rep === null ? (
        <Loading what="the report" />
      ) : (
        <>
          <p role="status">
            Run of {rep.generated_at}: {rep.totals.pass} pass, {rep.totals.fail} fail,{' '}
            {rep.totals.not_applicable} not applicable.
          </p>
          <table className="wrap">
            <caption>Controls and their evidence</caption>
            <thead>
              <tr>
                <th scope="col">Control</th>
                <th scope="col">Requirements</th>
                <th scope="col">Verdict</th>
                <th scope="col">Evidence</th>
              </tr>
            </thead>
            <tbody>
              {rep.rows.map((r) => (
                <tr key={r.control.id} className={`verdict-${r.result.verdict}`}>
                  <td>
                    <strong>{r.control.id}</strong>
                    <br />
                    {r.control.title}
                  </td>
                  <td>{r.requirements.join(', ')}</td>
                  <td>{WORD[r.result.verdict]}</td>
                  <td>
                    {r.result.reason}
                    <br />
                    <small>
                      Checked {r.result.checked} at {r.result.checked_at}
                    </small>
                    {r.result.offenders.length > 0 && (
                      <>
                        <ul>
                          {r.result.offenders.map((o) => (
                            <li key={`${o.type}-${o.id}-${o.detail}`}>
                              {o.type} {o.id}
                              {o.name && o.name !== o.id ? ` (${o.name})` : ''}: {o.detail}
                            </li>
                          ))}
                        </ul>
                        <small>Fix: {r.control.remediation}</small>
                      </>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
      {runs.data && runs.data.length > 0 && (
        <table>
          <caption>History (newest first)</caption>
          <thead>
            <tr>
              <th scope="col">Time</th>
              <th scope="col">By</th>
              <th scope="col">Pass</th>
              <th scope="col">Fail</th>
              <th scope="col">Not applicable</th>
              <th scope="col">Report</th>
            </tr>
          </thead>
          <tbody>
            {runs.data.map((r) => (
              <tr key={r.id}>
                <td>{r.created_at}</td>
                <td>{r.created_by_name}</td>
                <td>{r.passed}</td>
                <td>{r.failed}</td>
                <td>{r.not_applicable}</td>
                <td>
                  {r.id === runId ? (
                    'Shown'
                  ) : (
                    <button type="button" onClick={() => setChosen(r.id)}>
                      Show run of {r.created_at}
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Page>
  );
}
