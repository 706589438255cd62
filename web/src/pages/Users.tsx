import { get } from '../api';
import { useLoad } from '../hooks';
import { ErrorBox, Loading, Page } from '../ui';

interface User {
  id: string;
  name: string;
  enabled: boolean;
  options: { multi_factor_auth_enabled?: boolean; multi_factor_auth_rules?: string[][] };
}

/** The access review's view of a user (docs/identity.md, Access review). */
interface Reviewed {
  id: string;
  last_login_at: string | null;
  flags: string[];
}

/** Users and whether their login needs a second factor (Keystone's MFA options, docs/identity.md). */
export function UsersPage() {
  const users = useLoad(async () => {
    const [u, creds, review] = await Promise.all([
      get<{ users: User[] }>('/identity/v3/users').then((r) => r.users),
      get<{ credentials: { user_id: string; type: string }[] }>('/identity/v3/credentials?type=totp').then(
        (r) => r.credentials,
      ),
      get<{ access_review: { users: Reviewed[] } }>('/bulwark/v1/access-review').then(
        (r) => r.access_review.users,
      ),
    ]);
    const enrolled = new Set(creds.map((c) => c.user_id));
    const byId = new Map(review.map((r) => [r.id, r]));
    return u.map((x) => ({ ...x, totp: enrolled.has(x.id), review: byId.get(x.id) }));
  });
  return (
    <Page title="Users">
      <ErrorBox error={users.error} />
      {users.data === null ? (
        <Loading what="users" />
      ) : (
        <table>
          <caption>Users and their MFA status</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Enabled</th>
              <th scope="col">MFA Required</th>
              <th scope="col">MFA Rules</th>
              <th scope="col">TOTP Enrolled</th>
              <th scope="col">Last Login</th>
              <th scope="col">Review Flags</th>
            </tr>
          </thead>
          <tbody>
            {users.data.map((u) => (
              <tr key={u.id}>
                <td>{u.name}</td>
                <td>{u.enabled ? 'Yes' : 'No'}</td>
                <td>{u.options.multi_factor_auth_enabled ? 'Yes' : 'No'}</td>
                <td>
                  {(u.options.multi_factor_auth_rules ?? []).map((r) => r.join(' + ')).join('; ') || '-'}
                </td>
                <td>{u.totp ? 'Yes' : 'No'}</td>
                <td>{u.review?.last_login_at ?? 'Never'}</td>
                <td>{u.review?.flags.join(', ') || 'None'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Page>
  );
}
