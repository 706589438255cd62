#!/usr/bin/env bash
# Brings up Bulwark on this machine with its embedded defaults: SQLite in the
# data dir, HTTPS on localhost with a generated CA, the local host agent.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh runtime
DATA_DIR="${BULWARK_DATA_DIR:-/var/lib/bulwark}"
LISTEN="${BULWARK_LISTEN:-127.0.0.1:8443}"
exec node bin/bulwark.js serve --data-dir "$DATA_DIR" --listen "$LISTEN"
