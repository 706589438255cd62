import { useState } from 'react';
import { del, get } from '../api';
import { useAction, useLoad } from '../hooks';
import { DangerButton, Listing } from '../listing';
import { ErrorBox, Page } from '../ui';

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

/** One of a user's second factors as the admin API lists it: never a secret. */
interface MfaDevice {
  id: string;
  type: 'totp' | 'webauthn' | 'recovery_codes';
  name: string | null;
  created_at: string | null;
  last_used_at: string | null;
  remaining?: number;
}
const KIND = { totp: 'TOTP', webauthn: 'Security key', recovery_codes: 'Recovery codes' } as const;

/** An admin's view of one user's second factors, each revocable (docs/identity.md, "Other users' factors"). */
function UserFactors({ user }: { user: User }) {
  const path = `/bulwark/v1/users/${user.id}/mfa-devices`;
  const devices = useLoad(() => get<{ mfa_devices: MfaDevice[] }>(path).then((r) => r.mfa_devices), [path]);
  const revoke = useAction();
  const label = (d: MfaDevice) => `${KIND[d.type]}${d.name ? ` ${d.name}` : ''}`;
  return (
    <section aria-labelledby="factors-title">
      <h2 id="factors-title">Second factors of {user.name}</h2>
      <ErrorBox error={devices.error ?? revoke.error} />
      {devices.data?.length === 0 ? (
        <p>{user.name} has no second factor.</p>
      ) : (
        <Listing
          what="second factors"
          caption={`Second factors of ${user.name} (secrets are never shown)`}
          rows={devices.data}
          rowKey={(d) => d.id}
          columns={[
            { header: 'Kind', cell: label },
            { header: 'Created', cell: (d) => d.created_at ?? '-' },
            {
              header: 'Last Used',
              cell: (d) =>
                d.type === 'recovery_codes' ? `${d.remaining} unused` : (d.last_used_at ?? 'Never'),
            },
            {
              header: 'Actions',
              cell: (d) => (
                <DangerButton
                  busy={revoke.busy}
                  label={`Revoke ${label(d)} of ${user.name}`}
                  onClick={async () => {
                    if (await revoke.run(() => del(`${path}/${encodeURIComponent(d.id)}`))) devices.reload();
                  }}
                >
                  Revoke
                </DangerButton>
              ),
            },
          ]}
        />
      )}
    </section>
  );
}

/** Users and whether their login needs a second factor (Keystone's MFA options, docs/identity.md). */
export function UsersPage() {
  const [chosen, setChosen] = useState<User | null>(null);
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
      <Listing
        what="users"
        caption="Users and their MFA status"
        rows={users.data}
        rowKey={(u) => u.id}
        columns={[
          { header: 'Name', cell: (u) => u.name },
          { header: 'Enabled', cell: (u) => (u.enabled ? 'Yes' : 'No') },
          { header: 'MFA Required', cell: (u) => (u.options.multi_factor_auth_enabled ? 'Yes' : 'No') },
          {
            header: 'MFA Rules',
            cell: (u) =>
              (u.options.multi_factor_auth_rules ?? []).map((r) => r.join(' + ')).join('; ') || '-',
          },
          { header: 'TOTP Enrolled', cell: (u) => (u.totp ? 'Yes' : 'No') },
          { header: 'Last Login', cell: (u) => u.review?.last_login_at ?? 'Never' },
          { header: 'Review Flags', cell: (u) => u.review?.flags.join(', ') || 'None' },
          {
            header: 'Second Factors',
            cell: (u) => (
              <button
                type="button"
                aria-label={`Show second factors of ${u.name}`}
                onClick={() => setChosen(u)}
              >
                Show
              </button>
            ),
          },
        ]}
      />
      {chosen && <UserFactors key={chosen.id} user={chosen} />}
    </Page>
  );
}
