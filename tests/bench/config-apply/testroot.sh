#!/bin/bash
# One run in a throw-away copy-on-write root of this machine (as ../shared/anchors/ci_testroot.sh):
# private mount/UTS/net/IPC/PID namespaces, overlay lower=/ upper=tmpfs, chroot. Every run is a
# first boot. Prints "elapsed_s user_s sys_s maxrss_kb rc verify" for the inner command only.
# Usage: testroot.sh CFGDIR MODE     MODE: cloud-init | ballast | ballast-boot
set -euo pipefail
C=$1 MODE=$2
if [ "${3:-}" != --inner ]; then
  exec unshare --mount --uts --net --ipc --pid --fork --propagation private "$0" "$C" "$MODE" --inner
fi
W=$(mktemp -d /tmp/ballast-bench-XXXXXX)
mount -t tmpfs -o size=2g tmpfs "$W"
mkdir -p "$W"/{upper,work,root}
mount -t overlay overlay -o lowerdir=/,upperdir="$W/upper",workdir="$W/work" "$W/root"
T=$W/root
mount -t proc proc "$T/proc"
mount -t sysfs sysfs "$T/sys"
mount --rbind /dev "$T/dev"
mount -t tmpfs tmpfs "$T/run"
mount -t tmpfs tmpfs "$T/tmp"
hostname orig-host
rm -rf "$T/var/lib/cloud" "$T/etc/anchor-bench" "$T/var/tmp/anchor-runcmd."*
mkdir -p "$T/bench"
cp "$C"/user-data*.yaml "$T/bench/"
case $MODE in
  cloud-init)
    mkdir -p "$T/var/lib/cloud/seed/nocloud"
    cp "$C/seed/user-data" "$C/seed/meta-data" "$T/var/lib/cloud/seed/nocloud/"
    cp "$C/99-bench-system.cfg" "$C/97-bench-onestage.cfg" "$T/etc/cloud/cloud.cfg.d/"
    CMD='cloud-init init' ;;
  ballast)
    # What a Ballast node runs at boot for this file: the initramfs stage (hostname), then boot.
    CMD="$BALLAST_AGENT stage initramfs --config /bench/user-data.yaml && $BALLAST_AGENT stage boot --config /bench/user-data.yaml" ;;
  ballast-boot)
    # The same work as one boot step, plus sysctl: `ballast-agent stage boot` alone.
    CMD="$BALLAST_AGENT stage boot --config /bench/user-data-boot.yaml" ;;
  *) echo "unknown mode $MODE" >&2; exit 2 ;;
esac
sync
TF=$(mktemp)
set +e
s=$(date +%s%N)
/usr/bin/time -q -f '%U %S %M' -o "$TF" chroot "$T" env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  LANG=C.UTF-8 HOME=/root /bin/sh -c "$CMD" >"$W/out.log" 2>&1
rc=$?
e=$(date +%s%N)
set -e
nf=$(ls "$T/etc/anchor-bench" 2>/dev/null | wc -l)
nu=0; nk=0
for u in bench1 bench2 bench3; do
  grep -q "^$u:" "$T/etc/passwd" && nu=$((nu+1))
  grep -q "$u@anchor" "$T/home/$u/.ssh/authorized_keys" 2>/dev/null && nk=$((nk+1))
done
ok=bad
[ "$rc" = 0 ] && [ "$nf" = 20 ] && [ "$nu" = 3 ] && [ "$nk" = 3 ] && [ "$(cat "$T/etc/hostname")" = bench-node ] \
  && [ "$(hostname)" = bench-node ] && [ -e "$T/var/tmp/anchor-runcmd.done" ] && ok=ok
[ $ok = ok ] || { echo "verify failed: rc=$rc files=$nf users=$nu keys=$nk hostname=$(cat "$T/etc/hostname" 2>/dev/null)/$(hostname)" >&2; tail -20 "$W/out.log" >&2; }
read -r u sy m < "$TF"
printf '%s %s %s %s %s %s\n' "$(echo "scale=4; ($e - $s) / 1000000000" | bc)" "$u" "$sy" "$m" "$rc" "$ok"
rm -f "$TF"
