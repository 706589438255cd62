'use strict';
// The dashboard's security-key sign-in: plain WebAuthn calls, no framework, served under a strict CSP.
(() => {
  const $ = (id) => document.getElementById(id);
  const enc = (buf) =>
    btoa(String.fromCharCode(...new Uint8Array(buf)))
      .replace(/\+/g, '-')
      .replace(/\//g, '_')
      .replace(/=+$/, '');
  const dec = (s) => {
    const b = s.replace(/-/g, '+').replace(/_/g, '/');
    return Uint8Array.from(atob(b + '='.repeat((4 - (b.length % 4)) % 4)), (c) => c.charCodeAt(0));
  };
  let token = null;
  const status = (t) => {
    $('status').textContent = t;
  };
  async function api(method, path, body, auth) {
    const r = await fetch(path, {
      method,
      headers: { 'content-type': 'application/json', ...(auth ? { 'x-auth-token': auth } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error((json.error && json.error.message) || `HTTP ${r.status}`);
    return { json, token: r.headers.get('x-subject-token') };
  }
  const who = () => ({ name: $('user').value, domain: { id: 'default' } });
  const scope = () => ({ name: $('project').value, domain: { id: 'default' } });
  const run = (fn) => () => fn().catch((e) => status(`error: ${e.message}`));

  $('password-login').addEventListener(
    'click',
    run(async () => {
      const r = await api('POST', '/identity/v3/auth/tokens', {
        auth: {
          identity: { methods: ['password'], password: { user: { ...who(), password: $('password').value } } },
          scope: { project: scope() },
        },
      });
      token = r.token;
      status('Signed in with password.');
    }),
  );

  $('register').addEventListener(
    'click',
    run(async () => {
      if (!token) throw new Error('sign in first');
      const { json: o } = await api('POST', '/bulwark/v1/webauthn/registration/options', {}, token);
      const cred = await navigator.credentials.create({
        publicKey: {
          ...o,
          challenge: dec(o.challenge),
          user: { ...o.user, id: dec(o.user.id) },
          excludeCredentials: (o.excludeCredentials || []).map((c) => ({ ...c, id: dec(c.id) })),
        },
      });
      const response = {
        id: cred.id,
        rawId: enc(cred.rawId),
        type: cred.type,
        clientExtensionResults: cred.getClientExtensionResults(),
        authenticatorAttachment: cred.authenticatorAttachment || undefined,
        response: {
          clientDataJSON: enc(cred.response.clientDataJSON),
          attestationObject: enc(cred.response.attestationObject),
          transports: cred.response.getTransports ? cred.response.getTransports() : [],
        },
      };
      await api('POST', '/bulwark/v1/webauthn/registration', { name: $('key-name').value, response }, token);
      status('Security key registered.');
    }),
  );

  $('key-login').addEventListener(
    'click',
    run(async () => {
      const { json: o } = await api('POST', '/bulwark/v1/webauthn/login/options', { user: who() });
      const a = await navigator.credentials.get({
        publicKey: {
          ...o,
          challenge: dec(o.challenge),
          allowCredentials: (o.allowCredentials || []).map((c) => ({ ...c, id: dec(c.id) })),
        },
      });
      const response = {
        id: a.id,
        rawId: enc(a.rawId),
        type: a.type,
        clientExtensionResults: a.getClientExtensionResults(),
        authenticatorAttachment: a.authenticatorAttachment || undefined,
        response: {
          clientDataJSON: enc(a.response.clientDataJSON),
          authenticatorData: enc(a.response.authenticatorData),
          signature: enc(a.response.signature),
          userHandle: a.response.userHandle ? enc(a.response.userHandle) : undefined,
        },
      };
      const r = await api('POST', '/bulwark/v1/webauthn/login', {
        user: who(),
        password: $('password').value,
        project: scope(),
        response,
      });
      token = r.token;
      status(`Signed in with security key: ${r.json.token.methods.join(',')}`);
    }),
  );
})();
