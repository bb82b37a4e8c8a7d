#!/bin/bash
# Footprint benchmark: idle memory, start-to-ready time, idle wake-ups and stop time of
# ballast-agent against `rauc service` (Debian's RAUC 1.8), both on the same private D-Bus system
# bus, started alternately RUNS times each in the same run.
# Usage: tests/bench/footprint/run.sh BUILD_DIR   (RUNS=7 IDLE=5 by default)
set -euo pipefail
build=$(realpath "${1:-build}")
here=$(cd "$(dirname "$0")" && pwd)
runs=${RUNS:-7}
idle=${IDLE:-5}
probe=$build/tests/bench/footprint-probe
agent=${AGENT:-$build/agent/ballast-agent}  # AGENT=... measures another build, e.g. the .deb's
for t in rauc dbus-daemon openssl; do
  command -v $t >/dev/null || { echo "footprint: $t missing (make bench installs it via packaging/deps.sh bench)" >&2; exit 1; }
done
work=$(mktemp -d /tmp/ballast-footprint-XXXXXX)
bus_pid=
cleanup() { [ -n "$bus_pid" ] && kill "$bus_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# RAUC: test keyring, two small file-backed raw slots, noop bootloader, booted slot pinned to A
# (there is no rauc.slot= on this kernel command line), as ../shared/anchors/rauc_setup.sh does.
mkdir -p "$work"/{rauc/slots,rauc/state,rauc/mnt,agent-root}
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
  -keyout "$work/rauc/ca.key" -out "$work/rauc/keyring.pem" -subj "/CN=footprint CA" 2>/dev/null
truncate -s 1M "$work/rauc/slots/a.img" "$work/rauc/slots/b.img"
cat >"$work/rauc/system.conf" <<CONF
[system]
compatible=footprint-bench
bootloader=noop
mountprefix=$work/rauc/mnt
data-directory=$work/rauc/state

[keyring]
path=$work/rauc/keyring.pem

[slot.rootfs.0]
device=$work/rauc/slots/a.img
type=raw
bootname=A

[slot.rootfs.1]
device=$work/rauc/slots/b.img
type=raw
bootname=B
CONF
cat >"$work/bus.conf" <<CONF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$work/bus.sock</listen>
  <auth>EXTERNAL</auth>
  <policy context="default"><allow user="*"/><allow own="*"/><allow send_destination="*"/><allow receive_sender="*"/></policy>
</busconfig>
CONF
dbus-daemon --config-file="$work/bus.conf" --nofork --nopidfile 2>/dev/null &
bus_pid=$!
for _ in $(seq 100); do [ -S "$work/bus.sock" ] && break; sleep 0.05; done
addr=unix:path=$work/bus.sock

results=$work/results.jsonl
for i in $(seq "$runs"); do
  "$probe" --address "$addr" --name org.ballast.Agent1 --idle "$idle" -- \
    "$agent" --bus-address "$addr" --root "$work/agent-root" --booted-slot A --log-level warning \
    | sed 's/^{/{"who":"ballast",/' >>"$results"
  DBUS_SYSTEM_BUS_ADDRESS=$addr "$probe" --address "$addr" --name de.pengutronix.rauc --idle "$idle" -- \
    "$(command -v rauc)" -c "$work/rauc/system.conf" --mount="$work/rauc/mnt" service --override-boot-slot=A \
    2>>"$work/rauc.log" | sed 's/^{/{"who":"rauc",/' >>"$results"
done
mkdir -p "$build/bench"
cp "$results" "$build/bench/footprint.jsonl"
/usr/bin/python3 "$here/summarize.py" "$results"
