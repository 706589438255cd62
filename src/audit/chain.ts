import { sha256Hex } from '../util/ids.js';

export const GENESIS_HASH = '0'.repeat(64);

/** Fields covered by the chain hash; everything in an audit row except `hash`. */
export interface ChainedFields {
  seq: number;
  id: string;
  time: string;
  request_id: string;
  user_id: string | null;
  user_name: string | null;
  project_id: string | null;
  roles: string;
  source_ip: string | null;
  action: string;
  method: string;
  path: string;
  target_type: string | null;
  target_id: string | null;
  outcome: string;
  status: number;
  reason: string | null;
  prev_hash: string;
}

const FIELD_ORDER: readonly (keyof ChainedFields)[] = [
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
