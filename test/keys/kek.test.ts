import { chmodSync, chownSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { AuditWriter } from '../../src/audit/writer.js';
import { BulwarkError } from '../../src/errors.js';
import { aad, dekAad, open, payloadAad, seal } from '../../src/keys/envelope.js';
import type { KekProvider } from '../../src/keys/kek.js';
import { FileKek } from '../../src/keys/kek-file.js';
import { Pkcs11Kek } from '../../src/keys/kek-pkcs11.js';
import { KeyManager } from '../../src/keys/manager.js';
import { openStore, type Store } from '../../src/store/database.js';
import { SOFTHSM_MODULE, softhsmToken, type TestToken } from '../helpers/softhsm.js';
import { type TestDb, testDb } from '../helpers/store.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function tempDir(): Promise<string> {
  const db = await testDb('sqlite');
  cleanups.push(() => db.drop());
  return db.dir;
}

async function fileKek(): Promise<FileKek> {
  const k = FileKek.open(await tempDir());
  cleanups.push(() => k.close());
  return k;
}

async function token(): Promise<TestToken> {
  const t = await softhsmToken();
  cleanups.push(() => t.remove());
  return t;
}

async function hsmKek(t?: TestToken): Promise<Pkcs11Kek> {
  const tok = t ?? (await token());
  const k = Pkcs11Kek.open({ module: SOFTHSM_MODULE, tokenLabel: tok.label, pinFile: tok.pinFile });
  cleanups.push(() => k.close());
  return k;
}

/** Wrong key, altered ciphertext, tag, IV or AAD: each one refused. */
async function expectTamperRefused(kek: KekProvider) {
  const dek = Buffer.alloc(32, 0x5a);
  const ctx = dekAad('s1', kek.id, kek.current());
  const w = await kek.wrap(dek, ctx, kek.current());
  expect(w.ct.equals(dek)).toBe(false);
  expect(await kek.unwrap(w, ctx, kek.current())).toEqual(dek);
  const flip = (b: Buffer) => {
    const c = Buffer.from(b);
    c[0] = (c[0] ?? 0) ^ 1;
    return c;
  };
  await expect(kek.unwrap({ ...w, ct: flip(w.ct) }, ctx, kek.current())).rejects.toThrow(
    /authentication failed/,
  );
  await expect(kek.unwrap({ ...w, tag: flip(w.tag) }, ctx, kek.current())).rejects.toThrow(
    /authentication failed/,
  );
  await expect(kek.unwrap({ ...w, iv: flip(w.iv) }, ctx, kek.current())).rejects.toThrow(
    /authentication failed/,
  );
  // The same wrapped key presented as another secret's, or as another KEK version's.
  await expect(kek.unwrap(w, dekAad('s2', kek.id, kek.current()), kek.current())).rejects.toThrow();
  await expect(kek.unwrap(w, dekAad('s1', kek.id, kek.current() + 1), kek.current())).rejects.toThrow();
}

describe('envelope', () => {
  it('refuses a payload moved to another secret or project, and an altered one', () => {
    const key = Buffer.alloc(32, 1);
    const s = seal(key, Buffer.from('hunter2'), payloadAad('a', 'p1'));
    expect(open(key, s, payloadAad('a', 'p1')).toString()).toBe('hunter2');
    expect(() => open(key, s, payloadAad('a', 'p2'))).toThrow(/authentication failed/);
    expect(() => open(key, s, payloadAad('b', 'p1'))).toThrow(/authentication failed/);
    expect(() => open(Buffer.alloc(32, 2), s, payloadAad('a', 'p1'))).toThrow(/authentication failed/);
    // Length-prefixed parts: moving a boundary changes the AAD.
    expect(aad('ab', 'c').equals(aad('a', 'bc'))).toBe(false);
  });
});

describe('file KEK', () => {
  it('refuses to start when the file is not 0600 or not root-owned (written first)', async () => {
    const dir = await tempDir();
    (await FileKek.open(dir)).close();
    const path = FileKek.path(dir);
    for (const mode of [0o644, 0o640, 0o604, 0o700, 0o400]) {
      chmodSync(path, mode);
      expect(() => FileKek.open(dir), mode.toString(8)).toThrow(/not 0600; refusing to start/);
    }
    chmodSync(path, 0o600);
    chownSync(path, 1000, 0);
    expect(() => FileKek.open(dir)).toThrow(/not root; refusing to start/);
    chownSync(path, 0, 0);
    writeFileSync(path, 'garbage\n', { mode: 0o600 });
    expect(() => FileKek.open(dir)).toThrow(/malformed/);
  });

  it('is created on first start: 0600, root-owned, 32 random bytes, stable across opens', async () => {
    const dir = await tempDir();
    const a = FileKek.open(dir);
    const st = statSync(FileKek.path(dir));
    expect(st.mode & 0o777).toBe(0o600);
    expect(st.uid).toBe(0);
    const line = readFileSync(FileKek.path(dir), 'utf8').trim();
    expect(line).toMatch(/^bulwark-kek v1 [A-Za-z0-9+/]{43}=$/);
    expect(Buffer.from(line.split(' ')[2] ?? '', 'base64')).toHaveLength(32);
    const w = await a.wrap(Buffer.alloc(32, 3), aad('x'), 1);
    await a.close();
    const b = FileKek.open(dir);
    expect(await b.unwrap(w, aad('x'), 1)).toEqual(Buffer.alloc(32, 3));
    await b.close();
  });

  it('wraps and unwraps; refuses tampered ciphertext, tag, IV and AAD', async () => {
    await expectTamperRefused(await fileKek());
  });
});

describe('PKCS#11 KEK (SoftHSM2)', () => {
  it('refuses a wrong token, a missing module and a readable PIN file (written first)', async () => {
    const t = await token();
    expect(() =>
      Pkcs11Kek.open({ module: SOFTHSM_MODULE, tokenLabel: 'no-such-token', pinFile: t.pinFile }),
    ).toThrow(/no PKCS#11 token labelled/);
    chmodSync(t.pinFile, 0o644);
    expect(() => Pkcs11Kek.open({ module: SOFTHSM_MODULE, tokenLabel: t.label, pinFile: t.pinFile })).toThrow(
      /mode 0600 or 0400/,
    );
    chmodSync(t.pinFile, 0o600);
    const bad = `${t.dir}/bad-pin`;
    writeFileSync(bad, '000000\n', { mode: 0o600 });
    expect(() => Pkcs11Kek.open({ module: SOFTHSM_MODULE, tokenLabel: t.label, pinFile: bad })).toThrow(
      /login/,
    );
    expect(() =>
      Pkcs11Kek.open({ module: '/nonexistent/lib.so', tokenLabel: t.label, pinFile: t.pinFile }),
    ).toThrow();
  });

  it('keeps the KEK on the token: a sensitive, non-extractable key created once, found again', async () => {
    const t = await token();
    const k = Pkcs11Kek.open({ module: SOFTHSM_MODULE, tokenLabel: t.label, pinFile: t.pinFile });
    expect(k.versions()).toEqual([1]);
    expect(k.keyAttributes(1)).toEqual({ extractable: false, sensitive: true });
    const w = await k.wrap(Buffer.alloc(32, 9), aad('y'), 1);
    await k.close();
    const again = await hsmKek(t);
    expect(again.versions()).toEqual([1]);
    expect(await again.unwrap(w, aad('y'), 1)).toEqual(Buffer.alloc(32, 9));
  });

  it('wraps and unwraps; refuses tampered ciphertext, tag, IV and AAD', async () => {
    await expectTamperRefused(await hsmKek());
  });
});

describe.each(['file', 'pkcs11'] as const)('KEK rotation with the %s provider', (kind) => {
  async function setup(): Promise<{ keys: KeyManager; store: Store; kek: KekProvider; db: TestDb }> {
    const db = await testDb('sqlite');
    cleanups.push(() => db.drop());
    const store = await openStore({ url: db.url });
    cleanups.push(() => store.close());
    const kek = kind === 'file' ? FileKek.open(db.dir) : await hsmKek();
    const keys = new KeyManager(store, kek, new AuditWriter(store), { batchSize: 7 });
    cleanups.push(() => keys.close());
    return { keys, store, kek, db };
  }

  it('re-wraps every data key while readers keep reading, then retires the old version', async () => {
    const { keys, store, kek } = await setup();
    const stored = new Map<string, { project: string; payload: Buffer }>();
    for (let i = 0; i < 40; i++) {
      const project = i % 2 === 0 ? 'p-a' : 'p-b';
      const payload = Buffer.from(`secret number ${i} ${'x'.repeat(i)}`);
      const meta = await keys.create(project, null, {
        name: `s${i}`,
        secretType: 'opaque',
        algorithm: null,
        bitLength: null,
        mode: null,
        contentType: 'text/plain',
        expiration: null,
        payload,
      });
      stored.set(meta.id, { project, payload });
    }
    const before = await store.db.selectFrom('secrets').select(['id', 'payload_ct', 'dek_wrapped']).execute();
    // Readers (and a writer) run throughout the rotation; every read must succeed and match.
    let stop = false;
    let reads = 0;
    const failures: string[] = [];
    const reader = (async () => {
      while (!stop) {
        for (const [id, s] of stored) {
          try {
            const got = await keys.readKeyFor(s.project, id);
            if (!got.equals(s.payload)) failures.push(`${id}: different bytes`);
            reads += 1;
          } catch (e) {
            failures.push(`${id}: ${(e as Error).message}`);
          }
        }
        await new Promise((r) => setImmediate(r));
      }
    })();
    const writer = (async () => {
      const made: string[] = [];
      while (!stop) {
        made.push(await keys.createKey('p-a', { name: 'during', bits: 256, purpose: 'test' }));
        await new Promise((r) => setImmediate(r));
      }
      return made;
    })();
    const report = await keys.rotate();
    stop = true;
    await reader;
    const made = await writer;
    expect(failures).toEqual([]);
    expect(reads).toBeGreaterThan(0);
    expect(report.to).toBe(2);
    expect(report.from).toEqual([1]);
    expect(kek.versions()).toEqual([2]);
    const rows = await store.db
      .selectFrom('secrets')
      .select(['id', 'kek_version', 'payload_ct', 'dek_wrapped'])
      .execute();
    expect(rows.every((r) => r.kek_version === 2)).toBe(true);
    // Payload ciphertext unchanged (only the data key was re-wrapped); every wrapped key changed.
    for (const b of before) {
      const after = rows.find((r) => r.id === b.id);
      expect(after?.payload_ct).toBe(b.payload_ct);
      expect(after?.dek_wrapped).not.toBe(b.dek_wrapped);
    }
    for (const [id, s] of stored) expect(await keys.readKeyFor(s.project, id)).toEqual(s.payload);
    for (const id of made) expect(await keys.readKeyFor('p-a', id)).toHaveLength(32);
    const audit = await store.db.selectFrom('audit_events').select(['action', 'outcome']).execute();
    expect(audit).toEqual(
      expect.arrayContaining([
        { action: 'key-manager:rotate_kek_started', outcome: 'success' },
        { action: 'key-manager:rotate_kek', outcome: 'success' },
      ]),
    );
    // A second rotation works the same way.
    expect((await keys.rotate()).to).toBe(3);
    expect(kek.versions()).toEqual([3]);
    for (const [id, s] of stored) expect(await keys.readKeyFor(s.project, id)).toEqual(s.payload);
  });

  it('refuses other projects and fails closed (503) when the KEK is unavailable', async () => {
    const { keys, kek } = await setup();
    const id = await keys.createKey('owner', { name: 'k', bits: 512, purpose: 'volume' });
    await expect(keys.readKeyFor('intruder', id)).rejects.toMatchObject({ kind: 'NotFound' });
    await keys.deleteKeyFor('intruder', id);
    expect(await keys.readKeyFor('owner', id)).toHaveLength(64);
    await kek.close();
    const err = await keys.readKeyFor('owner', id).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BulwarkError);
    expect((err as BulwarkError).status).toBe(503);
    expect((err as Error).message).not.toMatch(/[A-Za-z0-9+/]{40,}/);
    await expect(keys.createKey('owner', { name: 'k2', bits: 256, purpose: 'volume' })).rejects.toMatchObject(
      { kind: 'Unavailable' },
    );
  });
});
