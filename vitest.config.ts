import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    globalSetup: ['test/setup/global.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Worker threads of code under test load its TypeScript through these hooks (test/setup/ts-loader.mjs).
    execArgv: ['--import', './test/setup/ts-loader.mjs'],
    maxWorkers: 2,
    reporters: ['default', 'json'],
    outputFile: { json: '.test-artifacts/vitest.json' },
  },
});
