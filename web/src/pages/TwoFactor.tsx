import { type FormEvent, useState } from 'react';
import { api, get, post, type Session } from '../api';
import { useAction, useLoad } from '../hooks';
import { Details, ErrorBox, Field, Loading, Page } from '../ui';

const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

function base32(bytes: Uint8Array): string {
  let bits = '';
  for (const b of bytes) bits += b.toString(2).padStart(8, '0');
  let out = '';
  for (let i = 0; i + 5 <= bits.length; i += 5) out += B32[Number.parseInt(bits.slice(i, i + 5), 2)];
  return out;
}
function unbase32(s: string): Uint8Array<ArrayBuffer> {
  let bits = '';
  for (const c of s) bits += B32.indexOf(c).toString(2).padStart(5, '0');
  const out = new Uint8Array(Math.floor(bits.length / 8));
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(bits.slice(i * 8, i * 8 + 8), 2);
  return out;
}

/** RFC 6238 (HMAC-SHA1, 6 digits, 30 s) in WebCrypto: the code this secret gives at step `step`. */
async function totp(secret: string, step: number): Promise<string> {
  const key = await crypto.subtle.importKey('raw', unbase32(secret), { name: 'HMAC', hash: 'SHA-1' }, false, [
    'sign',
  ]);
  const msg = new DataView(new ArrayBuffer(8));
  msg.setUint32(4, step);
  const h = new Uint8Array(await crypto.subtle.sign('HMAC', key, msg.buffer));
  const o = h[19]! & 0xf;
  const n = ((h[o]! & 0x7f) << 24) | (h[o + 1]! << 16) | (h[o + 2]! << 8) | h[o + 3]!;
  return String(n % 1_000_000).padStart(6, '0');
}

interface UserOptions {
  multi_factor_auth_enabled?: boolean;
  multi_factor_auth_rules?: string[][];
}

/**
 * Account → Two-Factor: the logged-in user enrolls a TOTP secret
 * (`openstack credential create --type totp`) and turns on the password + TOTP
 * rule (`openstack user set --multi-factor-auth-rule password,totp`), docs/identity.md.
 * The secret is made here and checked against a code from the app before it is sent,
 * so a mistyped secret cannot lock the user out.
 */
export function TwoFactorPage({ session }: { session: Session }) {
  const uid = session.user.id;
  const state = useLoad(async () => {
    const [creds, user] = await Promise.all([
      get<{ credentials: { id: string }[] }>(`/identity/v3/credentials?user_id=${uid}&type=totp`),
      get<{ user: { options?: UserOptions } }>(`/identity/v3/users/${uid}`),
    ]);
    return { totp: creds.credentials.length, options: user.user.options ?? {} };
  }, [uid]);
  const [secret, setSecret] = useState('');
  const [code, setCode] = useState('');
  const act = useAction();
  const [done, setDone] = useState(false);
  const enroll = async (e: FormEvent) => {
    e.preventDefault();
    const ok = await act.run(async () => {
      const step = Math.floor(Date.now() / 30_000);
      const near = await Promise.all([step - 1, step, step + 1].map((s) => totp(secret, s)));
      if (!near.includes(code.trim()))
        throw new Error(
          'That code does not match the new secret: check the app and the clock, and try again.',
        );
      await post('/identity/v3/credentials', { credential: { type: 'totp', user_id: uid, blob: secret } });
      await api('PATCH', `/identity/v3/users/${uid}`, {
        user: {
          options: { multi_factor_auth_rules: [['password', 'totp']], multi_factor_auth_enabled: true },
        },
      });
    });
    if (ok) {
      setSecret('');
      setCode('');
      setDone(true);
      state.reload();
    }
  };
  if (state.error) return <ErrorBox error={state.error} />;
  if (!state.data) return <Loading what="your factors" />;
  const rules = state.data.options.multi_factor_auth_rules ?? [];
  return (
    <Page title="Two-Factor Authentication">
      <Details
        rows={[
          ['User', session.user.name],
          ['TOTP enrolled', state.data.totp > 0 ? `Yes (${state.data.totp})` : 'No'],
          ['MFA required', state.data.options.multi_factor_auth_enabled ? 'Yes' : 'No'],
          ['MFA rules', rules.length ? rules.map((r) => r.join(' + ')).join('; ') : 'None'],
        ]}
      />
      {done && (
        <p role="status">
          TOTP is enrolled and required: from your next login, a password alone is not enough.
        </p>
      )}
      <h2>Enroll an authenticator app</h2>
      {!secret ? (
        <button type="button" onClick={() => setSecret(base32(crypto.getRandomValues(new Uint8Array(20))))}>
          Generate a new secret
        </button>
      ) : (
        <form onSubmit={enroll} className="inline-form" aria-label="Enroll TOTP">
          <p>
            Add this secret to your authenticator app (TOTP, SHA-1, 6 digits, 30 seconds). It is shown only
            now; the platform stores it sealed.
          </p>
          <Details
            rows={[
              ['Secret', <code key="s">{secret}</code>],
              [
                'Key URI',
                <code key="u">{`otpauth://totp/Bulwark:${encodeURIComponent(session.user.name)}?secret=${secret}&issuer=Bulwark`}</code>,
              ],
            ]}
          />
          <Field label="Code from the app">
            <input
              name="code"
              inputMode="numeric"
              autoComplete="one-time-code"
              pattern="[0-9]{6}"
              required
              value={code}
              onChange={(e) => setCode(e.target.value)}
            />
          </Field>
          <button type="submit" disabled={act.busy}>
            Enroll and require TOTP
          </button>
        </form>
      )}
      <ErrorBox error={act.error} />
    </Page>
  );
}
