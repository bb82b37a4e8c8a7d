#!/bin/bash
# Builds the Ballast OS image from Debian 12 packages, as root:
#   1. base tree: mmdebstrap (minbase, no recommends) of packages.list against this machine's apt
#      sources, cached outside the checkout in /var/cache/ballast/image/<key>.tar, where key is
#      the sha256 of the package list, the suite and the mmdebstrap options (a rerun skips it);
#   2. slot root: the base tree + the Ballast .deb + image files (rootfs/), a dracut initramfs,
#      /boot/vmlinuz and /boot/initrd.img (the names overlay/grub/grub.cfg loads);
#   3. OUT/rootfs.sqfs (squashfs, xz: GRUB 2.06 reads it), test signing keys and an SSH key in
#      OUT/pki (made by the build, never committed), the signed bundle OUT/ballast-VERSION.tar,
#      and OUT/disk.img (sparse) made by `agentctl install` with oem/demo.yaml in BALLAST_OEM.
# Usage: packaging/image/build.sh [--out DIR] [--version V] [--compatible C] [--deb FILE]
#                                  [--extra-packages "PKG..."] [--oem FILE]...
#   --out         output folder (default build/image)
#   --version     image version (os-release VERSION, bundle version; default the package's)
#   --compatible  compatible string (/usr/lib/ballast/compatible, bundle; default ballast-amd64)
#   --deb         the Ballast .deb (default the newest build/deb/ballast_*.deb, made by `make deb`)
#   --extra-packages  more Debian packages for the base tree, for test images only (tests/e2e
#                 adds what the k3s stand-in runs on); part of the cache key
#   --oem         one more cloud-config file for disk.img's OEM partition, after oem/demo.yaml
#                 (repeatable; tests/e2e adds its network config)
#   --base-only   make (or find) the cached base tree and stop: `make test` starts this beside
#                 its compile, so that a fresh machine's download overlaps it
# BALLAST_IMAGE_CACHE overrides the cache folder.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
out=$top/build/image
version=""
compatible=ballast-amd64
deb=""
extra=""
oem_extra=()
base_only=0
while [ $# -gt 0 ]; do
  case $1 in
    --out) out=$2; shift 2 ;;
    --version) version=$2; shift 2 ;;
    --compatible) compatible=$2; shift 2 ;;
    --deb) deb=$2; shift 2 ;;
    --extra-packages) extra=$2; shift 2 ;;
    --base-only) base_only=1; shift ;;
    --oem) [ -f "${2:-}" ] || { echo "build.sh: --oem '${2:-}': no such file (see --help)" >&2; exit 2; }
           oem_extra+=(--config "$(realpath "$2")"); shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "build.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "build.sh: run as root (mmdebstrap, chroot, dpkg)" >&2; exit 1; }
out=$(realpath -m "$out")
suite=bookworm
cache=${BALLAST_IMAGE_CACHE:-/var/cache/ballast/image}
t0=$SECONDS
say() { printf 'image: %s\n' "$*"; }
mib() { echo "$(( ($(du -s --block-size=1 "$@" | tail -n1 | cut -f1) + 1048575) / 1048576 )) MiB"; }
timing=()
step_start=$SECONDS
step() { timing+=("$1: $((SECONDS - step_start)) s"); step_start=$SECONDS; }

"$top/packaging/deps.sh" image

# --- 1. base tree (cached) -------------------------------------------------------------------
# shellcheck disable=SC2086  # $extra is a list of words
mapfile -t pkgs < <({ sed 's/#.*//; s/[[:space:]]//g' "$here/packages.list"
                     printf '%s\n' $extra; } | sed '/^$/d' | sort -u)
# netplan's generator (/usr/libexec/netplan/generate, and its link among systemd's generators) out
# of netplan.io's package of the same version as the image's libnetplan0, with its copyright: the
# package itself would bring python3 and its libraries (about 40 MiB) for a CLI a node never runs.
# shellcheck disable=SC2016  # $1 is mmdebstrap's, in its hook
netplan_hook='set -e; chroot "$1" sh -c "cd /tmp && apt-get download -q=2 netplan.io=\$(dpkg-query -W -f=\\\${Version} libnetplan0)"
  d=$(mktemp -d); dpkg-deb -x "$1"/tmp/netplan.io_*.deb "$d"; rm -f "$1"/tmp/netplan.io_*.deb
  install -D -m 0755 "$d"/usr/libexec/netplan/generate "$1"/usr/libexec/netplan/generate
  install -D -m 0644 "$d"/usr/share/doc/netplan.io/copyright "$1"/usr/share/doc/netplan.io/copyright
  mkdir -p "$1"/usr/lib/systemd/system-generators
  ln -sfn /usr/libexec/netplan/generate "$1"/usr/lib/systemd/system-generators/netplan
  mkdir -p "$1"/etc/netplan; rm -rf "$d"'
# shellcheck disable=SC2016  # $1 is mmdebstrap's, in its hook
mm_opts=(--variant=minbase --mode=root --format=tar --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
         --aptopt='APT::Install-Recommends "false"'
         --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*'
         --dpkgopt='path-include=/usr/share/locale/locale.alias'
         --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
         --customize-hook="$netplan_hook"
         --customize-hook='rm -f "$1"/boot/initrd.img* "$1"/initrd.img* "$1"/var/lib/apt/lists/*_* "$1"/var/cache/apt/*.bin')
key=$(printf '%s\n' "$suite" "${mm_opts[@]}" "${pkgs[@]}" | sha256sum | cut -c1-64)
base=$cache/$key.tar
# One mmdebstrap a key at a time: a second build (the e2e layer's, while `make test`'s early one
# still runs) waits for the first and takes its tree. A cached tree needs no lock (nor a writable
# cache folder).
if [ ! -s "$base" ]; then
  mkdir -p "$cache"
  exec 9>"$cache/$key.lock"
  flock -w 1800 9 || { echo "build.sh: another build of $base held its lock for 30 minutes" >&2; exit 1; }
fi
if [ -s "$base" ]; then
  say "base tree: cached $base"
else
  # This machine's apt sources (deb822 .sources and one-line .list files), as mmdebstrap mirrors.
  sources=()
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && grep -qE '^[[:space:]]*(deb |Types:)' "$f" && sources+=("$f")
  done
  [ ${#sources[@]} -gt 0 ] || { echo "build.sh: no apt sources in /etc/apt" >&2; exit 1; }
  say "base tree: mmdebstrap $suite, ${#pkgs[@]} packages (sources: ${sources[*]})"
  tmp_base=$cache/.$key.$$.tar
  # INITRD=No: the kernel's postinst would run dracut for the build host; the slot step does it.
  INITRD=No mmdebstrap "${mm_opts[@]}" --include="$(IFS=,; echo "${pkgs[*]}")" \
    "$suite" "$tmp_base" "${sources[@]}" >"$cache/$key.log" 2>&1 9>&- || {
    tail -n 30 "$cache/$key.log" >&2
    rm -f "$tmp_base"
    echo "build.sh: mmdebstrap failed; log in $cache/$key.log" >&2
    exit 1
  }
  mv "$tmp_base" "$base"
  say "base tree: $base ($(mib "$base"))"
fi
exec 9>&-  # (a no-op when the tree was cached)
step "base tree"
if [ "$base_only" = 1 ]; then
  say "base tree only: done in $((SECONDS - t0)) s"
  exit 0
fi

# --- the .deb, agentctl for the host, version ------------------------------------------------
if [ -z "$deb" ]; then
  # No build/deb yet (a fresh checkout): find fails, and pipefail must not end the script.
  deb=$({ find "$top/build/deb" -maxdepth 1 -name 'ballast_*.deb' -printf '%T@ %p\n' 2>/dev/null || true; } |
        sort -rn | head -n1 | cut -d' ' -f2-)
  if [ -z "$deb" ]; then
    say "no Ballast .deb yet: make deb"
    make -C "$top" deb
    deb=$(find "$top/build/deb" -maxdepth 1 -name 'ballast_*.deb' | head -n1)
  fi
fi
[ -f "$deb" ] || { echo "build.sh: no such .deb: $deb" >&2; exit 1; }
[ -n "$version" ] || version=$(dpkg-deb -f "$deb" Version)
say "Ballast package: $deb; image version $version, compatible $compatible"
mkdir -p "$out"
rm -rf "$out/agentctl-host"
dpkg-deb -x "$deb" "$out/agentctl-host"
agentctl=$out/agentctl-host/usr/bin/agentctl

# --- test signing keys (the image ships the CA as its keyring) --------------------------------
# shellcheck source=tests/bench/common.sh
. "$top/tests/bench/common.sh"
(cd "$out" && BENCH_PKI_CN=ballast-image-test bench_pki)

# --- 2. slot root ----------------------------------------------------------------------------
root=$out/root
mounted=()
cleanup() {
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[i]}" 2>/dev/null || true; done
  mounted=()
}
trap cleanup EXIT
# A killed run may have left its chroot mounts: never let rm walk into the host's /dev.
for m in dev sys proc; do
  if mountpoint -q "$root/$m" 2>/dev/null; then umount -l "$root/$m"; fi
done
rm -rf --one-file-system "$root"
mkdir -p "$root"
tar -xpf "$base" -C "$root" --numeric-owner --xattrs --xattrs-include='security.*'
for m in proc sys dev; do
  case $m in
    proc) mount -t proc proc "$root/proc" ;;
    sys) mount -t sysfs sys "$root/sys" ;;
    dev) mount --bind /dev "$root/dev" ;;
  esac
  mounted+=("$root/$m")
done
in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 "$@"; }

cp "$deb" "$root/tmp/ballast.deb"
in_root dpkg -i /tmp/ballast.deb >"$out/dpkg.log" 2>&1 || {
  cat "$out/dpkg.log" >&2
  echo "build.sh: installing the .deb into the image failed (a dependency missing from packages.list?)" >&2
  exit 1
}
rm -f "$root/tmp/ballast.deb"
cp -a "$here/rootfs/." "$root/"
install -D -m 0644 "$out/pki/ca.pem" "$root/usr/share/ballast/keyring.pem"
mkdir -p "$root/usr/lib/ballast"
printf '%s\n' "$compatible" >"$root/usr/lib/ballast/compatible"
cat >"$root/usr/lib/os-release" <<EOF
PRETTY_NAME="Ballast $version (Debian 12)"
NAME="Ballast"
ID=ballast
ID_LIKE=debian
VERSION="$version"
VERSION_ID="$version"
VERSION_CODENAME=$suite
HOME_URL="https://ballast.invalid/"
EOF
ln -sfn ../usr/lib/os-release "$root/etc/os-release"
echo ballast >"$root/etc/hostname"
# Mount points no package ships: the OEM partition; /etc/ballast for operators' settings.
mkdir -p "$root/oem" "$root/etc/ballast/config.d"
# Made on each node's first boot (ballast-ssh-keygen.service), never shared by all nodes.
rm -f "$root"/etc/ssh/ssh_host_*
# Empty: systemd mounts a transient machine-id over it on the read-only root.
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
in_root systemctl enable ballast-agent.service ballast-smoke.service systemd-networkd.service \
  ballast-ssh-keygen.service \
  >>"$out/dpkg.log" 2>&1
# e2fsprogs' scrubbing of LVM snapshots: a node has no LVM, and it cost 4 s of every boot's CPU.
in_root systemctl disable e2scrub_reap.service e2scrub_all.timer >>"$out/dpkg.log" 2>&1
# systemd loads these modules early at every boot, one modprobe process each, although the kernel
# loads fuse and loop by itself when /dev/fuse or /dev/loop-control is first opened, and the image
# has no GPU drivers for drm. (configfs stays: without its early load /sys/kernel/config is never
# mounted; efi_pstore stays: it keeps a panic's log in an EFI variable.) docs/performance.md.
in_root systemctl mask modprobe@drm.service modprobe@fuse.service modprobe@loop.service \
  >>"$out/dpkg.log" 2>&1
# Generators systemd runs before it starts anything, at every boot, for what a node never has:
# hibernation, integritytab, veritytab (Ballast opens its slots itself, in the initramfs, and
# these mask only the booted system's generators), offline system updates, rc.local and SysV scripts (every script in
# the image has a native unit), and GPT type auto-discovery (it would mount an ESP or a "home"
# partition it finds; Ballast names its partitions by label). fstab, crypttab, getty, debug-shell
# and systemd.run= stay.
mkdir -p "$root/etc/systemd/system-generators"
for g in gpt-auto hibernate-resume integritysetup veritysetup system-update rc-local sysv; do
  ln -sfn /dev/null "$root/etc/systemd/system-generators/systemd-$g-generator"
done
# udev's hardware database without the vendor and model names (PCI, USB, SDIO, Bluetooth, ACPI,
# MAC OUI): udev only shows them (ID_VENDOR_FROM_DATABASE, ...), and their lookups read about
# 5 MiB of a 12 MiB hwdb.bin out of the compressed root at every boot. What configures hardware
# (keyboard maps, sensors, autosuspend, input, DMI fixes, interface names) stays.
rm -f "$root"/usr/lib/udev/hwdb.d/20-{OUI,acpi-vendor,bluetooth-vendor-product}.hwdb \
      "$root"/usr/lib/udev/hwdb.d/20-{pci,usb,sdio}-vendor-model.hwdb
in_root systemd-hwdb update --usr >>"$out/dpkg.log" 2>&1

# Kernel modules no edge node here needs (sound, GPUs, wireless, media, ...): tens of MiB.
kver=$(find "$root/lib/modules" -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n1)
kmods=$root/lib/modules/$kver/kernel
rm -rf "$kmods"/sound "$kmods"/drivers/{gpu,media,staging,infiniband,isdn,bluetooth,iio,input/joystick} \
       "$kmods"/drivers/net/wireless "$kmods"/net/{wireless,mac80211,bluetooth}
in_root depmod -a "$kver"
step "slot root"

say "initramfs: dracut for $kver"
# A generic initramfs (any machine: every storage driver an edge node may boot from, NVMe, SATA,
# SAS/RAID HBAs, USB, SD/eMMC, virtio), but only the filesystems the initramfs mounts (slot:
# squashfs or erofs; persistent and OEM: ext4; /etc: overlay) and none of the SAN and software
# RAID drivers no Ballast node boots through: GRUB reads it and the kernel unpacks it at every
# boot (40 MiB before, 13.6 s of GRUB under TCG; docs/performance.md, "Boot"). scsi_transport_fc
# stays: Hyper-V's storage driver (hv_storvsc) needs it.
san_raid="lpfc qla2xxx bfa qla4xxx csiostor qedf qedi libfc libfcoe fcoe fnic bnx2fc bnx2i be2iscsi
          cxgb3i cxgb4i libcxgbi snic scsi_debug iscsi_tcp libiscsi libiscsi_tcp mptfc
          scsi_transport_iscsi bcache raid456 raid10 raid1 raid0 linear dm_raid md_mod"
# dracut modules: no splash; none of dracut's shell hooks (dracut-systemd: dracut-cmdline,
# -initqueue, -pre-pivot... about 4.5 s of each boot under TCG), since systemd in the initramfs mounts
# root= itself and ballast-agent mount does the rest; and nothing for roots a node never has
# (NFS-style /usr, hibernation, NVDIMM, virtiofs, dracut's overlay root, FC LUN masking) or for
# dracut's own unlocking (crypt: ballast-agent unlocks).
omit_modules="plymouth dracut-systemd rootfs-block crypt usrmount resume nvdimm virtiofs overlay-root
              lunmask terminfo qemu"
# dracut's generic module set also takes whole driver folders the initramfs never loads from:
# vendor HID drivers (the recovery-key prompt needs a plain keyboard: hid_generic, usbhid and
# atkbd stay), watchdogs (nothing arms one before the real root), USB-C port managers, flash
# translation layers, PCMCIA (sockets and cards), FireWire, parallel ports, laptop platform drivers, crypto offload
# engines (dm-crypt runs on the CPU's AES instructions; one of them drags in a 1.5 MiB Chelsio NIC
# driver), SCSI targets, Ceph, DLM; and block and device-mapper targets no root or persistent
# partition is ever on. About a third of the modules' 47 MiB (docs/performance.md, "Boot").
mods_in() {  # module names (dracut spells them with "_") of every module under these folders
  local d
  for d in "$@"; do
    [ -d "$kmods/$d" ] && find "$kmods/$d" -name '*.ko*' -printf '%f\n'
  done | sed 's/\.ko.*$//; s/-/_/g'
}
unneeded_mods="$(mods_in drivers/hid | grep -vxE 'hid|hid_generic|usbhid')
  $(mods_in drivers/watchdog drivers/usb/typec drivers/mtd drivers/pcmcia drivers/firewire \
            drivers/parport drivers/memstick drivers/platform drivers/crypto drivers/target \
            drivers/net net/ceph fs/dlm)
  $(mods_in drivers/scsi/pcmcia) pata_pcmcia sdricoh_cs serial_cs parkbd
  aoe nbd rbd drbd null_blk floppy mei
  dm_cache dm_cache_smq dm_era dm_delay dm_flakey dm_log dm_log_userspace dm_log_writes dm_switch
  dm_thin_pool dm_unstripe dm_writecache dm_zoned dm_zero dm_snapshot dm_mirror dm_region_hash
  dm_multipath dm_queue_length dm_round_robin dm_service_time dm_bio_prison dm_persistent_data
  faulty multipath md_cluster"
in_root dracut --force --no-hostonly --no-hostonly-cmdline --kver "$kver" \
  --add-drivers "virtio_blk virtio_pci virtio_scsi squashfs overlay ext4 vfat" \
  --filesystems "squashfs erofs ext4 overlay vfat nls_cp437 nls_iso8859_1" \
  --omit-drivers "$(echo $san_raid $unneeded_mods)" --compress zstd \
  --add ballast --omit "$(echo $omit_modules)" /boot/initrd.img >"$out/dracut.log" 2>&1 || {
  tail -n 30 "$out/dracut.log" >&2
  echo "build.sh: dracut failed; log in $out/dracut.log" >&2
  exit 1
}
# dracut falls back to gzip when the compressor is missing, with only a log line.
"$here/check-dracut-log.sh" "$out/dracut.log"
# Every program and library in the initramfs must find its libraries there (check-initrd-libs.sh).
in_root sh -c 'rm -rf /tmp/initrd && mkdir /tmp/initrd && cd /tmp/initrd &&
  /usr/lib/dracut/skipcpio /boot/initrd.img | zstd -dcq | cpio -id --quiet'
# So must every kernel module find the modules it depends on (check-initrd-mods.sh).
unresolved=0
"$here/check-initrd-libs.sh" "$root/tmp/initrd" || unresolved=1
"$here/check-initrd-mods.sh" "$root/tmp/initrd" "$root/lib/modules/$kver" || unresolved=1
rm -rf "$root/tmp/initrd"
[ "$unresolved" = 0 ] || { echo "build.sh: the initramfs lacks libraries or modules (above)" >&2; exit 1; }
step "dracut"
cleanup
mv "$root/boot/vmlinuz-$kver" "$root/boot/vmlinuz"
ln -s vmlinuz "$root/boot/vmlinuz-$kver"
rm -f "$root"/vmlinuz* "$root"/initrd.img* "$root"/boot/initrd.img-*
rm -rf "${root:?}"/tmp/* "$root"/var/tmp/* "$root"/var/cache/apt/archives/*.deb "$root"/var/log/*.log
chmod 1777 "$root/tmp"

# --- 3. squashfs, bundle, disk ---------------------------------------------------------------
sqfs=$out/rootfs.sqfs
rm -f "$sqfs"
# xz: GRUB 2.06's squash4 reads gzip, lzo and xz, not zstd.
mksquashfs "$root" "$sqfs" -comp xz -noappend -no-progress -quiet

step "squashfs"
bundle=$out/ballast-$version.tar
rm -rf "$bundle"
"$agentctl" bundle create --image "$sqfs" --version "$version" --compatible "$compatible" \
  --key "$out/pki/s.key" --cert "$out/pki/s.pem" -o "$bundle"
# ESP 64 + OEM 64 + two slots (twice the image, at least 256 MiB each) + persistent 512 MiB + GPT.
sq_mib=$(( ($(stat -c %s "$sqfs") + 1048575) / 1048576 ))
slot_mib=$(( 2 * sq_mib > 256 ? 2 * sq_mib : 256 ))
disk=$out/disk.img
rm -f "$disk"
truncate -s $(( 64 + 64 + 2 * slot_mib + 512 + 2 ))M "$disk"
# The demo cloud-config, with a test SSH key made by this build (root and user ballast).
[ -f "$out/pki/ssh" ] || ssh-keygen -q -t ed25519 -N '' -C ballast-image-test -f "$out/pki/ssh"
mkdir -p "$out/oem"
sed "s|@SSH_KEY@|$(cat "$out/pki/ssh.pub")|" "$here/oem/demo.yaml" >"$out/oem/demo.yaml"
"$agentctl" install --device "$disk" --bundle "$bundle" --keyring "$out/pki/ca.pem" --no-reboot \
  --config "$out/oem/demo.yaml" "${oem_extra[@]}" 2>&1 |
  grep -v '^  \(writing\|verifying\) '
step "bundle + install"

say "done in $((SECONDS - t0)) s (${timing[*]/%/;})"
say "tree $(mib "$root"), squashfs $(mib --apparent-size "$sqfs"), bundle $(mib --apparent-size "$bundle")"
say "disk $disk: $(mib --apparent-size "$disk") ($(mib "$disk") allocated), slots $slot_mib MiB"
say "boot it: packaging/image/boot-smoke.sh $disk   (or interactively: make vm)"
