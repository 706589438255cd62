#!/bin/sh
# /init of the Bulwark test guest (busybox sh, PID 1).
#
# Reports what the platform gave the guest on the serial console as BULWARK-*
# lines (see guests/README.md for the protocol), runs a command passed at boot
# (kernel command line, OpenStack config drive, QEMU fw_cfg), answers on
# tcp/80 and tcp/7, then powers off or keeps a root shell on the console.
export PATH=/bin:/sbin HOME=/root TERM="${TERM:-vt100}"
umask 022
cd /

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /run /tmp /mnt/config
mount -t devpts devpts /dev/pts
# Only critical kernel messages on the console, so they cannot split our lines.
echo 2 > /proc/sys/kernel/printk

log=/run/bulwark-init.log
: > "$log"

# Modules, dependencies first (build.sh worked out the order from modinfo);
# SCSI (CD-ROM config drives) only when there is a virtio-scsi controller.
load() {
  while read -r m; do
    insmod "/lib/modules/$m.ko" >>"$log" 2>&1 || echo "insmod $m failed" >>"$log"
  done < "/lib/modules/$1.order"
}
load load
for d in /sys/bus/pci/devices/*; do
  case "$(cat "$d/vendor" "$d/device" 2>/dev/null | tr '\n' :)" in
    0x1af4:0x1004:|0x1af4:0x1048:) load virtio-scsi; break ;;
  esac
done

cmdline=$(cat /proc/cmdline)
# arg NAME: the value of NAME=... on the kernel command line (last one wins).
arg() {
  v=
  for w in $cmdline; do
    case "$w" in "$1="*) v=${w#*=} ;; esac
  done
  printf '%s' "$v"
}
fwcfg=/sys/firmware/qemu_fw_cfg/by_name/opt/org.bulwark
fwfile() { [ -r "$fwcfg/$1/raw" ] && cat "$fwcfg/$1/raw"; }

# The config drive: any block device labelled config-2 (vfat or iso9660), read-only.
cfgdrive=
for label in config-2 CONFIG-2; do
  dev=$(findfs "LABEL=$label" 2>/dev/null) || continue
  if mount -r "$dev" /mnt/config 2>>"$log"; then cfgdrive=/mnt/config; break; fi
done

# The cloud-init NoCloud seed: a block device labelled cidata, read-only; its meta-data
# holds `instance-id: <server uuid>` and `local-hostname: <name>`.
mkdir -p /mnt/seed
seed=
for label in cidata CIDATA; do
  dev=$(findfs "LABEL=$label" 2>/dev/null) || continue
  if mount -r "$dev" /mnt/seed 2>>"$log"; then seed=/mnt/seed; break; fi
done
# meta NAME: the value of "NAME: value" in the seed's meta-data.
meta() {
  [ -n "$seed" ] && [ -f "$seed/meta-data" ] || return 0
  sed -n "s/^$1:[[:space:]]*\([A-Za-z0-9._-]*\).*/\1/p" "$seed/meta-data" | head -n 1
}
instance_id=$(meta instance-id)

# Hostname: fw_cfg, then the command line, then the config drive's meta_data.json, then the seed.

hn=$(fwfile hostname | tr -cd 'A-Za-z0-9.-')
[ -n "$hn" ] || hn=$(arg bulwark.hostname | tr -cd 'A-Za-z0-9.-')
if [ -z "$hn" ] && [ -n "$cfgdrive" ] && [ -f "$cfgdrive/openstack/latest/meta_data.json" ]; then
  hn=$(sed -n 's/.*"hostname"[[:space:]]*:[[:space:]]*"\([A-Za-z0-9.-]*\)".*/\1/p' \
    "$cfgdrive/openstack/latest/meta_data.json" | head -n 1)
fi
[ -n "$hn" ] || hn=$(meta local-hostname)
hn=${hn:-bulwark-guest}
hostname "$hn"
echo "$hn" > /etc/hostname

# The QEMU guest agent, only when the host gave the guest its channel (virtio-serial port
# org.qemu.guest_agent.0); the host decides which commands ever reach it.
qga=absent
for p in /sys/class/virtio-ports/*; do
  [ "$(cat "$p/name" 2>/dev/null)" = org.qemu.guest_agent.0 ] || continue
  if qemu-ga -m virtio-serial -p "/dev/${p##*/}" -t /run -f /run/qemu-ga.pid -d >>"$log" 2>&1; then
    qga=running
  else
    qga=failed
  fi
done

echo "BULWARK-GUEST-READY"
if [ -e /dev/tpm0 ]; then echo "BULWARK-TPM: present"; else echo "BULWARK-TPM: absent"; fi
firmware=bios
secureboot=disabled
if [ -d /sys/firmware/efi ]; then
  firmware=uefi
  secureboot=unknown
  vars=/sys/firmware/efi/efivars
  if mount -t efivarfs efivarfs "$vars" 2>>"$log" || [ -n "$(ls "$vars" 2>/dev/null)" ]; then
    sbvar=$vars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c
    if [ -e "$sbvar" ]; then
      # efivarfs: 4 bytes of attributes, then the 1-byte value.
      case "$(cat "$sbvar" | od -An -tu1 | awk '{ print $5 }')" in
        1) secureboot=enabled ;;
        0) secureboot=disabled ;;
      esac
    else
      secureboot=disabled # firmware without Secure Boot support
    fi
  fi
fi
echo "BULWARK-SECUREBOOT: $secureboot"
echo "BULWARK-FIRMWARE: $firmware"
if grep -qwE 'vmx|svm' /proc/cpuinfo; then echo "BULWARK-NESTED: available"; else echo "BULWARK-NESTED: unavailable"; fi
echo "BULWARK-QGA: $qga"

# First-boot identity, made here in the guest and kept on the boot disk (the FAT
# labelled BULWARK or BULWARKEFI) in /bulwark-id: a random machine-id and an
# ed25519 SSH host key (dropbearkey). Later boots of the same disk show the same
# ones; a new instance-id (a clone, or a disk copied to another server) or a
# missing file makes new ones, as cloud-init does for per-instance host keys.
# Without a boot disk (direct kernel boot) they live in /run and last one boot.
idroot=/run
for label in BULWARK BULWARKEFI; do
  dev=$(findfs "LABEL=$label" 2>/dev/null) || continue
  mkdir -p /mnt/boot
  if mount -t vfat "$dev" /mnt/boot 2>>"$log"; then idroot=/mnt/boot; break; fi
done
id=$idroot/bulwark-id
identity=kept
if [ ! -s "$id/machine-id" ] || [ ! -s "$id/host-key" ]; then
  identity=first-boot
elif [ -n "$instance_id" ] && [ "$(cat "$id/instance-id" 2>/dev/null)" != "$instance_id" ]; then
  identity=reset # this disk was another instance's (a clone's copy)
fi
if [ "$identity" != kept ]; then
  rm -rf "$id"
  mkdir -p "$id"
  od -An -tx1 -N16 /dev/urandom | tr -d ' \n' > "$id/machine-id"
  dropbearkey -t ed25519 -f "$id/host-key" >>"$log" 2>&1
  printf '%s' "$instance_id" > "$id/instance-id"
  sync
fi
machine_id=$(cat "$id/machine-id")
printf '%s\n' "$machine_id" > /etc/machine-id
host_key=$(dropbearkey -y -f "$id/host-key" 2>>"$log" | sed -n 's/^Fingerprint: //p')
[ "$idroot" = /run ] || umount /mnt/boot 2>>"$log"
echo "BULWARK-INSTANCE-ID=${instance_id:-none}"
echo "BULWARK-MACHINE-ID=${machine_id:-none}"
echo "BULWARK-HOST-KEY=${host_key:-none}"
echo "BULWARK-IDENTITY=$identity"

# Network: DHCP on eth0. udhcpc gives up after 5 discovers 1 s apart; once it
# has a lease it stays in the background and renews it.
ip link set lo up
addr=
if [ -e /sys/class/net/eth0 ]; then
  ip link set eth0 up
  udhcpc -i eth0 -n -t 5 -T 1 -s /etc/udhcpc.script -x "hostname:$hn" >>"$log" 2>&1
  addr=$(ip -4 -o addr show dev eth0 | awk '{ split($4, a, "/"); print a[1]; exit }')
fi
echo "BULWARK-IP: ${addr:-none}"
# Responders for firewall tests, on every interface: tcp/80 answers any HTTP
# GET with the hostname, tcp/7 echoes what it gets.
mkdir -p /www
echo "$hn" > /www/index.html
httpd -p 80 -h /www
nc -ll -p 7 -e cat </dev/null >/dev/null 2>&1 &

run() { # run SCRIPT: runs it with sh, framed by BULWARK-RUN-* lines
  echo "BULWARK-RUN-BEGIN"
  sh "$1" </dev/null 2>&1
  echo "BULWARK-RUN-END rc=$?"
}
b64=$(arg bulwark.run)
if [ -n "$b64" ]; then
  if printf '%s' "$b64" | base64 -d > /run/cmdline-run.sh 2>>"$log"; then
    run /run/cmdline-run.sh
  else
    echo "BULWARK-RUN-BEGIN"
    echo "bulwark.run is not valid base64"
    echo "BULWARK-RUN-END rc=127"
  fi
fi
ud=$cfgdrive/openstack/latest/user_data
if [ -n "$cfgdrive" ] && [ -f "$ud" ] && [ "$(head -c 2 "$ud")" = '#!' ]; then run "$ud"; fi
if [ -r "$fwcfg/run/raw" ]; then
  cat "$fwcfg/run/raw" > /run/fwcfg-run.sh
  run /run/fwcfg-run.sh
fi

mode=$(fwfile mode | tr -cd 'a-z')
[ -n "$mode" ] || mode=$(arg bulwark.mode)
if [ "$mode" = poweroff ]; then
  sync
  poweroff -f
fi
# Otherwise a root shell on the console, started again whenever it exits.
while :; do
  setsid cttyhack sh -l
  sleep 1
done
