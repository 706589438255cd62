import QRCode from 'qrcode';
import { type FormEvent, useEffect, useState } from 'react';
import { api, del, get, post, type Session } from '../api';
import { useAction, useLoad } from '../hooks';
import { Details, ErrorBox, Field, Loading, Page } from '../ui';
import { createKey } from '../webauthn';

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

/** The key URI as a QR code, drawn into a data: URL (the CSP's img-src allows data:, nothing inline runs). */
function QrImage({ uri }: { uri: string }) {
  const [src, setSrc] = useState<string | null>(null);
  useEffect(() => {
    let live = true;
    QRCode.toDataURL(uri, { errorCorrectionLevel: 'M', margin: 2, width: 200 }).then(
      (u) => live && setSrc(u),
    );
    return () => {
      live = false;
    };
  }, [uri]);
  return src ? (
    <img className="qr" src={src} alt="QR code of the key URI: scan it with the authenticator app" />
  ) : null;
}

interface KeyRow {
  id: string;
  name: string;
  created_at: string;
  last_used_at: string | null;
}

/** Security keys (WebAuthn): register one in this browser, list and remove them. */
function SecurityKeys() {
  const keys = useLoad(() =>
    get<{ credentials: KeyRow[] }>('/bulwark/v1/webauthn/credentials').then((r) => r.credentials),
  );
  const [name, setName] = useState('');
  const act = useAction();
  const register = async (e: FormEvent) => {
    e.preventDefault();
    const ok = await act.run(async () => {
      const options = await post('/bulwark/v1/webauthn/registration/options');
      await post('/bulwark/v1/webauthn/registration', { name, response: await createKey(options) });
    });
    if (ok) {
      setName('');
      keys.reload();
    }
  };
  return (
    <section aria-labelledby="keys-title">
      <h2 id="keys-title">Security keys</h2>
      <ErrorBox error={keys.error} />
      {keys.data === null ? (
        <Loading what="security keys" />
      ) : keys.data.length === 0 ? (
        <p>No security key registered.</p>
      ) : (
        <table>
          <caption>Your security keys</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Registered</th>
              <th scope="col">Last used</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {keys.data.map((k) => (
              <tr key={k.id}>
                <td>{k.name}</td>
                <td>{k.created_at}</td>
                <td>{k.last_used_at ?? 'Never'}</td>
                <td>
                  <button
                    type="button"
                    className="danger"
                    aria-label={`Remove ${k.name}`}
                    disabled={act.busy}
                    onClick={async () => {
                      if (await act.run(() => del(`/bulwark/v1/webauthn/credentials/${k.id}`))) keys.reload();
                    }}
                  >
                    Remove
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <form onSubmit={register} className="inline-form" aria-label="Register a security key">
        <Field label="Key name">
          <input name="key-name" required value={name} onChange={(e) => setName(e.target.value)} />
        </Field>
        <button type="submit" disabled={act.busy}>
          Register a security key
        </button>
      </form>
      <ErrorBox error={act.error} />
    </section>
  );
}

/** One-time recovery codes: a new set replaces the old one and is shown once. */
function RecoveryCodes() {
  const left = useLoad(() =>
    get<{ remaining: number }>('/bulwark/v1/recovery-codes').then((r) => r.remaining),
  );
  const [codes, setCodes] = useState<string[] | null>(null);
  const act = useAction();
  return (
    <section aria-labelledby="codes-title">
      <h2 id="codes-title">Recovery codes</h2>
      <p>Unused codes: {left.data ?? '…'}. Each works once, with your password, when your device is lost.</p>
      <button
        type="button"
        disabled={act.busy}
        onClick={async () => {
          await act.run(async () => {
            setCodes((await post<{ recovery_codes: string[] }>('/bulwark/v1/recovery-codes')).recovery_codes);
          });
          left.reload();
        }}
      >
        Generate new recovery codes
      </button>
      {codes && (
        <div role="status">
          <p>Shown once: store them offline. The earlier codes no longer work.</p>
          <ul className="codes" aria-label="Recovery codes">
            {codes.map((c) => (
              <li key={c}>
                <code>{c}</code>
              </li>
            ))}
          </ul>
        </div>
      )}
      <ErrorBox error={act.error ?? left.error} />
    </section>
  );
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
  const uri = `otpauth://totp/Bulwark:${encodeURIComponent(session.user.name)}?secret=${secret}&issuer=Bulwark`;
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
          <QrImage uri={uri} />
          <Details
            rows={[
              ['Secret', <code key="s">{secret}</code>],
              ['Key URI', <code key="u">{uri}</code>],
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
      <SecurityKeys />
      <RecoveryCodes />
    </Page>
  );
}
