/**
 * What the other rooms need from the key manager (issue 5). Volumes and the
 * vTPM hold only a secret's id; the key itself is read on the owner's behalf
 * at the moment the host needs it, and only into memory.
 */
export interface KeyService {
  /** Generates a random symmetric key (`bits`/8 bytes) as a secret owned by `projectId`; returns its id. */
  createKey(projectId: string, opts: { name: string; bits: 256 | 512; purpose: string }): Promise<string>;
  /**
   * The key's bytes, for a platform service acting for `projectId`: refused
   * (404) unless that project owns the secret. Never logged, never written.
   */
  readKeyFor(projectId: string, secretId: string): Promise<Buffer>;
  /** Destroys the secret (its wrapped data key goes with it); idempotent. */
  deleteKeyFor(projectId: string, secretId: string): Promise<void>;
}
