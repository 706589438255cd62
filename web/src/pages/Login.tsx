import { type FormEvent, useState } from 'react';
import { useNavigate } from 'react-router';
import { ApiError, api, type Session } from '../api';
import { ErrorBox, Field } from '../ui';

/**
 * Password first; when the account's MFA rules want a second factor the API
 * answers 401 with an auth receipt, and the TOTP step sends it back.
 */
export function LoginPage({ notice, onLogin }: { notice: string | null; onLogin: (s: Session) => void }) {
  const navigate = useNavigate();
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [project, setProject] = useState('');
  const [passcode, setPasscode] = useState('');
  const [receipt, setReceipt] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(notice);
  const [busy, setBusy] = useState(false);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const body = {
        username,
        ...(receipt ? { passcode } : { password }),
        ...(project ? { project } : {}),
      };
      const r = await api<{ session: Session }>(
        'POST',
        '/dashboard/session',
        body,
        receipt ? { 'openstack-auth-receipt': receipt } : {},
      );
      onLogin(r.session);
      navigate('/project/compute/instances');
    } catch (err) {
      const next = err instanceof ApiError ? err.headers.get('openstack-auth-receipt') : null;
      if (next) {
        setReceipt(next);
        setPassword('');
      } else {
        setError(err instanceof Error ? err.message : String(err));
        if (receipt) setPasscode('');
      }
    } finally {
      setBusy(false);
    }
  };

  return (
    <section className="login" aria-labelledby="login-title">
      <h1 id="login-title">Log in to Bulwark</h1>
      <form onSubmit={submit}>
        <Field label="User name">
          <input
            name="username"
            autoComplete="username"
            required
            value={username}
            readOnly={receipt !== null}
            onChange={(e) => setUsername(e.target.value)}
          />
        </Field>
        {receipt === null ? (
          <>
            <Field label="Password">
              <input
                name="password"
                type="password"
                autoComplete="current-password"
                required
                value={password}
                onChange={(e) => setPassword(e.target.value)}
              />
            </Field>
            <Field label="Project (optional)">
              <input name="project" value={project} onChange={(e) => setProject(e.target.value)} />
            </Field>
          </>
        ) : (
          <>
            <p>Password accepted. Enter the 6-digit code from your authenticator app.</p>
            <Field label="TOTP passcode">
              <input
                name="passcode"
                inputMode="numeric"
                autoComplete="one-time-code"
                pattern="[0-9]{6,8}"
                required
                value={passcode}
                onChange={(e) => setPasscode(e.target.value)}
              />
            </Field>
          </>
        )}
        <ErrorBox error={error} />
        <button type="submit" disabled={busy}>
          {busy ? 'Logging in…' : receipt ? 'Verify' : 'Log in'}
        </button>
      </form>
    </section>
  );
}
