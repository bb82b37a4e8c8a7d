#!/bin/bash
# install benchmark: a 1 GiB image written into a slot by Ballast (signature check, stream with
# hashing, fsync, header last, read back and hash again; tests/tools/slot_write.cpp runs exactly
# install's and upgrade's writer) against the physical limits measured the anchors' way:
# `dd bs=4M oflag=direct conv=notrunc,fsync` into the same preallocated target plus
# `openssl dgst -sha256` of the image. Alternating, RUNS times each, warm page cache for the
# source as in the anchor. A third figure, `dd iflag=direct` reading the target back, is the
# disk's read limit: the read-back Ballast does (and dd + openssl does not) cannot be cheaper.
# Usage: tests/bench/install/run.sh BUILD_DIR
set -euo pipefail
bench_dir=$(dirname "$(realpath "$0")")
build=$(realpath "${1:-build}")
runs=${RUNS:-5}
W=${BENCH_DIR:-/var/tmp/ballast-bench}/install
mkdir -p "$W/pki" "$W/root/boot"
cd "$W"
for t in mksquashfs openssl dd hyperfine; do command -v $t >/dev/null || { echo "install bench: $t missing" >&2; exit 1; }; done
# The 1 GiB slot image and the signing PKI (tests/bench/common.sh), made once.
. "$bench_dir/../common.sh"
bench_image_and_pki
[ -d bundle ] || "$build/agent/agentctl" bundle create --image image.sqfs --version 1 --compatible bench \
  --key pki/s.key --cert pki/s.pem -o bundle >/dev/null
size=$(stat -c %s image.sqfs)
[ -s target.img ] || fallocate -l $((size + 1024 * 1024)) target.img
cat bundle/rootfs.img > /dev/null   # warm, as the anchor's dd and openssl runs were
out=$build/bench/install.txt
mkdir -p "$build/bench"; : > "$out"
for i in $(seq "$runs"); do
  s=$(date +%s%N)
  dd if=bundle/rootfs.img of=target.img bs=4M oflag=direct conv=notrunc,fsync status=none
  m=$(date +%s%N)
  openssl dgst -sha256 bundle/rootfs.img > /dev/null
  e=$(date +%s%N)
  dd if=target.img of=/dev/null bs=4M iflag=direct count=$(( (size + 4194303) / 4194304 )) status=none
  r=$(date +%s%N)
  echo "dd $(( (m - s) / 1000 )) openssl $(( (e - m) / 1000 )) readback $(( (r - e) / 1000 ))" >> "$out"
  j=$("$build/tests/slot-write" bundle pki/ca.pem target.img)
  echo "ballast $(echo "$j" | python3 -c 'import json,sys; print(int(json.load(sys.stdin)["seconds"]*1e6))')" >> "$out"
done
/usr/bin/python3 - "$out" "$size" <<'PY'
import statistics, sys
dd, ossl, rb, bal = [], [], [], []
for l in open(sys.argv[1]):
    w = l.split()
    if w[0] == "dd": dd.append(int(w[1]) / 1e6); ossl.append(int(w[3]) / 1e6); rb.append(int(w[5]) / 1e6)
    else: bal.append(int(w[1]) / 1e6)
med = statistics.median
limit = [a + b for a, b in zip(dd, ossl)]
size = int(sys.argv[2])
print(f"install: {size / 2**30:.2f} GiB image, {len(bal)} alternating runs each, median [min-max] seconds")
print(f"| {'':42} | {'seconds':>22} |")
print(f"|{'-'*44}|{'-'*24}|")
print(f"| {'dd bs=4M oflag=direct conv=notrunc,fsync':42} | {med(dd):.3f} [{min(dd):.3f}-{max(dd):.3f}] |")
print(f"| {'openssl dgst -sha256':42} | {med(ossl):.3f} [{min(ossl):.3f}-{max(ossl):.3f}] |")
print(f"| {'dd + openssl (the limit)':42} | {med(limit):.3f} [{min(limit):.3f}-{max(limit):.3f}] |")
print(f"| {'dd iflag=direct of the target (read limit)':42} | {med(rb):.3f} [{min(rb):.3f}-{max(rb):.3f}] |")
io = [a + b for a, b in zip(dd, rb)]
print(f"| {'dd write + dd read (I/O floor of read-back)':42} | {med(io):.3f} [{min(io):.3f}-{max(io):.3f}] |")
print(f"| {'ballast: verify, stream+hash, fsync, read back':42} | {med(bal):.3f} [{min(bal):.3f}-{max(bal):.3f}] |")
r = med(bal) / med(limit)
print(f"ratio ballast / (dd + openssl): {r:.2f}; goal <= 1.0: {'met' if r <= 1.0 else 'NOT met'}")
print(f"ratio ballast / (dd write + dd read): {med(bal) / med(io):.2f}")
PY
