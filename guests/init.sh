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

# Hostname: fw_cfg, then the command line, then the config drive's meta_data.json.
hn=$(fwfile hostname | tr -cd 'A-Za-z0-9.-')
[ -n "$hn" ] || hn=$(arg bulwark.hostname | tr -cd 'A-Za-z0-9.-')
if [ -z "$hn" ] && [ -n "$cfgdrive" ] && [ -f "$cfgdrive/openstack/latest/meta_data.json" ]; then
  hn=$(sed -n 's/.*"hostname"[[:space:]]*:[[:space:]]*"\([A-Za-z0-9.-]*\)".*/\1/p' \
    "$cfgdrive/openstack/latest/meta_data.json" | head -n 1)
fi
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
