import { useState } from 'react';
import { get, post } from '../api';
import { useAction, useLoad } from '../hooks';
import { Choice, DataTable } from '../listing';
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

/** A control's evidence: why it is what it is, when it was checked, and what fails with the fix. */
const evidence = (r: ReportRow) => (
  <>
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
  </>
);

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
          <Choice name="framework" value={framework} onChange={setFramework} options={FRAMEWORKS} />
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
          <DataTable
            className="wrap"
            caption="Controls and their evidence"
            rows={rep.rows}
            rowKey={(r) => r.control.id}
            rowClass={(r) => `verdict-${r.result.verdict}`}
            columns={[
              {
                header: 'Control',
                cell: (r) => (
                  <>
                    <strong>{r.control.id}</strong>
                    <br />
                    {r.control.title}
                  </>
                ),
              },
              { header: 'Requirements', cell: (r) => r.requirements.join(', ') },
              { header: 'Verdict', cell: (r) => WORD[r.result.verdict] },
              { header: 'Evidence', cell: evidence },
            ]}
          />
        </>
      )}
      {runs.data && runs.data.length > 0 && (
        <DataTable
          caption="History (newest first)"
          rows={runs.data}
          rowKey={(r) => r.id}
          columns={[
            { header: 'Time', cell: (r) => r.created_at },
            { header: 'By', cell: (r) => r.created_by_name },
            { header: 'Pass', cell: (r) => r.passed },
            { header: 'Fail', cell: (r) => r.failed },
            { header: 'Not applicable', cell: (r) => r.not_applicable },
            {
              header: 'Report',
              cell: (r) =>
                r.id === runId ? (
                  'Shown'
                ) : (
                  <button type="button" onClick={() => setChosen(r.id)}>
                    Show run of {r.created_at}
                  </button>
                ),
            },
          ]}
        />
      )}
    </Page>
  );
}
