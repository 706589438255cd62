import { type FormEvent, useState } from 'react';
import { useNavigate } from 'react-router';
import { ApiError, api, type Session } from '../api';
import { ErrorBox, Field } from '../ui';
import { assertKey } from '../webauthn';

/**
 * Password first; when the account's MFA rules want a second factor the API
 * answers 401 with an auth receipt, and the TOTP step sends it back. Or the
 * password with a security key's assertion, or with a one-time recovery code.
 */
export function LoginPage({ notice, onLogin }: { notice: string | null; onLogin: (s: Session) => void }) {
  const navigate = useNavigate();
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [project, setProject] = useState('');
  const [passcode, setPasscode] = useState('');
  const [recoveryCode, setRecoveryCode] = useState('');
  const [receipt, setReceipt] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(notice);
  const [busy, setBusy] = useState(false);

  const withKey = async () => {
    setBusy(true);
    setError(null);
    try {
      const user = { name: username, domain: { id: 'default' } };
      const options = await api('POST', '/bulwark/v1/webauthn/login/options', { user });
      const webauthn = await assertKey(options);
      const r = await api<{ session: Session }>('POST', '/dashboard/session', {
        username,
        password,
        webauthn,
        ...(project ? { project } : {}),
      });
      onLogin(r.session);
      navigate('/project/compute/instances');
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  };

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const body = {
        username,
        ...(receipt ? { passcode } : { password }),
        ...(!receipt && recoveryCode ? { recovery_code: recoveryCode } : {}),
        ...(project ? { project } : {}),
      };
      const r = await api<{ session: Session }>(
        'POST',
        '/dashboard/session',
        body,
        receipt ? { 'openstack-auth-receipt': receipt } : {},
      );
      onLogin(r.session);
      navigate(r.session.mfa_pending ? '/account/two-factor' : '/project/compute/instances');
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
            <Field label="Recovery code (optional, instead of your device)">
              <input
                name="recovery-code"
                autoComplete="off"
                value={recoveryCode}
                onChange={(e) => setRecoveryCode(e.target.value)}
              />
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
        {receipt === null && (
          <button type="button" disabled={busy || !username || !password} onClick={withKey}>
            Log in with a security key
          </button>
        )}
      </form>
    </section>
  );
}
