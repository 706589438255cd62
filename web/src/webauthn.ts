/**
 * Security keys in the browser (WebAuthn), for the login and the Two-Factor
 * page. Options come as the server's JSON and go through the browser's own
 * parsers; answers are sent with exactly the fields the API's schemas take.
 */
const b64u = (buf: ArrayBuffer): string =>
  btoa(String.fromCharCode(...new Uint8Array(buf)))
    .replace(/\+/g, '-')
    .replace(/\//g, '_')
    .replace(/=+$/, '');

type Pkc = PublicKeyCredential & {
  authenticatorAttachment: string | null;
};
const PKC = PublicKeyCredential as unknown as {
  parseRequestOptionsFromJSON(o: unknown): PublicKeyCredentialRequestOptions;
  parseCreationOptionsFromJSON(o: unknown): PublicKeyCredentialCreationOptions;
};

const common = (c: Pkc) => ({
  id: c.id,
  rawId: b64u(c.rawId),
  type: 'public-key' as const,
  clientExtensionResults: c.getClientExtensionResults(),
  ...(c.authenticatorAttachment ? { authenticatorAttachment: c.authenticatorAttachment } : {}),
});

/** Signs the server's login challenge with a registered key. */
export async function assertKey(options: unknown) {
  const c = (await navigator.credentials.get({ publicKey: PKC.parseRequestOptionsFromJSON(options) })) as Pkc;
  if (!c) throw new Error('No security key answered.');
  const r = c.response as AuthenticatorAssertionResponse;
  return {
    ...common(c),
    response: {
      clientDataJSON: b64u(r.clientDataJSON),
      authenticatorData: b64u(r.authenticatorData),
      signature: b64u(r.signature),
      ...(r.userHandle ? { userHandle: b64u(r.userHandle) } : {}),
    },
  };
}

/** Makes a new key credential for the server's registration options. */
export async function createKey(options: unknown) {
  const c = (await navigator.credentials.create({
    publicKey: PKC.parseCreationOptionsFromJSON(options),
  })) as Pkc;
  if (!c) throw new Error('No security key answered.');
  const r = c.response as AuthenticatorAttestationResponse;
  return {
    ...common(c),
    response: {
      clientDataJSON: b64u(r.clientDataJSON),
      attestationObject: b64u(r.attestationObject),
      transports: r.getTransports(),
    },
  };
}
