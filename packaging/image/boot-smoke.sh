#!/bin/bash
# Boots a Ballast disk image in QEMU (q35, OVMF, TCG, serial console, snapshot=on: the image is
# not changed) and checks that it came up: the serial console must show the marker of
# ballast-smoke.service with root=squashfs ro=yes, and a login prompt.
# Usage: packaging/image/boot-smoke.sh DISK [--timeout SECONDS] [--interactive]
#   --interactive  boot with the console on this terminal and no checks (make vm; Ctrl-a x quits);
#                  ssh: port 2222 on localhost
# The serial log stays in DISK's folder as boot-smoke.log.
set -euo pipefail
disk=""
timeout=240
interactive=0
while [ $# -gt 0 ]; do
  case $1 in
    --timeout) timeout=$2; shift 2 ;;
    --interactive) interactive=1; shift ;;
    -*) echo "boot-smoke.sh: unknown option '$1'" >&2; exit 2 ;;
    *) disk=$1; shift ;;
  esac
done
[ -f "$disk" ] || { echo "usage: boot-smoke.sh DISK [--timeout S] [--interactive]" >&2; exit 2; }
ovmf=/usr/share/OVMF
[ -f $ovmf/OVMF_CODE_4M.fd ] || { echo "boot-smoke.sh: no OVMF: packaging/deps.sh image" >&2; exit 1; }
work=$(mktemp -d /tmp/ballast-boot.XXXXXX)
qpid=""
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  [ -z "$qpid" ] || kill "$qpid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cp $ovmf/OVMF_VARS_4M.fd "$work/vars.fd"
# shellcheck disable=SC2054  # commas inside QEMU's option values
qemu=(qemu-system-x86_64 -machine q35 -accel tcg -cpu max -m 1024 -smp 2 -nodefaults -nographic
      -no-reboot
      -drive if=pflash,format=raw,unit=0,readonly=on,file="$ovmf/OVMF_CODE_4M.fd"
      -drive if=pflash,format=raw,unit=1,file="$work/vars.fd"
      -drive file="$disk",format=raw,if=virtio,snapshot=on
      -netdev user,id=n0,hostfwd=tcp:127.0.0.1:2222-:22 -device virtio-net-pci,netdev=n0,romfile=)
if [ "$interactive" = 1 ]; then
  "${qemu[@]}" -serial mon:stdio
  exit
fi

log=$(dirname "$(realpath "$disk")")/boot-smoke.log
: >"$log"
start=$(date +%s.%N) s0=$SECONDS
"${qemu[@]}" -serial "file:$log" -monitor none </dev/null &
qpid=$!
marker="" login="" kernel="" sysroot=""
while kill -0 "$qpid" 2>/dev/null; do
  el=$(printf '%.1f' "$(echo "$(date +%s.%N) - $start" | bc)")
  if [ -z "$kernel" ] && grep -aq 'Linux version' "$log"; then kernel=$el; fi
  if [ -z "$sysroot" ] && grep -aq 'Mounted.*sysroot.mount' "$log"; then sysroot=$el; fi
  if [ -z "$marker" ] && grep -aqE 'BALLAST-SMOKE .* failed=[^ ]+ end' "$log"; then marker=$el; fi
  if [ -z "$login" ] && grep -aqE 'login:|Reached target.*Multi-User' "$log"; then login=$el; fi
  [ -n "$marker" ] && [ -n "$login" ] && break
  if [ $((SECONDS - s0)) -ge "$timeout" ]; then break; fi
  sleep 0.5
done
line=$(grep -a -m1 -oE 'BALLAST-SMOKE .* failed=[^ ]+ end' "$log" | tr -d '\r' || true)
kill "$qpid" 2>/dev/null || true
wait "$qpid" 2>/dev/null || true
qpid=""
printf 'boot-smoke: seconds since QEMU started: kernel %s, root mounted %s, login prompt %s, marker %s\n' \
  "${kernel:-never}" "${sysroot:-never}" "${login:-never}" "${marker:-never}"
printf 'boot-smoke: %s\n' "${line:-no marker}"
grep -aE 'Startup finished|FAILED|BALLAST-SMOKE-LOG' "$log" | tr -d '\r' | sed 's/^/boot-smoke: /' || true
if [ -n "$line" ] && [ -n "$login" ] && [[ $line == *"root=squashfs"*"ro=yes"* ]]; then
  echo "boot-smoke: ok (serial log: $log)"
  exit 0
fi
echo "boot-smoke: FAILED (serial log: $log); its last lines:" >&2
tail -n 30 "$log" | tr -d '\r' >&2
exit 1
