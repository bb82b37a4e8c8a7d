#!/bin/bash
# delta benchmark (issue 17): bytes on the wire to upgrade a node from v1 to v2 of a real Debian 12
# root filesystem, Ballast's delta from an OCI registry against the floor and casync, and
# Ballast's full pull from the registry against today's https path, all in the same run.
#   Pair: v1 = mmdebstrap (the image build's options and packages.list) of bookworm's release
#     packages; v2 = the same with bookworm-updates and bookworm-security, plus jq. Each a
#     squashfs as the image build makes it (IMAGE_OPTS, default "-comp xz"). Trees are cached.
#   Floor: the files of v2 that are new or differ from v1 (content, link target), as one tar,
#     xz -9.
#   Ballast: `agentctl bundle push` of v2 (with its chunk index) to Debian's docker-registry behind
#     nginx (TLS); a node installed with v1 runs `ballast-agent upgrade oci://… --no-reboot`
#     (the daemon's job, one-shot): delta. The same bundle without an index: full from the
#     registry. The bundle's tar from the same nginx over https: today's path.
#   casync (Debian's): `casync make` of both images into a chunk store (default 64 KiB chunks,
#     then 16 KiB), `casync extract --seed=v1` of v2's index from the same nginx (plain http).
#   Wire bytes: nginx's $bytes_sent + $request_length for every request of a run (headers
#     included, TLS records not); requests: its log lines; wall: the client process.
# RAUC's adaptive mode is not in Debian 12's rauc 1.8 for squashfs slots over http here: its
# published figure (~10 % of the bundle for a one-package change) is printed for reference.
# Usage: tests/bench/delta/run.sh BUILD_DIR (work dir ${BENCH_DIR:-/var/tmp/ballast-bench}/delta;
#   RUNS=3 per client; REBUILD_TREES=1 remakes the cached trees)
set -euo pipefail
bench_dir=$(dirname "$(realpath "$0")")
top=$(realpath "$bench_dir/../../..")
build=$(realpath "${1:-build}")
runs=${RUNS:-3}
W=${BENCH_DIR:-/var/tmp/ballast-bench}/delta
agent=$build/agent/ballast-agent
ctl=$build/agent/agentctl
image_opts=${IMAGE_OPTS:--comp xz}
for t in mmdebstrap mksquashfs casync nginx docker-registry openssl xz python3 sfdisk; do
  command -v $t >/dev/null || {
    echo "delta bench: $t missing (packaging/deps.sh bench test image)" >&2; exit 1; }
done
for b in "$agent" "$ctl"; do [ -x "$b" ] || { echo "delta bench: $b missing; build first" >&2; exit 1; }; done
[ "$(id -u)" -eq 0 ] || { echo "delta bench: needs root (mmdebstrap)" >&2; exit 1; }
mkdir -p "$W/res"
cd "$W"
say() { printf 'delta bench: %s\n' "$*" >&2; }

# ---- the pair of trees (cached: each is a few minutes of downloads) ----
mapfile -t pkgs < <(sed 's/#.*//; s/[[:space:]]//g' "$top/packaging/image/packages.list" | sed '/^$/d' | sort -u)
# shellcheck disable=SC2016  # $1 is mmdebstrap's
mm_opts=(--variant=minbase --mode=root --format=tar --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
         --aptopt='APT::Install-Recommends "false"'
         --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*'
         --dpkgopt='path-include=/usr/share/locale/locale.alias'
         --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
         --customize-hook='rm -f "$1"/boot/initrd.img* "$1"/initrd.img* "$1"/var/lib/apt/lists/*_* "$1"/var/cache/apt/*.bin')
mirror=http://deb.debian.org/debian
tree() {  # name, packages (comma-separated), apt sources...
  local name=$1 inc=$2; shift 2
  [ -s "$name.tar" ] && [ -z "${REBUILD_TREES:-}" ] && return 0
  say "$name: mmdebstrap bookworm ($*)"
  INITRD=No SOURCE_DATE_EPOCH=1700000000 mmdebstrap "${mm_opts[@]}" --include="$inc" bookworm "$name.tar.tmp" \
    "$@" > "$name.log" 2>&1 || { tail -n 20 "$name.log" >&2; exit 1; }
  mv "$name.tar.tmp" "$name.tar"
}
all=$(IFS=,; echo "${pkgs[*]}")
tree v1 "$all" "deb $mirror bookworm main"
# PAIR=userland (the default, like the anchors' pair): v1's kernel held, every other pending
# update taken; PAIR=all: the kernel too (a new kernel ABI rewrites most of the image's bytes).
pair=${PAIR:-userland}
v2_pkgs="$all,jq"
if [ "$pair" = userland ]; then
  held=$(tar -xOf v1.tar ./var/lib/dpkg/status |
         awk '/^Package: linux-image-/{p=$2} /^Version:/{if (p) {printf "%s=%s,", p, $2; p=""}}')
  v2_pkgs="${held}$(printf '%s\n' "${pkgs[@]}" | grep -vx linux-image-amd64 | paste -sd,),jq"
fi
tree "v2-$pair" "$v2_pkgs" "deb $mirror bookworm bookworm-updates main" \
  "deb http://deb.debian.org/debian-security bookworm-security main"
rm -f v2.tar; ln -s "v2-$pair.tar" v2.tar
for v in v1 v2; do
  # The floor below compares the extracted trees: they must be there too.
  if [ ! -s "$v.sqfs" ] || [ ! -d "$v.root/etc" ] ||
     [ "$(cat "$v.opts" 2>/dev/null)" != "$image_opts $(readlink -f "$v.tar")" ]; then
    rm -rf "$v.root"; mkdir "$v.root"
    tar -xpf "$v.tar" -C "$v.root" --numeric-owner
    mkdir -p "$v.root/boot"
    [ -e "$v.root/boot/vmlinuz" ] ||
      ln -sf "$(find "$v.root/boot" -name 'vmlinuz-*' -printf '%f\n' | sort | head -n1)" "$v.root/boot/vmlinuz"
    [ -e "$v.root/boot/initrd.img" ] || echo "initrd stand-in: the bench does not boot" > "$v.root/boot/initrd.img"
    echo "${v#v}" > "$v.root/etc/image-version"
    touch -d @1700000000 "$v.root/etc/image-version"  # a reproducible floor
    # shellcheck disable=SC2086  # options are words
    mksquashfs "$v.root" "$v.sqfs" $image_opts -noappend -no-progress -quiet
    echo "$image_opts $(readlink -f "$v.tar")" > "$v.opts"
  fi
done

# ---- the floor: v2's new and changed files, one tar, xz -9 ----
python3 "$bench_dir/changed.py" v1.root v2.root > changed.list
changed_files=$(wc -l < changed.list)
tar -C v2.root --no-recursion -cf - -T changed.list | xz -9 -T1 > floor.tar.xz
floor=$(stat -c %s floor.tar.xz)
changed_raw=$(python3 -c 'import os,sys; print(sum(os.lstat(os.path.join("v2.root", l.rstrip("\n"))).st_size for l in open("changed.list")))')
say "floor: $changed_files files, $changed_raw bytes raw, $floor bytes xz -9"

# ---- PKI, bundles ----
# shellcheck source=tests/bench/common.sh
. "$bench_dir/../common.sh"
bench_pki
if [ ! -s pki/server.pem ]; then
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=127.0.0.1" \
    -keyout pki/server.key -out pki/server.csr 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\n' > pki/server.ext
  openssl x509 -req -in pki/server.csr -CA pki/ca.pem -CAkey pki/ca.key -CAcreateserial -days 3650 \
    -extfile pki/server.ext -out pki/server.pem 2>/dev/null
fi
rm -rf www; mkdir -p www
for v in 1 2; do
  "$ctl" bundle create --image "v$v.sqfs" --version "$v" --compatible bench --key pki/s.key --cert pki/s.pem \
    --output "www/v$v.tar" > /dev/null
done
"$ctl" bundle create --image v2.sqfs --version 2 --compatible bench --key pki/s.key --cert pki/s.pem \
  --output www/v2-noindex.tar --no-index > /dev/null
image_size=$(stat -c %s v2.sqfs)
index_size=$(tar -tvf www/v2.tar | awk '$NF == "rootfs.bcidx" {print $3}')

# ---- casync stores and indexes (made before the clock runs, as a publisher would) ----
for cs in 64 16; do
  rm -rf "www/store$cs"
  casync make --store="www/store$cs" --chunk-size=$((cs * 1024)) "www/v2-$cs.caibx" v2.sqfs > /dev/null
done

# ---- servers: docker-registry (http, loopback) behind nginx (TLS for the registry and the tar,
# plain http for casync) ----
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
reg_port=$(port); tls_port=$(port); http_port=$(port)
rm -rf registry; mkdir -p registry
cat > registry/config.yml <<YML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $W/registry/data
http:
  addr: 127.0.0.1:$reg_port
YML
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
docker-registry serve registry/config.yml > registry/log 2>&1 &
pids+=($!)
mkdir -p nginx/tmp
cat > nginx/nginx.conf <<NGINX
daemon off;
pid $W/nginx/nginx.pid;
error_log $W/nginx/error.log;
worker_processes 1;
events { worker_connections 256; }
http {
  log_format wire '\$request_method \$uri \$status \$bytes_sent \$request_length';
  access_log $W/nginx/access.log wire;
  client_body_temp_path $W/nginx/tmp; proxy_temp_path $W/nginx/tmp;
  fastcgi_temp_path $W/nginx/tmp; uwsgi_temp_path $W/nginx/tmp; scgi_temp_path $W/nginx/tmp;
  sendfile on;
  server {
    listen 127.0.0.1:$tls_port ssl;
    ssl_certificate $W/pki/server.pem; ssl_certificate_key $W/pki/server.key;
    client_max_body_size 0;
    location /v2/ {
      proxy_pass http://127.0.0.1:$reg_port; proxy_http_version 1.1;
      proxy_set_header Host \$http_host; proxy_set_header X-Forwarded-Proto https;
      # Uploads stream through; downloads are buffered in memory (unbuffered proxying of a
      # blob cost 0.24 s per 137 MB here, which is not the registry's cost).
      proxy_request_buffering off; proxy_buffering on; proxy_buffers 32 1m;
      proxy_busy_buffers_size 2m; proxy_max_temp_file_size 0;
    }
    location /files/ { alias $W/www/; }
  }
  server {
    listen 127.0.0.1:$http_port;
    location /files/ { alias $W/www/; }
  }
}
NGINX
nginx -c "$W/nginx/nginx.conf" &
pids+=($!)
for p in $reg_port $tls_port $http_port; do
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/"$p") 2>/dev/null && break; sleep 0.1; done
done
reg=127.0.0.1:$tls_port
"$ctl" bundle push www/v2.tar "$reg/bench/os:2" --ca-file pki/ca.pem > /dev/null
"$ctl" bundle push www/v2-noindex.tar "$reg/bench/os:2-noindex" --ca-file pki/ca.pem > /dev/null

# ---- the node: installed with v1, restored before each run ----
slot_mib=$(( image_size / 1048576 + 64 ))
rm -f disk.img; truncate -s $(( 2 * slot_mib + 600 ))M disk.img
"$ctl" install --device disk.img --bundle www/v1.tar --keyring pki/ca.pem --slot-size "$slot_mib" --no-reboot \
  > install.log 2>&1
cp --sparse=always disk.img disk.pristine
rm -rf node; mkdir -p node/etc/ballast
printf 'update:\n  compatible: bench\nhttp:\n  ca_file: %s/pki/ca.pem\n' "$W" > node/etc/ballast/agent.yaml
cp pki/ca.pem node/etc/ballast/keyring.pem

# One measured run: the command's wall time, and nginx's log lines it caused.
measure() {  # name, command...
  local name=$1; shift
  : > nginx/access.log; kill -USR1 "$(cat nginx/nginx.pid)"; sleep 0.3
  local t0 t1; t0=$(date +%s.%N)
  "$@" > "res/$name.out" 2> "res/$name.err" || { echo "delta bench: $name failed:" >&2; tail "res/$name.err" >&2; exit 1; }
  t1=$(date +%s.%N)
  sleep 0.3
  python3 - "$name" "$t0" "$t1" <<'PY' >> res/runs.jsonl
import json, sys
name, t0, t1 = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
lines = [l.split() for l in open("nginx/access.log") if l.strip()]
print(json.dumps({"name": name, "seconds": round(t1 - t0, 3), "requests": len(lines),
                  "wire": sum(int(l[3]) + int(l[4]) for l in lines),
                  "body_status": sorted({l[2] for l in lines})}))
PY
}
# (Called in `measure`'s `||` list, where set -e does not hold: each step checks itself.)
upgrade_from() {  # source
  cp --sparse=always disk.pristine disk.img || return 1
  rm -rf node/var || return 1
  "$agent" --root node --disk disk.img --booted-slot A --config node/etc/ballast/agent.yaml \
    upgrade "$1" --no-reboot --json
}
casync_from() {  # chunk KiB
  rm -f out.img || return 1
  casync extract --store="http://127.0.0.1:$http_port/files/store$1/" --seed=v1.sqfs \
    "http://127.0.0.1:$http_port/files/v2-$1.caibx" out.img || return 1
  cmp -s out.img v2.sqfs
}
: > res/runs.jsonl
for ((i = 0; i < runs; i++)); do
  say "run $((i + 1)) of $runs"
  measure ballast-delta upgrade_from "oci://$reg/bench/os:2"
  measure ballast-full upgrade_from "oci://$reg/bench/os:2-noindex"
  measure https-full upgrade_from "https://$reg/files/v2.tar"
  measure casync-64k casync_from 64
  measure casync-16k casync_from 16
done
python3 "$bench_dir/summarize.py" res/runs.jsonl "$floor" "$image_size" "$index_size" "$changed_files" "$changed_raw" \
  | tee res/summary.txt
