import { useCallback, useEffect, useState } from 'react';
import { Navigate, NavLink, Route, Routes, useNavigate } from 'react-router';
import { ApiError, api, csrfToken, SESSION_ENDED, type Session } from './api';
import { ApprovalsPage } from './pages/Approvals';
import { AuditPage } from './pages/Audit';
import { CompliancePage } from './pages/Compliance';
import { ConsolePage } from './pages/Console';
import { FlavorsPage } from './pages/Flavors';
import { ImagesPage } from './pages/Images';
import { InstanceDetail } from './pages/InstanceDetail';
import { InstancesPage } from './pages/Instances';
import { LoginPage } from './pages/Login';
import { QuotasPage } from './pages/Quotas';
import { SecurityGroupDetail } from './pages/SecurityGroupDetail';
import { SecurityGroupsPage } from './pages/SecurityGroups';
import { ServerGroupsPage } from './pages/ServerGroups';
import { TwoFactorPage } from './pages/TwoFactor';
import { UsersPage } from './pages/Users';
import { VolumeDetail } from './pages/VolumeDetail';
import { VolumesPage } from './pages/Volumes';
import { VolumeTypesPage } from './pages/VolumeTypes';

type NavSection = readonly [string, readonly (readonly [string, string])[]];

const PROJECT_NAV: readonly NavSection[] = [
  [
    'Compute',
    [
      ['Instances', '/project/compute/instances'],
      ['Server Groups', '/project/compute/server-groups'],
    ],
  ],
  ['Network', [['Security Groups', '/project/network/security-groups']]],
  ['Volumes', [['Volumes', '/project/volumes']]],
  ['Account', [['Two-Factor', '/account/two-factor']]],
];
const ADMIN_NAV: readonly NavSection[] = [
  [
    'Compute',
    [
      ['Flavors', '/admin/compute/flavors'],
      ['Images', '/admin/compute/images'],
    ],
  ],
  ['Volume', [['Volume Types', '/admin/volume/volume-types']]],
  [
    'System',
    [
      ['Quotas and Usage', '/admin/quotas'],
      ['Users', '/admin/users'],
      ['Audit Log', '/admin/audit'],
      ['Approvals', '/admin/approvals'],
      ['Compliance', '/admin/compliance'],
    ],
  ],
];

/** Time left in the session, from the token's expiry. */
function Expiry({ at, onExpired }: { at: string; onExpired: () => void }) {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), 15_000);
    return () => clearInterval(t);
  }, []);
  const left = Date.parse(at) - now;
  useEffect(() => {
    if (left <= 0) onExpired();
  }, [left, onExpired]);
  const min = Math.max(0, Math.floor(left / 60_000));
  return (
    <span className="expiry" title={`Session expires at ${at}`}>
      Session expires in {min >= 60 ? `${Math.floor(min / 60)} h ${min % 60} min` : `${min} min`}
    </span>
  );
}

/** An admin's session without a second factor (while admins must use one) may only enroll one. */
const ENROLL_NAV: readonly NavSection[] = [['Account', [['Two-Factor', '/account/two-factor']]]];

function Nav({ session }: { session: Session }) {
  const groups: [string, readonly NavSection[]][] = session.mfa_pending
    ? [['Enroll', ENROLL_NAV]]
    : [
        ['Project', PROJECT_NAV],
        ...(session.is_admin ? [['Admin', ADMIN_NAV] as [string, readonly NavSection[]]] : []),
      ];
  return (
    <nav aria-label="Main">
      {groups.map(([top, sections]) => (
        <div key={top} className="nav-top">
          <h2>{top}</h2>
          {sections.map(([name, links]) => (
            <div key={name} className="nav-section">
              <h3>{name}</h3>
              <ul>
                {links.map(([label, to]) => (
                  <li key={to}>
                    <NavLink to={to}>{label}</NavLink>
                  </li>
                ))}
              </ul>
            </div>
          ))}
        </div>
      ))}
    </nav>
  );
}

export function App() {
  const [session, setSession] = useState<Session | null | undefined>(undefined);
  const navigate = useNavigate();
  useEffect(() => {
    // No CSRF cookie, no session: show the login without asking (and without an audited refusal).
    if (!csrfToken()) return setSession(null);
    api<{ session: Session }>('GET', '/dashboard/session').then(
      (r) => setSession(r.session),
      (e: unknown) => {
        if (!(e instanceof ApiError) || e.status !== 401) console.error(e);
        setSession(null);
      },
    );
  }, []);
  const [notice, setNotice] = useState<string | null>(null);
  const expired = useCallback(() => {
    setNotice('Your session expired; log in again.');
    setSession(null);
    navigate('/login');
  }, [navigate]);
  useEffect(() => {
    window.addEventListener(SESSION_ENDED, expired);
    return () => window.removeEventListener(SESSION_ENDED, expired);
  }, [expired]);
  const logout = async () => {
    await api('DELETE', '/dashboard/session').catch(() => undefined);
    setNotice(null);
    setSession(null);
    navigate('/login');
  };

  if (session === undefined) return <p role="status">Loading…</p>;
  if (session === null)
    return (
      <main>
        <Routes>
          <Route path="/login" element={<LoginPage notice={notice} onLogin={setSession} />} />
          <Route path="*" element={<Navigate to="/login" replace />} />
        </Routes>
      </main>
    );
  return (
    <div className="shell">
      <header>
        <span className="brand">Bulwark</span>
        <span>
          {session.user.name} · project {session.project?.name ?? '(none)'}
        </span>
        <Expiry at={session.expires_at} onExpired={expired} />
        <button type="button" onClick={logout}>
          Log out
        </button>
      </header>
      <Nav session={session} />
      <main>
        {session.mfa_pending ? (
          <>
            <p className="restricted" role="note">
              Administrators must use a second factor. This session can only enroll one: add an authenticator
              app or a security key below, then log out and log in again with it.
            </p>
            <Routes>
              <Route path="/account/two-factor" element={<TwoFactorPage session={session} />} />
              <Route path="*" element={<Navigate to="/account/two-factor" replace />} />
            </Routes>
          </>
        ) : (
          <Routes>
            <Route path="/project/compute/instances" element={<InstancesPage session={session} />} />
            <Route path="/project/compute/instances/:id" element={<InstanceDetail session={session} />} />
            <Route path="/project/compute/instances/:id/console" element={<ConsolePage />} />
            <Route path="/project/compute/server-groups" element={<ServerGroupsPage />} />
            <Route path="/project/network/security-groups" element={<SecurityGroupsPage />} />
            <Route path="/project/network/security-groups/:id" element={<SecurityGroupDetail />} />
            <Route path="/project/volumes" element={<VolumesPage />} />
            <Route path="/project/volumes/:id" element={<VolumeDetail />} />
            <Route path="/account/two-factor" element={<TwoFactorPage session={session} />} />
            <Route path="/admin/compute/flavors" element={<FlavorsPage />} />
            <Route path="/admin/compute/images" element={<ImagesPage />} />
            <Route path="/admin/volume/volume-types" element={<VolumeTypesPage />} />
            <Route path="/admin/quotas" element={<QuotasPage session={session} />} />
            <Route path="/admin/users" element={<UsersPage />} />
            <Route path="/admin/audit" element={<AuditPage />} />
            <Route path="/admin/approvals" element={<ApprovalsPage />} />
            <Route path="/admin/compliance" element={<CompliancePage />} />
            <Route path="*" element={<Navigate to="/project/compute/instances" replace />} />
          </Routes>
        )}
      </main>
    </div>
  );
}
