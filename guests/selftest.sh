#!/usr/bin/env bash
# Boots the test guests built by build.sh under QEMU (TCG) and checks the
# console protocol: BIOS disk, qcow2 + fw_cfg, direct kernel boot with
# bulwark.run, config drives (vfat, iso9660), UEFI with and without Secure
# Boot, an unsigned image under Secure Boot (must be refused), and vTPMs.
#
# Usage: guests/selftest.sh [NAME-FILTER]   (KEEP=1 keeps the temp dir and logs)
# Ends with "N passed, N failed"; exits non-zero if any check failed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=$here/out
filter=${1:-}

need=(qemu-system-x86 qemu-utils swtpm swtpm-tools ovmf dosfstools mtools genisoimage coreutils)
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "selftest: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
fi
bash "$here/build.sh"

tmp=$(mktemp -d /tmp/bulwark-guest-selftest.XXXXXX)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for p in "$tmp"/*.swtpm.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true; done
  if [ "${KEEP:-0}" = 1 ]; then echo "selftest: logs kept in $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

OVMF=/usr/share/OVMF
# shellcheck disable=SC2054
QEMU=(qemu-system-x86_64 -accel tcg -m 256 -nodefaults -no-user-config -display none -vga none
  -cpu qemu64,-vmx,-svm -no-reboot)
passed=0 failed=0
name='' log='' qpid='' t0=''

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# start NAME QEMU-ARGS...: boots a guest, its serial console going to $tmp/NAME.log.
start() {
  name=$1; shift
  log=$tmp/$name.log
  : > "$log"
  t0=$(now)
  "${QEMU[@]}" -serial "file:$log" "$@" > "$tmp/$name.qemu.log" 2>&1 &
  qpid=$!
  pids+=("$qpid")
}
# start_console NAME QEMU-ARGS...: the same, with the console on a pipe we can type into.
start_console() {
  name=$1; shift
  log=$tmp/$name.log
  mkfifo "$tmp/$name.con.in" "$tmp/$name.con.out"
  cat "$tmp/$name.con.out" > "$log" &
  pids+=($!)
  t0=$(now)
  "${QEMU[@]}" -chardev "pipe,id=con,path=$tmp/$name.con" -serial chardev:con "$@" > "$tmp/$name.qemu.log" 2>&1 &
  qpid=$!
  pids+=("$qpid")
  exec 8<>"$tmp/$name.con.in"
}
type_line() { printf '%s\r' "$1" >&8; }
has() { tr -d '\r' < "$log" | grep -qaE "$1"; }
# wait_for REGEX SECONDS: until the console shows a line matching REGEX; fails on timeout or QEMU exit.
wait_for() {
  local deadline
  deadline=$(awk -v t="$(now)" -v s="$2" 'BEGIN { printf "%d", t + s }')
  while ! has "$1"; do
    if ! kill -0 "$qpid" 2>/dev/null; then has "$1" && return 0; echo "    QEMU exited before /$1/"; return 1; fi
    if [ "$(date +%s)" -ge "$deadline" ]; then echo "    no /$1/ within $2 s"; return 1; fi
    sleep 0.05
  done
}
# wait_exit SECONDS: until QEMU exits by itself (the guest powered off).
wait_exit() {
  local i
  for ((i = 0; i < $1 * 20; i++)); do kill -0 "$qpid" 2>/dev/null || return 0; sleep 0.05; done
  echo "    QEMU still running after $1 s"
  return 1
}
stop() { kill "$qpid" 2>/dev/null || true; wait "$qpid" 2>/dev/null || true; }
expect() { has "$1" || { echo "    console lacks /$1/"; return 1; }; }
report() { # report OK-OR-NOT DESCRIPTION
  if [ "$1" = 0 ]; then
    passed=$((passed + 1)); echo "ok   $name: $2"
  else
    failed=$((failed + 1)); echo "FAIL $name: $2"
    echo "    --- last console lines ($log):"; tr -d '\r' < "$log" | tail -n 25 | sed 's/^/    | /'
    [ -s "$tmp/$name.qemu.log" ] && sed 's/^/    qemu: /' "$tmp/$name.qemu.log" | tail -n 5
  fi
  stop
}
selected() { [ -z "$filter" ] || [[ $1 == *$filter* ]]; }
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 40000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}
# swtpm_start NAME: a TPM 2.0 emulator for one guest; prints the QEMU arguments for it.
swtpm_args=()
swtpm_start() {
  mkdir -p "$tmp/$1.tpm"
  swtpm socket --tpm2 --tpmstate "dir=$tmp/$1.tpm" --ctrl "type=unixio,path=$tmp/$1.tpm/ctrl.sock" \
    --pid "file=$tmp/$1.swtpm.pid" --daemon
  # shellcheck disable=SC2054
  swtpm_args=(-chardev "socket,id=chrtpm,path=$tmp/$1.tpm/ctrl.sock" -tpmdev emulator,id=tpm0,chardev=chrtpm)
}
disk() { echo "if=none,id=$1,file=$2,format=$3,snapshot=on"; }
kernel_boot=(-kernel "$out/vmlinuz" -initrd "$out/initrd.img")
base_cmdline="console=ttyS0 quiet panic=-1"

echo "selftest: guests from $out, logs in $tmp"

# 1. BIOS disk (SeaBIOS, FAT superfloppy via virtio-blk), DHCP, responders, console shell.
if selected bios-raw; then
  hp=$(free_port); ep=$(free_port)
  start_console bios-raw -machine pc -drive "$(disk d0 "$out/bios.raw" raw)" -device virtio-blk-pci,drive=d0,bootindex=1 \
    -netdev "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:$hp-:80,hostfwd=tcp:127.0.0.1:$ep-:7" \
    -device virtio-net-pci,netdev=n0
  rc=0 detail=
  if wait_for '^BULWARK-GUEST-READY$' 60; then
    detail="ready in $(since "$t0") s"
    wait_for '^BULWARK-NESTED: ' 5 && expect '^BULWARK-TPM: absent$' && expect '^BULWARK-SECUREBOOT: disabled$' &&
      expect '^BULWARK-FIRMWARE: bios$' && expect '^BULWARK-NESTED: unavailable$' && wait_for '^BULWARK-IP: 10\.0\.2\.15$' 20 || rc=1
    detail="$detail, DHCP address in $(since "$t0") s"
    if [ $rc = 0 ]; then
      body=$(timeout 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$hp; printf 'GET / HTTP/1.0\r\n\r\n' >&3; cat <&3" | tr -d '\r' | tail -n 1) || true
      [ "$body" = bulwark-guest ] || { echo "    tcp/80 answered '$body'"; rc=1; }
      echo_back=$(timeout 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$ep; echo bulwark-echo-test >&3; head -n 1 <&3") || true
      [ "$echo_back" = bulwark-echo-test ] || { echo "    tcp/7 answered '$echo_back'"; rc=1; }
    fi
    if [ $rc = 0 ] && wait_for '^root@bulwark-guest:/# ' 10; then
      type_line 'echo CONSOLE-$((6*7)) $(hostname)'
      wait_for '^CONSOLE-42 bulwark-guest$' 15 || rc=1
      type_line 'exit'  # the shell respawns
      sleep 1
      type_line 'echo AGAIN-$((1+1))'
      wait_for '^AGAIN-2$' 15 || rc=1
    else rc=1; fi
  else rc=1; fi
  exec 8>&-
  report $rc "bios.raw boots (SeaBIOS, virtio-blk); DHCP, tcp/80 + tcp/7 responders, respawning console shell ($detail)"
fi

# 2. qcow2 on q35, run script, hostname and power-off mode from QEMU fw_cfg (as the platform passes them).
if selected bios-qcow2-fwcfg; then
  printf '#!/bin/sh\necho "fw_cfg script on $(hostname)"\nexit 7\n' > "$tmp/fwrun.sh"
  start bios-qcow2-fwcfg -machine q35 -drive "$(disk d0 "$out/bios.qcow2" qcow2)" -device virtio-blk-pci,drive=d0,bootindex=1 \
    -fw_cfg "name=opt/org.bulwark/run,file=$tmp/fwrun.sh" -fw_cfg name=opt/org.bulwark/mode,string=poweroff \
    -fw_cfg name=opt/org.bulwark/hostname,string=fwcfg-host
  rc=0
  wait_for '^BULWARK-GUEST-READY$' 60 && ready=$(since "$t0") && wait_exit 30 &&
    expect '^BULWARK-RUN-BEGIN$' && expect '^fw_cfg script on fwcfg-host$' && expect '^BULWARK-RUN-END rc=7$' || rc=1
  report $rc "bios.qcow2 on q35 runs the fw_cfg script and powers off (ready ${ready:-?} s, off $(since "$t0") s)"
fi

# 3. Direct kernel boot with bulwark.run and bulwark.mode=poweroff.
if selected kernel-run; then
  script=$(printf '#!/bin/sh\necho "cmdline script: $(uname -r)"\nexit 3\n' | base64 -w0)
  start kernel-run -machine pc "${kernel_boot[@]}" -append "$base_cmdline bulwark.mode=poweroff bulwark.run=$script"
  rc=0
  wait_for '^BULWARK-GUEST-READY$' 60 && ready=$(since "$t0") && wait_exit 30 &&
    expect '^BULWARK-RUN-BEGIN$' && expect '^cmdline script: 6\.1\.' && expect '^BULWARK-RUN-END rc=3$' || rc=1
  report $rc "-kernel/-initrd with bulwark.run runs it and powers off (ready ${ready:-?} s, off $(since "$t0") s)"
fi

# 3b. A NIC but no DHCP server: boot must not wait long for one.
if selected no-dhcp; then
  start no-dhcp -machine pc "${kernel_boot[@]}" -append "$base_cmdline bulwark.mode=poweroff" \
    -netdev hubport,id=n0,hubid=0 -device virtio-net-pci,netdev=n0
  rc=0 waited=
  wait_for '^BULWARK-GUEST-READY$' 60 && ready=$(now) && wait_for '^BULWARK-IP: none$' 15 && waited=$(since "$ready") &&
    wait_exit 30 || rc=1
  if [ -n "$waited" ] && awk -v w="$waited" 'BEGIN { exit !(w > 7) }'; then echo "    waited $waited s for DHCP"; rc=1; fi
  report $rc "a NIC without DHCP gives BULWARK-IP: none after ${waited:-?} s"
fi

# 4. OpenStack config drive, vfat, as a second virtio disk behind the BIOS disk.
if selected configdrive-vfat; then
  cd_img=$tmp/config-vfat.img
  truncate -s 4M "$cd_img"
  mkfs.vfat -n config-2 "$cd_img" >/dev/null 2>&1
  mkdir -p "$tmp/cd/openstack/latest"
  printf '#!/bin/sh\necho "config drive script on $(hostname)"\npoweroff -f\n' > "$tmp/cd/openstack/latest/user_data"
  printf '{"uuid": "0", "hostname": "cd-host", "name": "cd-host"}\n' > "$tmp/cd/openstack/latest/meta_data.json"
  mcopy -s -i "$cd_img" "$tmp/cd/openstack" ::/
  start configdrive-vfat -machine pc -drive "$(disk d0 "$out/bios.raw" raw)" -device virtio-blk-pci,drive=d0,bootindex=1 \
    -drive "$(disk d1 "$cd_img" raw)" -device virtio-blk-pci,drive=d1
  rc=0
  wait_for '^BULWARK-GUEST-READY$' 60 && ready=$(since "$t0") && wait_exit 30 &&
    expect '^BULWARK-RUN-BEGIN$' && expect '^config drive script on cd-host$' || rc=1
  report $rc "vfat config-2 drive: user_data runs (it powers off itself), hostname from meta_data.json (ready ${ready:-?} s)"
fi

# 5. OpenStack config drive, iso9660, as a CD-ROM on virtio-scsi (q35).
if selected configdrive-iso; then
  printf '#!/bin/sh\necho "iso config drive script"\nexit 0\n' > "$tmp/cd/openstack/latest/user_data"
  genisoimage -quiet -V config-2 -r -J -o "$tmp/config.iso" "$tmp/cd"
  start configdrive-iso -machine q35 "${kernel_boot[@]}" -append "$base_cmdline bulwark.mode=poweroff" \
    -device virtio-scsi-pci,id=scsi0 -drive "if=none,id=cd0,file=$tmp/config.iso,format=raw,readonly=on" \
    -device scsi-cd,bus=scsi0.0,drive=cd0
  rc=0
  wait_for '^BULWARK-GUEST-READY$' 60 && ready=$(since "$t0") && wait_exit 30 &&
    expect '^iso config drive script$' && expect '^BULWARK-RUN-END rc=0$' || rc=1
  report $rc "iso9660 config-2 CD-ROM on virtio-scsi: user_data runs (ready ${ready:-?} s)"
fi

# 6. UEFI Secure Boot (OVMF secboot + snakeoil vars), signed UKI; fw_cfg modules load under lockdown.
if selected uefi-secureboot; then
  cp "$OVMF/OVMF_VARS_4M.snakeoil.fd" "$tmp/sb-vars.fd"
  start uefi-secureboot -machine q35,smm=on -global driver=cfi.pflash01,property=secure,value=on \
    -drive "if=pflash,format=raw,unit=0,readonly=on,file=$OVMF/OVMF_CODE_4M.secboot.fd" \
    -drive "if=pflash,format=raw,unit=1,file=$tmp/sb-vars.fd" \
    -drive "$(disk d0 "$out/uefi-signed.raw" raw)" -device virtio-blk-pci,drive=d0,bootindex=1 \
    -fw_cfg name=opt/org.bulwark/mode,string=poweroff
  rc=0
  wait_for '^BULWARK-GUEST-READY$' 90 && ready=$(since "$t0") &&
    wait_for '^BULWARK-FIRMWARE: uefi$' 5 && expect '^BULWARK-SECUREBOOT: enabled$' && wait_exit 30 || rc=1
  report $rc "uefi-signed.raw boots under Secure Boot and reports it (ready ${ready:-?} s)"
fi

# 7. Unsigned UKI under Secure Boot: the firmware must refuse it.
if selected uefi-unsigned-refused; then
  cp "$OVMF/OVMF_VARS_4M.snakeoil.fd" "$tmp/sb-vars2.fd"
  start uefi-unsigned-refused -machine q35,smm=on -global driver=cfi.pflash01,property=secure,value=on \
    -drive "if=pflash,format=raw,unit=0,readonly=on,file=$OVMF/OVMF_CODE_4M.secboot.fd" \
    -drive "if=pflash,format=raw,unit=1,file=$tmp/sb-vars2.fd" \
    -drive "$(disk d0 "$out/uefi-unsigned.raw" raw)" -device virtio-blk-pci,drive=d0,bootindex=1
  rc=0 how=
  if wait_for 'Access Denied|BULWARK-GUEST-READY' 40 >/dev/null; then
    if has 'BULWARK-GUEST-READY'; then rc=1; echo "    the unsigned image booted"; else how="Access Denied after $(since "$t0") s"; fi
  else
    has 'BULWARK-GUEST-READY' && rc=1
    how="no marker within 40 s"
  fi
  report $rc "uefi-unsigned.raw is refused under Secure Boot (${how:-booted})"
fi

# 8. UEFI without Secure Boot: the unsigned image boots and reports Secure Boot off.
if selected uefi-plain; then
  cp "$OVMF/OVMF_VARS_4M.fd" "$tmp/vars.fd"
  start uefi-plain -machine q35 \
    -drive "if=pflash,format=raw,unit=0,readonly=on,file=$OVMF/OVMF_CODE_4M.fd" \
    -drive "if=pflash,format=raw,unit=1,file=$tmp/vars.fd" \
    -drive "$(disk d0 "$out/uefi-unsigned.raw" raw)" -device virtio-blk-pci,drive=d0,bootindex=1 \
    -fw_cfg name=opt/org.bulwark/mode,string=poweroff
  rc=0
  wait_for '^BULWARK-GUEST-READY$' 90 && ready=$(since "$t0") &&
    wait_for '^BULWARK-FIRMWARE: uefi$' 5 && expect '^BULWARK-SECUREBOOT: disabled$' && wait_exit 30 || rc=1
  report $rc "uefi-unsigned.raw boots on OVMF without Secure Boot (ready ${ready:-?} s)"
fi

# 9/10. vTPM (swtpm, TPM 2.0): CRB on q35, TIS on pc.
for tpm in crb:q35 tis:pc; do
  model=${tpm%%:*} machine=${tpm#*:}
  selected "tpm-$model" || continue
  swtpm_start "tpm-$model"
  start "tpm-$model" -machine "$machine" "${kernel_boot[@]}" -append "$base_cmdline bulwark.mode=poweroff" \
    "${swtpm_args[@]}" -device "tpm-$model,tpmdev=tpm0"
  rc=0
  wait_for '^BULWARK-GUEST-READY$' 60 && ready=$(since "$t0") && wait_for '^BULWARK-TPM: ' 5 && expect '^BULWARK-TPM: present$' && wait_exit 30 || rc=1
  report $rc "swtpm as tpm-$model on $machine: the guest sees /dev/tpm0 (ready ${ready:-?} s)"
  [ -f "$tmp/tpm-$model.swtpm.pid" ] && kill "$(cat "$tmp/tpm-$model.swtpm.pid")" 2>/dev/null || true
done

# 11. NoCloud seed and first-boot identity: made once on the disk, kept, made again for a new instance-id.
if selected identity; then
  qemu-img create -q -f qcow2 -F raw -b "$out/bios.raw" "$tmp/identity.qcow2"
  seed() { # seed INSTANCE-ID: a cidata FAT with meta-data, as src/host/nocloud.ts builds it
    rm -f "$tmp/seed.img"
    printf 'instance-id: %s\nlocal-hostname: seeded\n' "$1" > "$tmp/meta-data"
    mkfs.vfat -C -n CIDATA "$tmp/seed.img" 1024 >/dev/null && mcopy -i "$tmp/seed.img" "$tmp/meta-data" ::/meta-data
  }
  ident() { tr -d '\r' < "$log" | grep -aE '^BULWARK-(INSTANCE-ID|MACHINE-ID|HOST-KEY)=' | tr '\n' ' '; }
  boot_id() { # boot_id N: one boot of the disk with the current seed, powered off by fw_cfg
    start "identity-$1" -machine pc -drive "if=none,id=d0,file=$tmp/identity.qcow2,format=qcow2" \
      -device virtio-blk-pci,drive=d0,bootindex=1 -drive "if=none,id=s0,file=$tmp/seed.img,format=raw,readonly=on" \
      -device virtio-blk-pci,drive=s0 -fw_cfg name=opt/org.bulwark/mode,string=poweroff
    wait_for '^BULWARK-IDENTITY=' 90 && wait_exit 30
  }
  rc=0
  seed 11111111-aaaa
  boot_id 1 && expect '^BULWARK-INSTANCE-ID=11111111-aaaa$' && expect '^BULWARK-IDENTITY=first-boot$' &&
    expect '^BULWARK-MACHINE-ID=[0-9a-f]{32}$' && expect '^BULWARK-HOST-KEY=SHA256:' || rc=1
  first=$(ident)
  boot_id 2 && expect '^BULWARK-IDENTITY=kept$' || rc=1
  [ "$(ident)" = "$first" ] || { echo "    second boot: $(ident) != $first"; rc=1; }
  seed 22222222-bbbb
  boot_id 3 && expect '^BULWARK-IDENTITY=reset$' || rc=1
  third=$(ident)
  for k in MACHINE-ID HOST-KEY; do
    a=$(echo "$first" | grep -oE "$k=[^ ]+") b=$(echo "$third" | grep -oE "$k=[^ ]+")
    [ -n "$a" ] && [ "$a" != "$b" ] || { echo "    new instance-id kept $a"; rc=1; }
  done
  report $rc "cidata seed: instance-id shown; machine-id and host key made at first boot, kept, made again for a new instance-id"
fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
