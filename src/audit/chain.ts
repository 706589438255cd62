import type { AuditEventsTable } from '../store/schema.js';
import { sha256Hex } from '../util/ids.js';

export const GENESIS_HASH = '0'.repeat(64);

/** Fields covered by the chain hash; everything in an audit row except `hash`. */
export type ChainedFields = Omit<AuditEventsTable, 'hash'>;

export const FIELD_ORDER: readonly (keyof ChainedFields)[] = [
  'seq',
  'id',
  'time',
  'request_id',
  'user_id',
  'user_name',
  'project_id',
  'roles',
  'source_ip',
  'action',
  'method',
  'path',
  'target_type',
  'target_id',
  'outcome',
  'status',
  'reason',
  'prev_hash',
];

/**
 * sha256 over a fixed-order JSON array of the fields. The sequence number and
 * the previous hash are inside, so editing, deleting, inserting or swapping
 * any row breaks the chain at that row.
 */
export function chainHash(row: ChainedFields): string {
  return sha256Hex(JSON.stringify(FIELD_ORDER.map((k) => row[k])));
}
