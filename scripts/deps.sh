#!/usr/bin/env bash
# Installs what Bulwark needs from Debian and npm, fast when it is all there.
# Usage: scripts/deps.sh runtime|test
set -euo pipefail
cd "$(dirname "$0")/.."

# dosfstools + mtools: each server's cloud-init NoCloud seed (src/host/nocloud.ts).
RUNTIME_PKGS=(qemu-system-x86 qemu-utils swtpm swtpm-tools ovmf nftables iproute2 procps genisoimage)
# Everything the tests drive for real: PostgreSQL, the openstack CLI, what builds the test guests, and
# Chromium (WebAuthn in a real browser; certutil trusts the test CA in its NSS database).
TEST_PKGS=(postgresql python3-openstackclient python3-barbicanclient busybox-static qemu-guest-agent dosfstools mtools
  sbsigntool systemd-boot-efi binutils cpio syslinux syslinux-common dnsmasq iperf3 iputils-ping
  softhsm2 rsyslog rsyslog-gnutls asciinema prometheus restic tcpdump
  chromium libnss3-tools dropbear-bin)

want=("${RUNTIME_PKGS[@]}")
[ "${1:-runtime}" = test ] && want+=("${TEST_PKGS[@]}")

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's postgresql package may start a cluster of its own; the tests start their own throwaway one.

stamp=node_modules/.bulwark-lock.sha256
sum=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$sum" ]; then
  echo "==> installing npm dependencies (better-sqlite3 builds from source: about a minute)"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$sum" > "$stamp"
fi

echo "==> building"
npx tsc -p tsconfig.json
# The web dashboard (web/, docs/dashboard.md), served by the daemon at /dashboard.
npx vite build --config web/vite.config.ts --logLevel warn
