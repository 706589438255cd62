import type { TestProject } from 'vitest/node';
import { type PgCluster, startPgCluster } from './postgres.js';

let cluster: PgCluster | undefined;

/**
 * Starts one PostgreSQL cluster for the whole run; each test file makes its
 * own database and roles in it. BULWARK_TEST_PG=0 runs SQLite only (for quick
 * local loops); the test script and CI always run both.
 */
export async function setup(project: TestProject): Promise<void> {
  if (process.env.BULWARK_TEST_PG === '0') return;
  cluster = await startPgCluster();
  project.provide('pgUrl', cluster.url);
}

export function teardown(): void {
  cluster?.stop();
}

declare module 'vitest' {
  export interface ProvidedContext {
    pgUrl: string;
  }
}
