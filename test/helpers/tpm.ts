/**
 * Raw TPM 2.0 commands (TPM 2.0 Library, Part 3) a test guest sends to
 * /dev/tpm0 with busybox printf + dd, with a password session and the empty
 * owner auth: an NV index written and read back proves the TPM state a guest
 * sees (test/host/vtpm.test.ts, test/e2e/vtpm-faults.test.ts,
 * test/e2e/multi-host.test.ts).
 */
import type { Store } from '../../src/store/database.js';

/** A server's vTPM audit records (`server:vtpm_*`), oldest first: what a vTPM fault must leave. */
export const vtpmAudit = (store: Store, id: string) =>
  store.db
    .selectFrom('audit_events')
    .select(['action', 'outcome'])
    .where('target_id', '=', id)
    .where('action', 'like', 'server:vtpm%')
    .orderBy('seq')
    .execute();

const NV_INDEX = 0x01500001;
export const NV_SIZE = 16;
const u16 = (n: number) => Buffer.from([(n >> 8) & 0xff, n & 0xff]);
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};
/** TPM_RS_PW, empty nonce, no attributes, empty HMAC: 9 bytes, with its size in front. */
const PW_SESSION = Buffer.concat([u32(9), u32(0x40000009), u16(0), Buffer.from([0]), u16(0)]);
const command = (cc: number, handles: number[], params: Buffer) => {
  const body = Buffer.concat([...handles.map(u32), PW_SESSION, params]);
  return Buffer.concat([u16(0x8002), u32(10 + body.length), u32(cc), body]);
};
const OWNER = 0x40000001;
export const nvDefine = () =>
  command(
    0x12a,
    [OWNER],
    Buffer.concat([
      u16(0), // auth: empty
      u16(14), // TPM2B_NV_PUBLIC
      u32(NV_INDEX),
      u16(0x000b), // nameAlg SHA-256
      u32(0x00060006), // OWNERWRITE | AUTHWRITE | OWNERREAD | AUTHREAD
      u16(0), // authPolicy: empty
      u16(NV_SIZE),
    ]),
  );
/** `data`: NV_SIZE bytes. */
export const nvWrite = (data: Buffer) =>
  command(0x137, [OWNER, NV_INDEX], Buffer.concat([u16(data.length), data, u16(0)]));
export const nvRead = () => command(0x14e, [OWNER, NV_INDEX], Buffer.concat([u16(NV_SIZE), u16(0)]));
/** TPM_RC_NV_DEFINED: NV_DefineSpace on an index the TPM already holds. */
export const RC_NV_DEFINED = '0000014c';

/** A guest shell line that sends one command to /dev/tpm0 and prints `<tag> <hex response>`. */
const octal = (b: Buffer) => [...b].map((x) => `\\${x.toString(8).padStart(3, '0')}`).join('');
export const tpmCall = (tag: string, cmd: Buffer) =>
  `printf '${octal(cmd)}' > /tmp/c; exec 3<>/dev/tpm0; dd if=/tmp/c bs=4096 >&3 2>/dev/null; ` +
  `echo "${tag} $(dd bs=4096 count=1 <&3 2>/dev/null | od -An -tx1 | tr -d ' \\n')"; exec 3>&-`;
/** The response code of the `nth` response printed after `tag` (hex), e.g. "00000000". */
export const rcOf = (console: string, tag: string, nth = 1): string | undefined => {
  const all = [...console.matchAll(new RegExp(`${tag} ([0-9a-f]+)`, 'g'))];
  return all[nth - 1]?.[1]?.slice(12, 20);
};
