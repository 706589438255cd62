// Worker threads that code under test starts (src/backups/chunk-pool.ts) run in plain Node,
// outside vitest's transform: these hooks let them load the TypeScript sources (vitest.config.ts execArgv).
import { register } from 'node:module';

register('./ts-hooks.mjs', import.meta.url);
