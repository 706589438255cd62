#!/usr/bin/env bash
# Builds the tiny Bulwark test guests from Debian packages into guests/out/:
#   vmlinuz, initrd.img   Debian's cloud kernel and a busybox initramfs (/init is init.sh)
#   bios.raw, bios.qcow2  BIOS disk: a FAT "superfloppy" with syslinux, kernel and initramfs
#   uefi-signed.raw       FAT disk with a unified kernel image at EFI/BOOT/BOOTX64.EFI,
#                         signed with Debian's snakeoil test key (OVMF_VARS_4M.snakeoil.fd trusts it)
#   uefi-unsigned.raw     the same image unsigned (Secure Boot must refuse it)
#   manifest.json         kernel version, command line, sha256 and size of each file
#
# Usage: guests/build.sh [--force]
# Idempotent: the hash of its inputs (these scripts, the kernel package and
# version, the host tools' versions) is kept in out/.stamp; when it matches and
# every output exists, nothing is done. Outputs are replaced atomically, so a
# reader never sees a half-written image. KERNEL_PACKAGE=linux-image-... pins
# the kernel package (default: the newest linux-image-6.1.0-*-cloud-amd64).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=$here/out
force=0
case "${1:-}" in
  --force) force=1 ;;
  "") ;;
  *) echo "usage: $0 [--force]" >&2; exit 2 ;;
esac
mkdir -p "$out"
exec 9>"$out/.lock"
flock 9 # one build at a time

say() { echo "guests: $*" >&2; }

# Host packages this script uses. dpkg-query only, so the fast path does no apt work.
need=(apt dpkg busybox-static syslinux syslinux-common mtools dosfstools sbsigntool
  systemd-boot-efi binutils cpio gzip qemu-utils ovmf openssl util-linux coreutils qemu-guest-agent dropbear-bin)
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
fi

# The kernel: the newest 6.1 cloud kernel apt knows of, and its version.
kpkg='' kpkgver='' stamp=''
resolve() {
  local line
  line=$(apt-cache search --names-only --full '^linux-image-6\.1\.0-[0-9]+-cloud-amd64$' 2>/dev/null |
    awk '/^Package:/ {p = $2} /^Version:/ {print p, $2}' |
    { if [ -n "${KERNEL_PACKAGE:-}" ]; then awk -v k="$KERNEL_PACKAGE" '$1 == k'; else cat; fi } |
    sort -V | tail -n 1)
  kpkg=${line% *} kpkgver=${line#* }
  stamp=$({
    cd "$here" && sha256sum build.sh init.sh udhcpc.script
    echo "kernel $kpkg=$kpkgver"
    dpkg-query -W -f='${Package}=${Version}\n' busybox-static syslinux syslinux-common systemd-boot-efi qemu-guest-agent dropbear-bin \
      sbsigntool ovmf mtools dosfstools
  } | sha256sum | cut -d' ' -f1)
}
outputs=(vmlinuz initrd.img bios.raw bios.qcow2 uefi-signed.raw uefi-unsigned.raw manifest.json)
built() { local f; for f in "${outputs[@]}"; do [ -s "$out/$f" ] || return 1; done; }
uptodate() { [ -f "$out/.stamp" ] && [ "$(cat "$out/.stamp")" = "$stamp" ] && built; }

resolve
if [ -z "$kpkgver" ]; then
  say "no cloud kernel in apt's lists; running apt-get update"
  apt-get update -qq || true
  resolve
fi
if [ -z "$kpkgver" ]; then
  if [ "$force" = 0 ] && built; then
    say "warning: apt knows no linux-image-6.1.0-*-cloud-amd64; keeping the images already built"
    exit 0
  fi
  say "no installable linux-image-6.1.0-*-cloud-amd64 found"
  exit 1
fi
if [ "$force" = 0 ] && uptodate; then
  say "up to date ($kpkg $kpkgver)"
  exit 0
fi

# Work in out/ (same filesystem), so the final mv of each output is atomic.
work=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Fetch the kernel package (never installed), kept in out/.cache between builds.
cache=$out/.cache/$kpkg=$kpkgver
download() {
  mkdir -p "$cache"
  (cd "$cache" && apt-get download -q -o APT::Sandbox::User=root "$kpkg=$kpkgver" >/dev/null)
}
if ! ls "$cache"/*.deb >/dev/null 2>&1; then
  say "downloading $kpkg $kpkgver"
  if ! download; then
    say "download failed; running apt-get update and trying again"
    apt-get update -qq
    resolve
    cache=$out/.cache/$kpkg=$kpkgver
    download
  fi
fi
find "$out/.cache" -mindepth 1 -maxdepth 1 ! -path "$cache" -exec rm -rf {} +
deb=$(ls "$cache"/*.deb | head -n 1)
say "building from $(basename "$deb")"
dpkg-deb -x "$deb" "$work/kernel"
vmlinuz=$(ls "$work"/kernel/boot/vmlinuz-* | head -n 1)
kver=${vmlinuz##*/vmlinuz-}
moddir=$work/kernel/lib/modules/$kver
cp "$vmlinuz" "$work/vmlinuz"

# ---- initramfs ---------------------------------------------------------------
root=$work/root
mkdir -p "$root"/{bin,etc,proc,sys,dev,run,tmp,mnt,root,lib/modules}
ln -s bin "$root/sbin"
cp /bin/busybox "$root/bin/busybox"
for app in $(/bin/busybox --list); do
  [ "$app" = busybox ] || ln -sf busybox "$root/bin/$app"
done
install -m 0755 "$here/init.sh" "$root/init"
install -m 0755 "$here/udhcpc.script" "$root/etc/udhcpc.script"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$root/etc/passwd"
printf 'root:x:0:\n' > "$root/etc/group"
printf 'export PS1='"'"'\\u@\\h:\\w\\$ '"'"'\n' > "$root/etc/profile"
chmod 0700 "$root/root"
# The QEMU guest agent and dropbearkey (the first-boot SSH host key), with the libraries
# they link, from the host's Debian (the same release as the kernel).
install -m 0755 /usr/sbin/qemu-ga "$root/bin/qemu-ga"
install -m 0755 /usr/bin/dropbearkey "$root/bin/dropbearkey"
for lib in $(ldd /usr/sbin/qemu-ga /usr/bin/dropbearkey |
  awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\/lib64\// {print $1}' | sort -u); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done

# Modules the guest loads, with their dependencies first. Names Debian builds
# into the kernel (modules.builtin) are skipped; modules.dep is not in the
# package (depmod makes it at install), so dependencies come from .modinfo.
# Loaded at every boot:
modules=(
  virtio_pci virtio_blk virtio_net  # disks and NICs (virtio_pci pulls virtio, virtio_ring, ...)
  qemu_fw_cfg                       # /sys/firmware/qemu_fw_cfg: the fw_cfg run script
  vfat nls_cp437 nls_ascii nls_iso8859-1 nls_utf8 isofs  # config drives (vfat's default iocharset is ascii)
  efivarfs                          # the SecureBoot variable
  virtio_console                    # virtio-serial: the guest agent's channel
)
# Loaded only when a virtio-scsi controller is present (a config drive on a
# CD-ROM): SCSI costs ~0.4 s of boot under TCG, so guests without one skip it.
# IDE/SATA CD-ROMs are not supported (the cloud kernel has no AHCI at all).
scsi_modules=(virtio_scsi sr_mod)
declare -A modpath=() builtin=() seen=()
while IFS= read -r f; do
  n=${f##*/}; n=${n%.ko}; modpath[${n//-/_}]=$f
done < <(find "$moddir/kernel" -name '*.ko')
while IFS= read -r f; do
  n=${f##*/}; n=${n%.ko}; builtin[${n//-/_}]=1
done < "$moddir/modules.builtin"
order=()
add_module() {
  local n=${1//-/_} f deps d
  if [ -n "${seen[$n]:-}" ] || [ -n "${builtin[$n]:-}" ]; then return 0; fi
  seen[$n]=1
  f=${modpath[$n]:-}
  [ -n "$f" ] || { say "module $1 is neither built into $kver nor shipped with it"; exit 1; }
  objcopy -O binary -j .modinfo "$f" "$work/modinfo"
  deps=$(tr '\0' '\n' < "$work/modinfo" | sed -n 's/^depends=//p' | tr ',' ' ')
  for d in $deps; do add_module "$d"; done
  cp "$f" "$root/lib/modules/$n.ko" # as shipped: signed, so Secure Boot's lockdown accepts it
  order+=("$n")
}
for m in "${modules[@]}"; do add_module "$m"; done
printf '%s\n' "${order[@]}" > "$root/lib/modules/load.order"
say "modules: ${order[*]}"
order=()
for m in "${scsi_modules[@]}"; do add_module "$m"; done
printf '%s\n' "${order[@]}" > "$root/lib/modules/virtio-scsi.order"
say "virtio-scsi modules: ${order[*]}"

find "$root" -exec touch -h -d @1700000000 {} +
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --reproducible --quiet) |
  gzip -9 -n > "$work/initrd.img"

cmdline="console=ttyS0 quiet panic=-1"
export SOURCE_DATE_EPOCH=1700000000

# ---- BIOS disk -----------------------------------------------------------------
# A FAT filesystem over the whole disk ("superfloppy"); syslinux installs its
# boot sector and ldlinux.sys through mtools, so nothing is mounted.
truncate -s 32M "$work/bios.raw"
mkfs.vfat --invariant -i 42554c57 -n BULWARK "$work/bios.raw" >/dev/null
syslinux --install "$work/bios.raw"
cat > "$work/syslinux.cfg" <<EOF
SERIAL 0 115200
DEFAULT linux
PROMPT 0
TIMEOUT 0
LABEL linux
  LINUX /vmlinuz
  INITRD /initrd.img
  APPEND $cmdline
EOF
touch -d @"$SOURCE_DATE_EPOCH" "$work/vmlinuz" "$work/initrd.img" "$work/syslinux.cfg"
mcopy -m -i "$work/bios.raw" "$work/vmlinuz" "$work/initrd.img" "$work/syslinux.cfg" ::/
qemu-img convert -f raw -O qcow2 "$work/bios.raw" "$work/bios.qcow2"

# ---- UEFI disks ----------------------------------------------------------------
# A unified kernel image: systemd-boot's stub plus .cmdline, .linux and .initrd
# sections placed (page aligned) after the stub's last section.
stub=/usr/lib/systemd/boot/efi/linuxx64.efi.stub
printf '%s' "$cmdline" > "$work/cmdline"
stub_end=0
while read -r size vma; do
  end=$((16#$vma + 16#$size))
  [ "$end" -gt "$stub_end" ] && stub_end=$end
done < <(objdump -h "$stub" | awk 'NF == 7 && $1 ~ /^[0-9]+$/ {print $3, $4}')
align() { echo $(((($1) + 4095) / 4096 * 4096)); }
cmdline_vma=$(align "$stub_end")
linux_vma=$(align $((cmdline_vma + $(stat -c %s "$work/cmdline"))))
initrd_vma=$(align $((linux_vma + $(stat -c %s "$work/vmlinuz"))))
objcopy \
  --add-section .cmdline="$work/cmdline" --change-section-vma .cmdline="$(printf 0x%x "$cmdline_vma")" \
  --add-section .linux="$work/vmlinuz" --change-section-vma .linux="$(printf 0x%x "$linux_vma")" \
  --add-section .initrd="$work/initrd.img" --change-section-vma .initrd="$(printf 0x%x "$initrd_vma")" \
  "$stub" "$work/uki-unsigned.efi"
# objcopy stamps the build time into the PE header; zero it so the unsigned image is reproducible.
pe=$(od -An -tu4 -j 60 -N 4 "$work/uki-unsigned.efi" | tr -d ' ')
printf '\0\0\0\0' | dd of="$work/uki-unsigned.efi" bs=1 seek=$((pe + 8)) conv=notrunc status=none  # TimeDateStamp
printf '\0\0\0\0' | dd of="$work/uki-unsigned.efi" bs=1 seek=$((pe + 88)) conv=notrunc status=none # CheckSum
key=/usr/share/ovmf/PkKek-1-snakeoil.key cert=/usr/share/ovmf/PkKek-1-snakeoil.pem
# The key's PEM pass phrase is "snakeoil"; decrypt it here so sbsign never prompts.
(umask 077 && openssl pkey -in "$key" -passin pass:snakeoil -out "$work/snakeoil.key")
sbsign --key "$work/snakeoil.key" --cert "$cert" --output "$work/uki-signed.efi" "$work/uki-unsigned.efi" 2>/dev/null
sbverify --cert "$cert" "$work/uki-signed.efi" >/dev/null 2>&1 || { say "sbverify failed"; exit 1; }
for kind in signed unsigned; do
  img=$work/uefi-$kind.raw
  mkdir -p "$work/esp-$kind/EFI/BOOT"
  cp "$work/uki-$kind.efi" "$work/esp-$kind/EFI/BOOT/BOOTX64.EFI"
  find "$work/esp-$kind" -exec touch -d @"$SOURCE_DATE_EPOCH" {} +
  truncate -s 32M "$img"
  mkfs.vfat --invariant -i 42554c57 -n BULWARKEFI "$img" >/dev/null
  mcopy -s -m -i "$img" "$work/esp-$kind/EFI" ::/
done

# ---- manifest ------------------------------------------------------------------
{
  printf '{\n  "kernel": "%s",\n  "kernelPackage": "%s",\n  "kernelPackageVersion": "%s",\n' "$kver" "$kpkg" "$kpkgver"
  printf '  "cmdline": "%s",\n  "files": {\n' "$cmdline"
  sep=
  for f in "${outputs[@]}"; do
    [ "$f" = manifest.json ] && continue
    printf '%s    "%s": {"sha256": "%s", "size": %s}' "$sep" "$f" \
      "$(sha256sum "$work/$f" | cut -d' ' -f1)" "$(stat -c %s "$work/$f")"
    sep=$',\n'
  done
  printf '\n  }\n}\n'
} > "$work/manifest.json"

rm -f "$out/.stamp"
for f in "${outputs[@]}"; do mv -f "$work/$f" "$out/$f"; done
echo "$stamp" > "$out/.stamp"
say "built $kver into $out (initrd $(stat -c %s "$out/initrd.img") bytes)"
