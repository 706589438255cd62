import { randomBytes } from 'node:crypto';
import { lstatSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type * as Pkcs11Types from 'pkcs11js';
import { IV_BYTES, type Sealed, TAG_BYTES } from './envelope.js';
import type { KekProvider } from './kek.js';

const require = createRequire(import.meta.url);

export interface Pkcs11KekOptions {
  module: string;
  tokenLabel: string;
  /** A file holding the user PIN (mode 0600 or 0400); the PIN is never on a command line. */
  pinFile: string;
  /** Key objects are labelled `<keyLabel>-v<N>` (default `bulwark-kek`). */
  keyLabel?: string;
}

/**
 * The KEK on a PKCS#11 token (an HSM; SoftHSM2 in tests). Each version is a
 * non-extractable, sensitive AES-256 secret-key object labelled
 * `<label>-v<N>`, created on the token if missing. Data keys are wrapped by
 * the token with CKM_AES_GCM (random 96-bit IV, 128-bit tag, the same AAD as
 * the file provider): the KEK never leaves the token.
 */
export class Pkcs11Kek implements KekProvider {
  readonly id: string;
  private readonly p11: Pkcs11Types.PKCS11;
  private readonly mod: typeof Pkcs11Types;
  private session: Buffer | undefined;
  private readonly handles = new Map<number, Buffer>();
  private readonly keyLabel: string;

  private constructor(opts: Pkcs11KekOptions) {
    this.mod = require('pkcs11js') as typeof Pkcs11Types;
    this.p11 = new this.mod.PKCS11();
    this.keyLabel = opts.keyLabel ?? 'bulwark-kek';
    this.id = `pkcs11:${opts.tokenLabel}/${this.keyLabel}`;
  }

  static open(opts: Pkcs11KekOptions): Pkcs11Kek {
    const st = lstatSync(opts.pinFile);
    if (!st.isFile() || (st.mode & 0o077) !== 0)
      throw new Error(`PKCS#11 PIN file ${opts.pinFile} must be a regular file with mode 0600 or 0400`);
    const pin = readFileSync(opts.pinFile, 'utf8').replace(/\r?\n$/, '');
    const kek = new Pkcs11Kek(opts);
    const { p11, mod } = kek;
    p11.load(opts.module);
    try {
      p11.C_Initialize();
    } catch (e) {
      if (!String((e as Error).message).includes('CKR_CRYPTOKI_ALREADY_INITIALIZED')) throw e;
    }
    const slot = p11.C_GetSlotList(true).find((s) => p11.C_GetTokenInfo(s).label.trim() === opts.tokenLabel);
    if (!slot) {
      kek.finalize();
      throw new Error(`no PKCS#11 token labelled "${opts.tokenLabel}" in ${opts.module}`);
    }
    if (!p11.C_GetMechanismList(slot).includes(mod.CKM_AES_GCM)) {
      kek.finalize();
      throw new Error(`the PKCS#11 token "${opts.tokenLabel}" does not offer CKM_AES_GCM`);
    }
    kek.session = p11.C_OpenSession(slot, mod.CKF_SERIAL_SESSION | mod.CKF_RW_SESSION);
    try {
      p11.C_Login(kek.session, mod.CKU_USER, pin);
    } catch (e) {
      if (!String((e as Error).message).includes('CKR_USER_ALREADY_LOGGED_IN')) {
        kek.finalize();
        throw new Error(
          `PKCS#11 login to "${opts.tokenLabel}" failed (${(e as Error).message.split(':')[0]})`,
        );
      }
    }
    kek.findKeys();
    if (kek.handles.size === 0) kek.generate(1);
    return kek;
  }

  private get s(): Buffer {
    if (!this.session) throw new Error('the PKCS#11 session is closed');
    return this.session;
  }

  private findKeys(): void {
    const { p11, mod } = this;
    p11.C_FindObjectsInit(this.s, [
      { type: mod.CKA_CLASS, value: mod.CKO_SECRET_KEY },
      { type: mod.CKA_KEY_TYPE, value: mod.CKK_AES },
      { type: mod.CKA_TOKEN, value: true },
    ]);
    const found = p11.C_FindObjects(this.s, 1000);
    p11.C_FindObjectsFinal(this.s);
    const re = new RegExp(`^${this.keyLabel.replace(/[^A-Za-z0-9_-]/g, '\\$&')}-v([1-9]\\d{0,8})$`);
    for (const h of found) {
      const [label] = p11.C_GetAttributeValue(this.s, h, [{ type: mod.CKA_LABEL }]);
      const m = re.exec(String(label?.value ?? ''));
      if (m?.[1]) this.handles.set(Number(m[1]), h);
    }
  }

  private generate(version: number): void {
    const { p11, mod } = this;
    const h = p11.C_GenerateKey(this.s, { mechanism: mod.CKM_AES_KEY_GEN }, [
      { type: mod.CKA_CLASS, value: mod.CKO_SECRET_KEY },
      { type: mod.CKA_KEY_TYPE, value: mod.CKK_AES },
      { type: mod.CKA_VALUE_LEN, value: 32 },
      { type: mod.CKA_TOKEN, value: true },
      { type: mod.CKA_PRIVATE, value: true },
      { type: mod.CKA_SENSITIVE, value: true },
      { type: mod.CKA_EXTRACTABLE, value: false },
      { type: mod.CKA_ENCRYPT, value: true },
      { type: mod.CKA_DECRYPT, value: true },
      { type: mod.CKA_WRAP, value: false },
      { type: mod.CKA_UNWRAP, value: false },
      { type: mod.CKA_LABEL, value: `${this.keyLabel}-v${version}` },
      { type: mod.CKA_ID, value: Buffer.from(`${this.keyLabel}-v${version}`) },
    ]);
    this.handles.set(version, h);
  }

  /** For tests and docs: whether the token marks the key non-extractable and sensitive. */
  keyAttributes(version: number): { extractable: boolean; sensitive: boolean } {
    const { p11, mod } = this;
    const [ex, se] = p11.C_GetAttributeValue(this.s, this.handle(version), [
      { type: mod.CKA_EXTRACTABLE },
      { type: mod.CKA_SENSITIVE },
    ]);
    const bool = (v: unknown) => (Buffer.isBuffer(v) ? v[0] === 1 : v === true);
    return { extractable: bool(ex?.value), sensitive: bool(se?.value) };
  }

  private handle(version: number): Buffer {
    const h = this.handles.get(version);
    if (!h) throw new Error(`KEK version ${version} is not on the token`);
    return h;
  }

  private gcm(iv: Buffer, aad: Buffer) {
    return {
      mechanism: this.mod.CKM_AES_GCM,
      parameter: {
        type: this.mod.CK_PARAMS_AES_GCM_v240,
        iv,
        ivBits: IV_BYTES * 8,
        aad,
        tagBits: TAG_BYTES * 8,
      },
    } as unknown as Pkcs11Types.Mechanism;
  }

  current(): number {
    return Math.max(...this.handles.keys());
  }

  versions(): number[] {
    return [...this.handles.keys()].sort((a, b) => a - b);
  }

  async wrap(dek: Buffer, aad: Buffer, version: number): Promise<Sealed> {
    const iv = randomBytes(IV_BYTES);
    this.p11.C_EncryptInit(this.s, this.gcm(iv, aad), this.handle(version));
    const out = this.p11.C_Encrypt(this.s, dek, Buffer.alloc(dek.length + TAG_BYTES));
    return {
      iv,
      ct: Buffer.from(out.subarray(0, out.length - TAG_BYTES)),
      tag: Buffer.from(out.subarray(out.length - TAG_BYTES)),
    };
  }

  async unwrap(wrapped: Sealed, aad: Buffer, version: number): Promise<Buffer> {
    if (wrapped.iv.length !== IV_BYTES || wrapped.tag.length !== TAG_BYTES)
      throw new Error('sealed data is malformed');
    this.p11.C_DecryptInit(this.s, this.gcm(wrapped.iv, aad), this.handle(version));
    try {
      const input = Buffer.concat([wrapped.ct, wrapped.tag]);
      return Buffer.from(this.p11.C_Decrypt(this.s, input, Buffer.alloc(input.length)));
    } catch {
      throw new Error('authentication failed: the ciphertext, its tag or its context was altered');
    }
  }

  async addVersion(): Promise<number> {
    const v = this.current() + 1;
    this.generate(v);
    return v;
  }

  async retire(version: number): Promise<void> {
    if (version === this.current()) throw new Error('the current KEK version cannot be retired');
    const h = this.handles.get(version);
    if (!h) return;
    this.p11.C_DestroyObject(this.s, h);
    this.handles.delete(version);
  }

  async close(): Promise<void> {
    this.finalize();
  }

  private finalize(): void {
    try {
      if (this.session) {
        try {
          this.p11.C_Logout(this.session);
        } catch {}
        this.p11.C_CloseSession(this.session);
      }
    } catch {}
    this.session = undefined;
    try {
      this.p11.C_Finalize();
    } catch {}
    try {
      this.p11.close();
    } catch {}
  }
}
