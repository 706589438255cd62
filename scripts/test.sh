#!/usr/bin/env bash
# Installs everything the tests need and runs the whole suite: unit, API on
# SQLite and PostgreSQL, real QEMU guests, and the real openstack CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh test
if [ -f guests/build.sh ]; then
  echo "==> building test guest images"
  bash guests/build.sh
fi
echo "==> typecheck and lint"
npx tsc -p tsconfig.test.json
npx tsc -p web/tsconfig.json
npx biome check src test web
echo "==> tests"
mkdir -p .test-artifacts
# Reliability suites append their figures here (test/helpers/figures.ts); one run, one file.
rm -f .test-artifacts/figures.jsonl
status=0
npx vitest run "$@" || status=$?
if [ -f .test-artifacts/figures.jsonl ]; then
  echo "==> figures"
  cat .test-artifacts/figures.jsonl
fi
# CI reads a plain closing line; vitest's own summary is not one it knows.
node -e '
  const r = require("./.test-artifacts/vitest.json");
  const skipped = r.numPendingTests + r.numTodoTests;
  // A suite that crashes before its tests run counts as a failure too.
  const failed = r.numFailedTests + r.testResults.filter((f) => f.status === "failed" && f.assertionResults.every((t) => t.status !== "failed")).length;
  console.log(`${r.numPassedTests} passed, ${failed} failed` + (skipped ? `, ${skipped} skipped` : ""));
' || true
exit $status
