#!/usr/bin/env bash
# Brings up Bulwark on this machine with its embedded defaults: SQLite in the
# data dir, HTTPS on localhost with a generated CA, the local host agent.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh runtime
# The tiny test guests double as the KVM probe's kernel (and as images to try).
bash guests/build.sh
export BULWARK_PROBE_KERNEL="${BULWARK_PROBE_KERNEL:-$PWD/guests/out/vmlinuz}"
DATA_DIR="${BULWARK_DATA_DIR:-/var/lib/bulwark}"
LISTEN="${BULWARK_LISTEN:-127.0.0.1:8443}"
exec node bin/bulwark.js serve --data-dir "$DATA_DIR" --listen "$LISTEN"
