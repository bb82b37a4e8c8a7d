#!/bin/bash
# config-apply benchmark: the same cloud-config applied by Ballast and by cloud-init 22.4
# (Debian's, in its fastest honest mode: one `cloud-init init` process), each run a first boot
# in a fresh throw-away root, alternating, RUNS times each. Reports medians, the ratio and
# Ballast's peak RSS. Usage: tests/bench/config-apply/run.sh BUILD_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(realpath "${1:-build}")
runs=${RUNS:-7}
for t in cloud-init ssh-keygen unshare bc /usr/bin/time; do
  command -v "$t" >/dev/null || { echo "config-apply: $t missing (make bench installs it)" >&2; exit 1; }
done
cfg=$(mktemp -d /tmp/ballast-cfgbench-XXXXXX)
trap 'rm -rf "$cfg"' EXIT
bash "$here/gen_config.sh" "$cfg"
export BALLAST_AGENT=$build/agent/ballast-agent
out=$build/bench/config-apply.txt
mkdir -p "$build/bench"
: >"$out"
for i in $(seq "$runs"); do
  for mode in cloud-init ballast ballast-boot; do
    echo "$mode $("$here/testroot.sh" "$cfg" "$mode")" >>"$out"
  done
done
/usr/bin/python3 - "$out" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    mode, el, us, sy, rss, rc, ok = line.split()
    rows.setdefault(mode, []).append((float(el), float(us) + float(sy), int(rss), ok))
def med(mode, i): return statistics.median(r[i] for r in rows[mode])
def rng(mode, i): return min(r[i] for r in rows[mode]), max(r[i] for r in rows[mode])
print(f"config-apply: {len(rows['ballast'])} alternating first boots each, median [min-max]")
print(f"| {'mode':34} | {'wall (ms)':>20} | {'cpu (ms)':>9} | {'peak RSS (MiB)':>14} | verified |")
print(f"|{'-'*36}|{'-'*22}|{'-'*11}|{'-'*16}|----------|")
for mode, label in [("cloud-init", "cloud-init 22.4 (init, one process)"),
                    ("ballast", "ballast: same file, initramfs+boot"),
                    ("ballast-boot", "ballast: stage boot, yip form+sysctl")]:
    lo, hi = rng(mode, 0)
    ok = sum(r[3] == "ok" for r in rows[mode])
    print(f"| {label:34} | {med(mode,0)*1000:7.1f} [{lo*1000:.0f}-{hi*1000:.0f}] | {med(mode,1)*1000:9.0f} | {med(mode,2)/1024:14.1f} | {ok}/{len(rows[mode])} |")
for mode, what in [("ballast", "same file, both stages"), ("ballast-boot", "stage boot")]:
    ratio = med("cloud-init", 0) / med(mode, 0)
    print(f"ratio cloud-init / ballast ({what}, wall): {ratio:.1f}x; goal >= 20x: {'met' if ratio >= 20 else 'NOT met'}")
if any(r[3] != "ok" for rs in rows.values() for r in rs):
    print("SOME RUNS FAILED VERIFICATION"); sys.exit(1)
PY
