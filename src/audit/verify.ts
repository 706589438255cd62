import type { Store } from '../store/database.js';
import { chainHash, GENESIS_HASH } from './chain.js';

export interface VerifyResult {
  ok: boolean;
  checked: number;
  /** The first row at which the chain stops holding, with what is wrong. */
  failure?: { seq: number; id: string | null; problem: string };
}

const PAGE = 1000;

/** Walks the whole chain in order and reports the first broken row. */
export async function verifyAuditChain(store: Store): Promise<VerifyResult> {
  let expectSeq = 1;
  let prevHash = GENESIS_HASH;
  let checked = 0;
  for (;;) {
    const rows = await store.db
      .selectFrom('audit_events')
      .selectAll()
      .where('seq', '>=', expectSeq)
      .orderBy('seq')
      .limit(PAGE)
      .execute();
    for (const row of rows) {
      const seq = Number(row.seq);
      if (seq !== expectSeq) {
        return fail(
          checked,
          expectSeq,
          null,
          `row ${expectSeq} is missing (deleted); the next row is ${seq}`,
        );
      }
      if (row.prev_hash !== prevHash) {
        return fail(
          checked,
          seq,
          row.id,
          `row ${seq} does not follow row ${seq - 1} (reordered, replaced or re-hashed)`,
        );
      }
      const { hash, ...fields } = row;
      if (chainHash({ ...fields, seq, status: Number(row.status) }) !== hash) {
        return fail(checked, seq, row.id, `row ${seq} was altered: its content does not match its hash`);
      }
      prevHash = hash;
      expectSeq = seq + 1;
      checked++;
    }
    if (rows.length < PAGE) break;
  }
  const head = await store.db
    .selectFrom('audit_head')
    .select(['seq', 'hash'])
    .where('id', '=', 1)
    .executeTakeFirst();
  if (!head || Number(head.seq) !== expectSeq - 1 || head.hash !== prevHash) {
    return fail(
      checked,
      expectSeq,
      null,
      `the chain ends at row ${expectSeq - 1} but its head records row ${head?.seq ?? '?'}: rows were cut from the end`,
    );
  }
  return { ok: true, checked };
}

function fail(checked: number, seq: number, id: string | null, problem: string): VerifyResult {
  return { ok: false, checked, failure: { seq, id, problem } };
}
