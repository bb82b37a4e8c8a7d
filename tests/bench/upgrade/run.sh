#!/bin/bash
# upgrade benchmark: a full A/B upgrade of a 1 GiB image, Ballast against RAUC, alternating in
# the same run, RUNS times each after one warm-up of each (the warm-up writes the targets' fresh
# extents; it is checked but not counted).
#   RAUC 1.8 (Debian's): `rauc install` of a plain bundle into a file-backed raw slot, with
#     `rauc service` (which does the work) on a private D-Bus system bus, booted slot pinned to A,
#     bootloader=custom (state in files), as ../shared/anchors/rauc_setup.sh and rauc_bench.sh do.
#   Ballast: `ballast-agent upgrade BUNDLE --json`, the one-shot mode the daemon runs as its upgrade
#     job, on a disk image made once by `agentctl install`: checks, target marked bad, journal,
#     stream + hash + O_DIRECT write, fsync, header last, read-back compare, stages, activation.
#     Before each run the ESP (boot control) is restored from a copy taken after the install and
#     the journal removed, so every run starts from the same state (A booted and good, B free).
# Per run: wall time of the process the benchmark starts (rauc install / ballast-agent upgrade);
# bytes written and read (/proc/PID/io of rauc service, before/after; wait4() rusage of
# ballast-agent: ru_oublock is write_bytes/512); peak RssAnon (sampled every 10 ms) and VmHWM
# (rauc service: reset with clear_refs before each install; ballast-agent: ru_maxrss).
# Source bundles are in the page cache for both, as in the anchor.
# Usage: tests/bench/upgrade/run.sh BUILD_DIR   (RUNS=5; work dir ${BENCH_DIR:-/var/tmp/ballast-bench}/upgrade)
set -euo pipefail
bench_dir=$(dirname "$(realpath "$0")")
build=$(realpath "${1:-build}")
runs=${RUNS:-5}
W=${BENCH_DIR:-/var/tmp/ballast-bench}/upgrade
agent=${AGENT:-$build/agent/ballast-agent}   # AGENT=, AGENTCTL= measure other binaries (e.g. a copy)
ctl=${AGENTCTL:-$build/agent/agentctl}
for t in rauc mksquashfs openssl dbus-daemon dbus-send sfdisk python3 dd cmp; do
  command -v $t >/dev/null || {
    echo "upgrade bench: $t missing (packaging/deps.sh bench test installs rauc, squashfs-tools, dbus, fdisk)" >&2; exit 1; }
done
for b in "$agent" "$ctl"; do [ -x "$b" ] || { echo "upgrade bench: $b missing; build first" >&2; exit 1; }; done
[ "$(id -u)" -eq 0 ] || { echo "upgrade bench: needs root (rauc mounts its bundle on a loop device)" >&2; exit 1; }
mkdir -p "$W/pki" "$W/root/boot" "$W/res"
cd "$W"
rm -f res/*.json res/*.err

# ---- the 1 GiB slot image and the signing PKI (tests/bench/common.sh), made once ----
. "$bench_dir/../common.sh"
bench_image_and_pki
size=$(stat -c %s image.sqfs)

# ---- Ballast: bundle 1 (installed) and bundle 2 (the upgrade), a disk installed once ----
for v in 1 2; do
  [ -d bundle-$v ] || "$ctl" bundle create --image image.sqfs --version $v --compatible bench \
    --key pki/s.key --cert pki/s.pem -o bundle-$v >/dev/null
done
rm -f disk.img
truncate -s 2560M disk.img   # sparse; slots of 1100 MiB >= the image
"$ctl" install --device disk.img --bundle bundle-1 --keyring pki/ca.pem --slot-size 1100 --no-reboot > install.log 2>&1
rm -rf node; mkdir -p node/etc/ballast
printf 'update:\n  compatible: bench\n' > node/etc/ballast/agent.yaml
cp pki/ca.pem node/etc/ballast/keyring.pem
read -r esp_start esp_size b_start < <(sfdisk -J disk.img | python3 -c '
import json, sys
p = {x["name"]: x for x in json.load(sys.stdin)["partitiontable"]["partitions"]}
print(p["BALLAST_EFI"]["start"] * 512, p["BALLAST_EFI"]["size"] * 512, p["BALLAST_B"]["start"] * 512)')
dd if=disk.img of=esp.pristine bs=1M skip="$esp_start" count="$esp_size" iflag=skip_bytes,count_bytes status=none

# ---- RAUC, as ../shared/anchors/rauc_setup.sh: test CA, plain bundle, file slots, custom bootloader ----
R=$W/rauc
mkdir -p "$R"/{pki,content,bundles,slots,state,mnt,dbus}
if [ ! -s "$R/pki/signer.cert.pem" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$R/pki/ca.key.pem" -out "$R/pki/ca.cert.pem" -days 3650 -subj "/O=Anchor Test/CN=Anchor Test CA" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$R/pki/signer.key.pem" -out "$R/pki/signer.csr" -subj "/O=Anchor Test/CN=Anchor Test Signer" 2>/dev/null
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n' > "$R/pki/signer.ext"
  openssl x509 -req -in "$R/pki/signer.csr" -CA "$R/pki/ca.cert.pem" -CAkey "$R/pki/ca.key.pem" -CAcreateserial \
    -days 3650 -extfile "$R/pki/signer.ext" -out "$R/pki/signer.cert.pem" 2>/dev/null
  rm -f "$R/bundles/plain.raucb"
fi
cp "$R/pki/ca.cert.pem" "$R/pki/keyring.pem"
if [ ! -s "$R/bundles/plain.raucb" ] || [ image.sqfs -nt "$R/bundles/plain.raucb" ]; then
  rm -rf "$R/content"; mkdir -p "$R/content"; ln -f image.sqfs "$R/content/rootfs.img"
  printf '[update]\ncompatible=bench\nversion=2\n\n[bundle]\nformat=plain\n\n[image.rootfs]\nfilename=rootfs.img\n' \
    > "$R/content/manifest.raucm"
  rm -f "$R/bundles/plain.raucb"
  rauc bundle --cert="$R/pki/signer.cert.pem" --key="$R/pki/signer.key.pem" --keyring="$R/pki/keyring.pem" \
    "$R/content" "$R/bundles/plain.raucb" > "$R/bundle.log" 2>&1
fi
for s in 0 1; do   # preallocated like the anchor's; sized for the image (1 GiB + squashfs overhead)
  [ "$(stat -c %s "$R/slots/rootfs.$s.img" 2>/dev/null || echo 0)" -ge "$size" ] ||
    { rm -f "$R/slots/rootfs.$s.img"; fallocate -l $((size + 1024 * 1024)) "$R/slots/rootfs.$s.img"; }
done
cat > "$R/custom-bootloader.sh" <<EOF
#!/bin/sh
# RAUC custom bootloader backend (as the anchor's): state in small text files
ST=$R/state/bootloader
mkdir -p "\$ST"
case "\$1" in
  get-primary) cat "\$ST/primary" 2>/dev/null || echo A ;;
  set-primary) echo "\$2" > "\$ST/primary"; echo good > "\$ST/state.\$2" ;;
  get-state)   cat "\$ST/state.\$2" 2>/dev/null || echo good ;;
  set-state)   echo "\$3" > "\$ST/state.\$2" ;;
  *) echo "unknown: \$*" >&2; exit 1 ;;
esac
EOF
chmod 0755 "$R/custom-bootloader.sh"
cat > "$R/system.conf" <<EOF
[system]
compatible=bench
bootloader=custom
mountprefix=$R/mnt
data-directory=$R/state
bundle-formats=plain

[keyring]
path=$R/pki/keyring.pem

[handlers]
bootloader-custom-backend=$R/custom-bootloader.sh

[slot.rootfs.0]
device=$R/slots/rootfs.0.img
type=raw
bootname=A

[slot.rootfs.1]
device=$R/slots/rootfs.1.img
type=raw
bootname=B
EOF
cat > "$R/dbus/system-bus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$R/dbus/system_bus_socket</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/><allow own="*"/><allow send_type="method_call"/>
    <allow send_destination="*"/><allow receive_sender="*"/>
  </policy>
</busconfig>
EOF
export DBUS_SYSTEM_BUS_ADDRESS=unix:path=$R/dbus/system_bus_socket
bus_pid=; svc_pid=
cleanup() {
  [ -n "$svc_pid" ] && kill "$svc_pid" 2>/dev/null && wait "$svc_pid" 2>/dev/null
  [ -n "$bus_pid" ] && kill "$bus_pid" 2>/dev/null && wait "$bus_pid" 2>/dev/null
  return 0
}
trap cleanup EXIT
rm -f "$R/dbus/system_bus_socket"
dbus-daemon --config-file="$R/dbus/system-bus.conf" --nofork --nopidfile >/dev/null 2>"$R/dbus/daemon.err" &
bus_pid=$!
for _ in $(seq 100); do [ -S "$R/dbus/system_bus_socket" ] && break; sleep 0.05; done
rauc -c "$R/system.conf" --mount="$R/mnt" service --override-boot-slot=A > "$R/service.log" 2>&1 &
svc_pid=$!
for _ in $(seq 200); do
  dbus-send --system --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
    org.freedesktop.DBus.NameHasOwner string:de.pengutronix.rauc 2>/dev/null | grep -q 'boolean true' && break
  sleep 0.05
done
kill -0 "$svc_pid" 2>/dev/null || { echo "upgrade bench: rauc service died:" >&2; cat "$R/service.log" >&2; exit 1; }

# ---- the measuring helper: runs CMD, timestamps its output lines, samples memory ----
# measure.py OUT.json WATCH -- CMD...; WATCH is "child" or the PID of the process doing the work.
cat > measure.py <<'PY'
import json, os, subprocess, sys, threading, time
out, watch, cmd = sys.argv[1], sys.argv[2], sys.argv[4:]
other = None if watch == "child" else int(watch)
def status(pid):
    d = {}
    try:
        for l in open(f"/proc/{pid}/status"):
            k, _, v = l.partition(":")
            if k in ("RssAnon", "RssFile", "VmRSS", "VmHWM"): d[k] = int(v.split()[0])
    except OSError: pass
    return d
def io(pid):
    with open(f"/proc/{pid}/io") as f: return {k: int(v) for k, v in (l.split(": ") for l in f)}
def cpu(pid):
    with open(f"/proc/{pid}/stat") as f: w = f.read().rsplit(")", 1)[1].split()
    return int(w[11]) / os.sysconf("SC_CLK_TCK"), int(w[12]) / os.sysconf("SC_CLK_TCK")
if other:
    io0, cpu0 = io(other), cpu(other)
    with open(f"/proc/{other}/clear_refs", "w") as f: f.write("5")   # resets VmHWM
lines, done = [], threading.Event()
t0 = time.monotonic()
p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
res = {}
def reader():
    for l in p.stdout: lines.append([round(time.monotonic() - t0, 4), l.rstrip("\n")])
def waiter():
    _, st, ru = os.wait4(p.pid, 0)
    res.update(wall=time.monotonic() - t0, rc=os.waitstatus_to_exitcode(st), ru=ru)
    done.set()
threads = [threading.Thread(target=reader), threading.Thread(target=waiter)]
for t in threads: t.start()
peak, pid = {}, other or p.pid
while not done.is_set():
    for k, v in status(pid).items(): peak[k] = max(peak.get(k, 0), v)
    done.wait(0.01)
for t in threads: t.join()
p.returncode = res["rc"]
ru = res["ru"]
r = {"cmd": cmd, "wall": res["wall"], "rc": res["rc"], "lines": lines,
     "peak_rss_anon_kb": peak.get("RssAnon", 0), "peak_rss_file_kb": peak.get("RssFile", 0)}
if other:
    io1, cpu1, st = io(other), cpu(other), status(other)
    r.update(write_bytes=io1["write_bytes"] - io0["write_bytes"], read_bytes=io1["read_bytes"] - io0["read_bytes"],
             hwm_kb=st.get("VmHWM", 0), user=cpu1[0] - cpu0[0], sys=cpu1[1] - cpu0[1],
             client_maxrss_kb=ru.ru_maxrss, client_write_bytes=ru.ru_oublock * 512)
else:
    r.update(write_bytes=ru.ru_oublock * 512, read_bytes=ru.ru_inblock * 512, hwm_kb=ru.ru_maxrss,
             user=ru.ru_utime, sys=ru.ru_stime)
json.dump(r, open(out, "w"))
PY

bundle=$W/bundle-2
run_rauc() {  # $1 = run index
  rm -rf "$R/state/bootloader"   # A primary and good, as before every run
  cat "$R/bundles/plain.raucb" > /dev/null; sync
  python3 measure.py "res/rauc-$1.json" "$svc_pid" -- rauc install "$R/bundles/plain.raucb" 2> "res/rauc-$1.err"
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); sys.exit(r["rc"])' "res/rauc-$1.json" ||
    { echo "upgrade bench: rauc install failed (run $1):" >&2; tail -n 20 "$R/service.log" >&2; exit 1; }
}
run_ballast() {  # $1 = run index
  dd if=esp.pristine of=disk.img bs=1M seek="$esp_start" oflag=seek_bytes conv=notrunc status=none
  rm -f node/var/lib/ballast/upgrade.json
  cat "$bundle/rootfs.img" > /dev/null; sync
  python3 measure.py "res/ballast-$1.json" child -- "$agent" --root "$W/node" --disk "$W/disk.img" --booted-slot A \
    --config "$W/node/etc/ballast/agent.yaml" upgrade "$bundle" --no-reboot --json 2> "res/ballast-$1.err"
  python3 - "res/ballast-$1.json" <<'PY' || { echo "upgrade bench: ballast upgrade failed (run $1)" >&2; exit 1; }
import json, sys
r = json.load(open(sys.argv[1]))
last = json.loads(r["lines"][-1][1]) if r["lines"] else {}
if r["rc"] != 0 or last.get("ok") is not True or last.get("target") != "B":
    print(f"rc {r['rc']}, last line: {r['lines'][-1][1] if r['lines'] else '(none)'}", file=sys.stderr); sys.exit(1)
PY
}
load0=$(cut -d' ' -f1-3 /proc/loadavg)   # figures from a loaded machine are not worth quoting
for i in $(seq 0 "$runs"); do   # run 0 is the warm-up of each
  if [ $((i % 2)) -eq 0 ]; then run_ballast "$i"; run_rauc "$i"; else run_rauc "$i"; run_ballast "$i"; fi
  if [ "$i" -eq 0 ]; then   # both targets hold the image (outside the timings)
    cmp -n "$size" "$R/slots/rootfs.1.img" image.sqfs
    cmp -n "$size" <(dd if=disk.img bs=4M skip="$b_start" count="$size" iflag=skip_bytes,count_bytes status=none) image.sqfs
  fi
done

out=$build/bench/upgrade.txt
mkdir -p "$build/bench"
python3 - "$W/res" "$runs" "$size" "$load0 / $(cut -d' ' -f1-3 /proc/loadavg)" <<'PY' | tee "$out"
import json, os, statistics, sys
d, runs, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
load = lambda n: [json.load(open(f"{d}/{n}-{i}.json")) for i in range(1, runs + 1)]
rauc, bal = load("rauc"), load("ballast")
med = statistics.median
def col(rs, f):
    v = [f(r) for r in rs]
    return v, med(v)
def cell(rs, f, fmt):
    v, m = col(rs, f)
    return f"{fmt(m)} [{fmt(min(v))}-{fmt(max(v))}]"
s3 = lambda x: f"{x:.3f}"
mib = lambda x: f"{x / 2**20:.1f}"
kb = lambda x: f"{x:.0f}"
print(f"upgrade: {size / 2**30:.2f} GiB image, {runs} alternating runs each (after one warm-up), median [min-max]")
print(f"load average before / after the runs: {sys.argv[4]} ({os.cpu_count()} CPUs)")
rows = [
    ("wall seconds (the command)", lambda r: r["wall"], s3),
    ("CPU seconds (user+sys, the worker)", lambda r: r["user"] + r["sys"], s3),
    ("bytes written, MiB (the worker)", lambda r: r["write_bytes"], mib),
    ("read_bytes, MiB (rauc: its loop device)", lambda r: r["read_bytes"], mib),
    ("peak RssAnon, kB (sampled every 10 ms)", lambda r: r["peak_rss_anon_kb"], kb),
    ("VmHWM (peak RSS incl. file maps), kB", lambda r: r["hwm_kb"], kb),
]
print(f"| {'':40} | {'rauc install (rauc service)':>27} | {'ballast-agent upgrade':>27} |")
print(f"|{'-'*42}|{'-'*29}|{'-'*29}|")
for name, f, fmt in rows:
    print(f"| {name:40} | {cell(rauc, f, fmt):>27} | {cell(bal, f, fmt):>27} |")
rm, bm = med([r["wall"] for r in rauc]), med([r["wall"] for r in bal])
ratio = bm / rm
print(f"ratio ballast / rauc (median wall): {ratio:.2f}; goal <= 0.4: {'met' if ratio <= 0.4 else 'NOT met'}")
pairs = [b["wall"] / r["wall"] for r, b in zip(rauc, bal)]
print(f"ratio per alternating pair: median {med(pairs):.2f} [{min(pairs):.2f}-{max(pairs):.2f}]")
print(f"image {size} bytes = {size / 2**20:.1f} MiB; written beyond it: rauc "
      f"{(med([r['write_bytes'] for r in rauc]) - size) / 2**10:.0f} KiB, ballast "
      f"{(med([r['write_bytes'] for r in bal]) - size) / 2**10:.0f} KiB (medians)")
print(f"rauc install client itself: peak RSS {med([r['client_maxrss_kb'] for r in rauc]):.0f} kB")

# Ballast's phases from the timestamps of its JSON progress lines (seconds from exec).
def phases(r):
    ev = [(t, json.loads(l)) for t, l in r["lines"] if l.startswith("{")]
    first = lambda ph: min(t for t, j in ev if j.get("progress", {}).get("phase") == ph)
    last_done = lambda ph: min(t for t, j in ev if j.get("progress", {}).get("phase") == ph
                               and j["progress"]["done"] == j["progress"]["total"])
    end = max(t for t, j in ev if "ok" in j)
    return {"exec -> checking": first("checking"),
            "checks (signature, manifest, stage, mark B bad, journal), first 4 MiB": first("writing") - first("checking"),
            "stream + hash + O_DIRECT write + read-back, to the last write": last_done("writing") - first("writing"),
            "read-back tail, written -> verified": last_done("verifying") - last_done("writing"),
            "fdatasync, header, after-upgrade stage, activate, journal": end - last_done("verifying"),
            "report -> exit": r["wall"] - end}
ph = [phases(r) for r in bal]
print("ballast phases (from its progress lines), median seconds:")
for k in ph[0]:
    print(f"  {k:70} {med([p[k] for p in ph]):.3f}")
# RAUC's phases from the client's progress lines (D-Bus Progress), seconds from exec.
def rphases(r):
    t = lambda s: min((x for x, l in r["lines"] if s in l), default=float("nan"))
    return {"exec -> service starts the install": t("% Installing"),
            "signature (one SHA-256 pass over the whole bundle)": t("Verifying signature done") - t("Verifying signature"),
            "manifest, loop mount, mark B bad -> copy starts": t("Copying image to") - t("Verifying signature done"),
            "copy (8 KiB splice, page cache) + fsync": t("Copying image to rootfs.1 done") - t("Copying image to"),
            "mark B bootable (custom backend), status, unmount": t("Installing done") - t("Copying image to rootfs.1 done"),
            "done -> exit": r["wall"] - t("Installing done")}
rp = [rphases(r) for r in rauc]
print("rauc phases (from the client's progress lines), median seconds:")
for k in rp[0]:
    print(f"  {k:70} {med([p[k] for p in rp]):.3f}")
PY
