#!/bin/bash
# A throw-away copy-on-write root of this machine, as a running system sees itself: private
# mount/UTS/net/IPC/PID namespaces, an overlay (lower=/ read-only, upper=tmpfs) chrooted as "/".
# Changes (users, /etc, hostname, net.* sysctls) stay inside and vanish with it.
# Usage: testroot.sh [--keep DIR] -- COMMAND [ARGS...]   (COMMAND runs inside the root)
# With --keep, the overlay's upper layer is copied to DIR afterwards, for inspection.
set -euo pipefail
keep=
if [ "${1:-}" = "--keep" ]; then keep=$2; shift 2; fi
[ "${1:-}" = "--" ] && shift
if [ -z "${BALLAST_TESTROOT_INNER:-}" ]; then
  exec env BALLAST_TESTROOT_INNER=1 unshare --mount --uts --net --ipc --pid --fork --propagation private \
    "$0" ${keep:+--keep "$keep"} -- "$@"
fi
work=$(mktemp -d /tmp/ballast-testroot-XXXXXX)
mount -t tmpfs -o size=1g tmpfs "$work"
mkdir -p "$work"/{upper,work,root}
mount -t overlay overlay -o lowerdir=/,upperdir="$work/upper",workdir="$work/work" "$work/root"
r=$work/root
mount -t proc proc "$r/proc"
mount -t sysfs sysfs "$r/sys"
mount --rbind /dev "$r/dev"
mount -t tmpfs tmpfs "$r/run"
hostname testroot-orig
set +e
chroot "$r" env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 HOME=/root "$@"
rc=$?
set -e
if [ -n "$keep" ]; then
  mkdir -p "$keep"
  cp -a "$work/upper/." "$keep/" 2>/dev/null || true
  hostname > "$keep/.uts-hostname"
  cat /proc/sys/net/ipv4/ip_forward > "$keep/.ip_forward" 2>/dev/null || true
fi
exit $rc
