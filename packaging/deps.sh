#!/bin/bash
# Installs the Debian 12 packages Ballast needs. Idempotent: runs apt-get (and apt-get update)
# only when something is missing. Usage: packaging/deps.sh [--list] [GROUP...]
#   --list  print the groups' packages, one a line, and install nothing (tests/check_deps.py)
#   build  compiler, meson, libraries, man page tool (default)
#   test   tools the test layers run (dbus-daemon, setpriv, pytest, ...)
#   deb    what `make deb` needs
#   bench  the anchors the benchmarks compare against (RAUC, casync, cloud-init, hyperfine; systemd's TPM2
#          token plugin, swtpm and the pcap TCTI for the unlock benchmark)
#   image  what packaging/image/ needs to build the OS image and boot it in QEMU (the e2e layer)
#   cache  ccache, which meson finds by itself: rebuilds of a clean checkout cost little
set -euo pipefail

declare -A GROUPS_PKGS=(
  [build]="meson ninja-build g++ pkg-config systemd libsystemd-dev libblkid-dev zlib1g-dev libyaml-cpp-dev
           libspdlog-dev libfmt-dev nlohmann-json3-dev libcli11-dev catch2 scdoc libssl-dev
           libcurl4-openssl-dev libcrypt-dev libfdisk-dev libtss2-dev libcryptsetup-dev libexpat1-dev python3"
  [test]="dbus dbus-bin util-linux python3 python3-pytest python3-pytest-xdist python3-yaml python3-jsonschema man-db clang-format git busybox-static nginx tinyproxy-bin
          openssl mtools dosfstools genisoimage e2fsprogs clang-16 libclang-rt-16-dev squashfs-tools
          erofs-utils fdisk grub-common grub-efi-amd64-bin swtpm swtpm-tools tpm2-tools cryptsetup-bin
          skopeo docker-registry python3-jwt python3-cryptography netplan.io iproute2 systemd-boot-efi sbsigntool binutils efitools"
  [deb]="dpkg-dev debhelper fakeroot"
  [bench]="rauc rauc-service casync hyperfine procps cloud-init openssh-client time gcc libcryptsetup-dev
           libtss2-tcti-pcap0 swtpm tpm2-tools cryptsetup-bin systemd"
  [image]="mmdebstrap squashfs-tools qemu-system-x86 ovmf openssl e2fsprogs dosfstools mtools fdisk
           grub-common grub-efi-amd64-bin openssh-client"
  [cache]="ccache"
)

list=0
if [ "${1:-}" = --list ]; then
  list=1
  shift
fi
groups=("$@")
[ ${#groups[@]} -gt 0 ] || groups=(build)

want=()
for g in "${groups[@]}"; do
  [ -n "${GROUPS_PKGS[$g]+x}" ] || { echo "deps.sh: unknown group '$g' (build test deb bench image cache)" >&2; exit 2; }
  # shellcheck disable=SC2206
  want+=(${GROUPS_PKGS[$g]})
done
if [ $list -eq 1 ]; then
  printf '%s\n' "${want[@]}" | sort -u
  exit 0
fi

missing=()
for p in "${want[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$status" = installed ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "deps.sh: missing packages: ${missing[*]}; run as root (or install them) first" >&2
  exit 1
fi
echo "deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
