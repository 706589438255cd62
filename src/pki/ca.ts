import 'reflect-metadata';
import { createHash, randomBytes, webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(globalThis.crypto);

type CryptoKey = webcrypto.CryptoKey;

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY = 86_400_000;

export interface PemPair {
  certPem: string;
  keyPem: string;
}

const serial = () => {
  const b = randomBytes(16);
  b[0] = (b[0] ?? 0) & 0x7f; // positive
  return b.toString('hex');
};

async function exportKey(key: CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', key), 'PRIVATE KEY');
}

async function importKey(pem: string): Promise<CryptoKey> {
  return webcrypto.subtle.importKey('pkcs8', x509.PemConverter.decodeFirst(pem), ALG, false, ['sign']);
}

/** A fresh platform CA (ECDSA P-256, ten years). */
export async function createCa(commonName: string): Promise<PemPair> {
  const keys = await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${commonName}`,
    notBefore: new Date(Date.now() - DAY),
    notAfter: new Date(Date.now() + 3650 * DAY),
    keys,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return {
    certPem: `${cert.toString('pem').trim()}\n`,
    keyPem: `${(await exportKey(keys.privateKey)).trim()}\n`,
  };
}

interface LeafOptions {
  commonName: string;
  names?: readonly string[];
  usage: 'server' | 'client';
  days?: number;
}

/** Issues a leaf certificate signed by `ca` for a server or a client (mTLS). */
export async function issueCertificate(ca: PemPair, opts: LeafOptions): Promise<PemPair> {
  const keys = await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']);
  return {
    certPem: await signLeaf(ca, keys.publicKey, opts),
    keyPem: `${(await exportKey(keys.privateKey)).trim()}\n`,
  };
}

/** A key pair and a PKCS#10 request for it: the key never leaves the host that made it (an agent). */
export async function createCsr(commonName: string): Promise<{ csrPem: string; keyPem: string }> {
  const keys = await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${commonName}`,
    keys,
    signingAlgorithm: ALG,
  });
  return { csrPem: csr.toString('pem'), keyPem: `${(await exportKey(keys.privateKey)).trim()}\n` };
}

/**
 * Signs a PKCS#10 request (its self-signature must verify, proving the key is
 * held). Only the request's public key is used: the name, usage and lifetime
 * are the caller's, never the requester's.
 */
export async function signCsr(ca: PemPair, csrPem: string, opts: LeafOptions): Promise<string> {
  return signLeaf(ca, await csrPublicKey(csrPem), opts);
}

/** The public key of a PKCS#10 request whose self-signature verifies; anything else throws, saying why. */
export async function csrPublicKey(csrPem: string): Promise<CryptoKey> {
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(csrPem);
  } catch {
    throw new Error('not a PEM PKCS#10 certificate request');
  }
  if (!(await csr.verify())) throw new Error("the certificate request's signature does not verify");
  return csr.publicKey.export();
}

/** SHA-256 of a certificate's DER, hex: how a host's certificate is pinned (hosts.cert_fingerprint). */
export function certFingerprint(pemOrDer: string | Buffer): string {
  const der = typeof pemOrDer === 'string' ? Buffer.from(x509.PemConverter.decodeFirst(pemOrDer)) : pemOrDer;
  return createHash('sha256').update(der).digest('hex');
}

async function signLeaf(ca: PemPair, publicKey: CryptoKey, opts: LeafOptions): Promise<string> {
  const caCert = new x509.X509Certificate(ca.certPem);
  const caKey = await importKey(ca.keyPem);
  const names = opts.names ?? [];
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${opts.commonName}`,
    issuer: caCert.subject,
    notBefore: new Date(Date.now() - DAY),
    notAfter: new Date(Date.now() + (opts.days ?? 825) * DAY),
    signingKey: caKey,
    publicKey,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement,
        true,
      ),
      new x509.ExtendedKeyUsageExtension(
        [opts.usage === 'server' ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth],
        false,
      ),
      ...(names.length
        ? [
            new x509.SubjectAlternativeNameExtension(
              names.map((n) => ({ type: isIP(n) ? ('ip' as const) : ('dns' as const), value: n })),
            ),
          ]
        : []),
      await x509.SubjectKeyIdentifierExtension.create(publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(caCert),
    ],
  });
  return `${cert.toString('pem').trim()}\n`;
}
