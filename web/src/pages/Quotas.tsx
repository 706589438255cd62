import { useState } from 'react';
import { get, type Session } from '../api';
import { useLoad } from '../hooks';
import { ErrorBox, Field, Loading, Page } from '../ui';

/** Nova and Cinder say `in_use`, Neutron says `used`. */
type Usage = { limit: number; in_use?: number; used?: number };
type Detail = Record<string, Usage | string>;
const rows = (d: Detail) => Object.entries(d).filter((e): e is [string, Usage] => typeof e[1] === 'object');

function QuotaTable({ title, detail }: { title: string; detail: Detail }) {
  return (
    <table>
      <caption>{title}</caption>
      <thead>
        <tr>
          <th scope="col">Resource</th>
          <th scope="col">In Use</th>
          <th scope="col">Limit</th>
        </tr>
      </thead>
      <tbody>
        {rows(detail).map(([k, v]) => (
          <tr key={k}>
            <td>{k}</td>
            <td>{v.in_use ?? v.used ?? '-'}</td>
            <td>{v.limit === -1 ? 'Unlimited' : v.limit}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export function QuotasPage({ session }: { session: Session }) {
  const projects = useLoad(() =>
    get('/identity/v3/projects').then((r) => r.projects as { id: string; name: string }[]),
  );
  const [project, setProject] = useState(session.project?.id ?? '');
  const usage = useLoad(async () => {
    const [compute, volume, network] = await Promise.all([
      get(`/compute/v2.1/os-quota-sets/${project}/detail`).then((r) => r.quota_set as Detail),
      get(`/volume/v3/os-quota-sets/${project}?usage=true`).then((r) => r.quota_set as Detail),
      get(`/network/v2.0/quotas/${project}/details`).then((r) => r.quota as Detail),
    ]);
    return { compute, volume, network };
  }, [project]);
  return (
    <Page title="Quotas and Usage">
      <Field label="Project">
        <select name="project" value={project} onChange={(e) => setProject(e.target.value)}>
          {(projects.data ?? (session.project ? [session.project] : [])).map((p) => (
            <option key={p.id} value={p.id}>
              {p.name}
            </option>
          ))}
        </select>
      </Field>
      <ErrorBox error={usage.error ?? projects.error} />
      {usage.data === null ? (
        <Loading what="quotas" />
      ) : (
        <div className="grid">
          <QuotaTable title="Compute" detail={usage.data.compute} />
          <QuotaTable title="Volume" detail={usage.data.volume} />
          <QuotaTable title="Network" detail={usage.data.network} />
        </div>
      )}
    </Page>
  );
}
