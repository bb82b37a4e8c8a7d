#!/bin/bash
# `make demo` until the VM image exists: the real ballast-agent on a private D-Bus bus, driven
# by agentctl. Exits 0 only if every step happened.
set -uo pipefail
build=$(realpath "${1:-build}")
agent=$build/agent/ballast-agent
ctl=$build/agent/agentctl
work=$(mktemp -d /tmp/ballast-demo-XXXXXX)
chmod 755 "$work"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

steps=()
step() { printf '\n\033[1m== %s\033[0m\n' "$1"; }
record() { steps+=("$1|$2"); }

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
export BALLAST_BUS_ADDRESS=unix:path=$work/bus.sock

step "1. A private D-Bus system bus (this machine has no systemd as PID 1)"
dbus-daemon --config-file="$work/bus.conf" --nofork --nopidfile 2>/dev/null &
pids+=($!)
for _ in $(seq 100); do [ -S "$work/bus.sock" ] && break; sleep 0.05; done
[ -S "$work/bus.sock" ] && record "private bus" ok || record "private bus" FAILED

step "2. ballast-agent starts, as if booted from slot A"
mkdir -p "$work/root"
"$agent" --root "$work/root" --booted-slot A &
pids+=($!)
for _ in $(seq 100); do "$ctl" status >/dev/null 2>&1 && break; sleep 0.05; done
"$ctl" status >/dev/null 2>&1 && record "agent on the bus" ok || record "agent on the bus" FAILED

step "3. agentctl status"
"$ctl" status && record "agentctl status" ok || record "agentctl status" FAILED

step "4. agentctl status --json"
"$ctl" status --json && record "agentctl status --json" ok || record "agentctl status --json" FAILED

step "5. Reading is open to everyone; changing needs root (here as user nobody)"
cp "$ctl" "$work/agentctl"
setpriv --reuid=65534 --regid=65534 --clear-groups -- "$work/agentctl" log-level debug
[ $? -eq 4 ] && record "non-root change refused (exit 4)" ok || record "non-root change refused" FAILED

step "6. SIGTERM: clean stop"
kill -TERM "${pids[1]}"
wait "${pids[1]}" && record "clean stop (exit 0)" ok || record "clean stop" FAILED
"$ctl" status; [ $? -eq 3 ] && record "agentctl sees no daemon (exit 3)" ok || record "no daemon exit 3" FAILED

printf '\n\033[1m== Summary\033[0m\n'
rc=0
for s in "${steps[@]}"; do
  printf '  %-40s %s\n' "${s%%|*}" "${s##*|}"
  [ "${s##*|}" = ok ] || rc=1
done
exit $rc
