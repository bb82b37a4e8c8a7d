#!/bin/bash
# TPM2 unlock benchmark (issue 6): opening a LUKS2 image through its TPM2 token, Ballast against
# systemd 252's own code, on the same token and the same swtpm, alternating in the same run.
#   Ballast: `ballast-agent unlock --device IMG --tpm2-device TCTI --json` (the boot-time unlock
#     minus the dm table load: name unset, the key is only checked against its keyslot).
#   systemd 252: plugin_open.c, which calls crypt_activate_by_token_pin(cd, NULL, "systemd-tpm2",
#     token, NULL, 0, &params, 0) with v252's params {UINT32_MAX, TCTI, NULL}: libcryptsetup loads
#     Debian 12's libcryptsetup-token-systemd-tpm2.so, the code systemd-cryptsetup's token path
#     runs; it unseals and the keyslot is checked the same way (name NULL: no dm either).
# One process per unlock for both, as at boot. swtpm on TCP (no resource manager), PCR 7
# extended, a 32 MiB LUKS2 image (pbkdf2, 1000 iterations) with one PIN-less token enrolled by
# `agentctl encrypt enroll` (PCR 7, sha256). Measuring in measure.py: wall and CPU per unlock,
# the TPM's handles after each unlock, 4 unlocks in a row without flushing, and the TPM commands
# per unlock counted from outside with tpm2-tss's pcap TCTI (pcap_count.py).
# SIGNED=1: the token also binds PCR 11 through a signed policy (tpm2_pubkey, as
#   systemd-cryptenroll --tpm2-public-key makes it), PCR 11 extended as systemd-stub 252 measures
#   the UKI of tests/data/pcr-signature, and both sides given its .pcrsig (enter-initrd).
# Usage: tests/bench/unlock/run.sh BUILD_DIR   (RUNS=100, about 15 s; work dir ${BENCH_DIR:-/var/tmp/ballast-bench}/unlock;
#   results in ${OUT:-BUILD_DIR/bench/unlock.txt}, or unlock-signed.txt with SIGNED=1)
set -euo pipefail
here=$(dirname "$(realpath "$0")")
build=$(realpath "${1:-build}")
runs=${RUNS:-100}
W=${BENCH_DIR:-/var/tmp/ballast-bench}/unlock
signed=${SIGNED:-0}
suffix=
[ "$signed" != 1 ] || suffix=-signed
out=${OUT:-$build/bench/unlock$suffix.txt}
pcrsig_dir=$here/../../data/pcr-signature
agent=${AGENT:-$build/agent/ballast-agent}
ctl=${AGENTCTL:-$build/agent/agentctl}
plugin_so=/usr/lib/x86_64-linux-gnu/cryptsetup/libcryptsetup-token-systemd-tpm2.so
for t in swtpm tpm2_pcrextend tpm2_getcap tpm2_flushcontext cryptsetup gcc pkg-config python3; do
  command -v $t >/dev/null || {
    echo "unlock bench: $t missing (packaging/deps.sh test bench installs swtpm, tpm2-tools, cryptsetup-bin, gcc)" >&2; exit 1; }
done
pkg-config --exists libcryptsetup || { echo "unlock bench: libcryptsetup-dev missing" >&2; exit 1; }
[ -e "$plugin_so" ] || { echo "unlock bench: $plugin_so missing (Debian's systemd package)" >&2; exit 1; }
[ -e /usr/lib/x86_64-linux-gnu/libtss2-tcti-pcap.so.0 ] || { echo "unlock bench: libtss2-tcti-pcap0 missing" >&2; exit 1; }
for b in "$agent" "$ctl"; do [ -x "$b" ] || { echo "unlock bench: $b missing; build first" >&2; exit 1; }; done
rm -rf "$W"; mkdir -p "$W/swtpm" "$W/bin"
cd "$W"
# shellcheck disable=SC2046  # pkg-config's flags are meant to be split
gcc -O2 -Wall -o bin/plugin_open "$here/plugin_open.c" $(pkg-config --cflags --libs libcryptsetup)

# ---- swtpm on two consecutive free TCP ports (the swtpm TCTI uses port + 1 for control) ----
port=$(python3 -c '
import socket
for _ in range(50):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]
    try:
        with socket.socket() as a, socket.socket() as b:
            a.bind(("127.0.0.1", p)); b.bind(("127.0.0.1", p + 1))
        print(p); break
    except OSError: pass')
swtpm_pid=
cleanup() { [ -n "$swtpm_pid" ] && kill "$swtpm_pid" 2>/dev/null && wait "$swtpm_pid" 2>/dev/null; return 0; }
trap cleanup EXIT
swtpm socket --tpm2 --tpmstate dir="$W/swtpm" --server type=tcp,port="$port",bindaddr=127.0.0.1 \
  --ctrl type=tcp,port=$((port + 1)),bindaddr=127.0.0.1 --flags not-need-init,startup-clear \
  >/dev/null 2>"$W/swtpm.err" &
swtpm_pid=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.05; done
tcti="swtpm:host=127.0.0.1,port=$port"
export TPM2TOOLS_TCTI=$tcti
# All-zero PCRs read as "uninitialized" to systemd: measure something first.
tpm2_pcrextend 7:sha256="$(printf 'a%.0s' {1..64})"

# ---- the image and its token ----
truncate -s 32M img
printf '%s' 'correct horse battery staple' > passphrase
cryptsetup luksFormat --batch-mode --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
  --key-file passphrase img
signature=
signed_args=()
if [ "$signed" = 1 ]; then
  # The UKI's sections, measured into PCR 11 as systemd-stub 252 does, then enter-initrd.
  "$ctl" uki build --linux "$pcrsig_dir/linux" --initrd "$pcrsig_dir/initrd" \
    --cmdline "$pcrsig_dir/cmdline" --os-release "$pcrsig_dir/osrel" \
    --pcr-private-key "$pcrsig_dir/private.pem" --pcr-public-key "$pcrsig_dir/public.pem" -o uki.efi >/dev/null
  objcopy -O binary --only-section .pcrsig uki.efi pcrsig.json
  signature=$W/pcrsig.json
  for s in linux osrel cmdline initrd public.pem; do
    name=.$s; [ "$s" = public.pem ] && name=.pcrpkey
    tpm2_pcrextend 11:sha256="$(printf '%s\0' "$name" | sha256sum | cut -d' ' -f1)"
    tpm2_pcrextend 11:sha256="$(sha256sum < "$pcrsig_dir/$s" | cut -d' ' -f1)"
  done
  tpm2_pcrextend 11:sha256="$(printf 'enter-initrd' | sha256sum | cut -d' ' -f1)"
  signed_args=(--tpm2-public-key "$pcrsig_dir/public.pem" --tpm2-signature "$signature")
fi
env -u PIN -u NEWPIN -u PASSWORD "$ctl" --json encrypt enroll --device img --tpm2-device "$tcti" \
  --pcrs 7 --pcr-bank sha256 --unlock-key-file passphrase "${signed_args[@]}" > enroll.json
[ "$signed" != 1 ] || grep -q '"tested": true' enroll.json || { echo "unlock bench: the signed token was not tested at enrollment" >&2; exit 1; }
token=$(cryptsetup luksDump --dump-json-metadata img | python3 -c '
import json, sys
t = {k: v for k, v in json.load(sys.stdin)["tokens"].items() if v["type"] == "systemd-tpm2"}
assert len(t) == 1 and not next(iter(t.values()))["tpm2-pin"], t
print(next(iter(t)))')

# ---- measure, then summarize ----
load0=$(cut -d' ' -f1-3 /proc/loadavg)
python3 "$here/measure.py" "$W" "$runs" "$tcti" "$W/img" "$token" "$agent" "$W/bin/plugin_open" "$here/pcap_count.py" ${signature:+"$signature"}
mkdir -p "$(dirname "$out")"
python3 - "$W/result.json" "$load0 / $(cut -d' ' -f1-3 /proc/loadavg)" <<'PY' | tee "$out"
import json, os, statistics, sys
r = json.load(open(sys.argv[1]))
rounds, leaks, counts = r["rounds"], r["leaks"], r["counts"]
med = statistics.median
def p90(v): return statistics.quantiles(v, n=10, method="inclusive")[-1]
names = {"ballast": "ballast-agent unlock", "systemd": "systemd 252 token plugin"}
print(f"TPM2 unlock: {len(rounds)} alternating rounds (after one warm-up), one process per unlock, "
      f"swtpm over TCP, the same LUKS2 token{' (PCR 7 + signed PCR 11)' if os.environ.get('SIGNED') == '1' else ''}")
print(f"load average before / after: {sys.argv[2]} ({os.cpu_count()} CPUs)")
print(f"| {'':26} | {'wall ms median':>14} | {'wall ms p90':>11} | {'min-max':>13} | {'CPU ms median':>13} |")
print(f"|{'-'*28}|{'-'*16}|{'-'*13}|{'-'*15}|{'-'*15}|")
for side in ("ballast", "systemd"):
    w = [x[side]["wall"] * 1000 for x in rounds]
    c = [x[side]["cpu"] * 1000 for x in rounds]
    print(f"| {names[side]:26} | {med(w):14.1f} | {p90(w):11.1f} | {min(w):5.1f}-{max(w):<7.1f} | {med(c):13.1f} |")
bw = [x["ballast"]["wall"] for x in rounds]; sw = [x["systemd"]["wall"] for x in rounds]
ratio = med(bw) / med(sw)
pairs = [b / s for b, s in zip(bw, sw)]
print(f"ratio ballast / systemd (median wall): {ratio:.2f}; p90: {p90(bw) / p90(sw):.2f}; per round: median "
      f"{med(pairs):.2f} [{min(pairs):.2f}-{max(pairs):.2f}]; goal <= 1.0 (no slower): {'met' if ratio <= 1.0 else 'NOT met'}")
bc = [x["ballast"]["cpu"] for x in rounds]; sc = [x["systemd"]["cpu"] for x in rounds]
print(f"ratio ballast / systemd (median CPU time, user+sys): {med(bc) / med(sc):.2f}")
own = [x["ballast"]["info"]["ms"] for x in rounds]
print(f"ballast-agent's own \"ms\" (settings load to report, inside the process): median {med(own):.0f}, "
      f"p90 {p90(own):.0f}; the rest of its wall time is exec, dynamic loading and exit")
print("TPM handles left after each timed unlock (flushed before the next one):")
for side in ("ballast", "systemd"):
    left = [sum(len(v) for v in x[side]["handles"].values()) for x in rounds]
    kinds = sorted({k for x in rounds for k, v in x[side]["handles"].items() if v})
    print(f"  {names[side]:26} {min(left)}-{max(left)} per unlock ({', '.join(kinds) or 'none'})")
print("4 unlocks in a row without flushing (the TPM's handles after each):")
for side in ("ballast", "systemd"):
    cells = []
    for s in leaks[side]:
        cells.append(f"{'ok' if s['ok'] else 'FAILED'} t={len(s['handles']['handles-transient'])} "
                     f"s={len(s['handles']['handles-loaded-session'])}")
    print(f"  {names[side]:26} " + "; ".join(cells))
    errs = {s["error"] for s in leaks[side] if s["error"]}
    for e in errs:
        print(f"  {'':26} error: {e}")
print("TPM commands per unlock, counted from outside (tpm2-tss pcap TCTI, 10 unlocks each):")
for side in ("ballast", "systemd"):
    ss = counts[side]["sessions"]
    n = [len(s["commands"]) for s in ss]
    tpm = [s["tpm_us"] / 1000 for s in ss]
    span = [s["span_us"] / 1000 for s in ss]
    own = counts[side]["own_count"]
    same = all(s["commands"] == ss[0]["commands"] for s in ss)
    n_txt = f"{n[0]}" if len(set(n)) == 1 else "/".join(map(str, n))
    own_txt = f"{own[0]}" if len(set(own)) == 1 else "/".join(map(str, own))
    print(f"  {names[side]:26} {n_txt} commands in each"
          + (f" (its own \"tpm_commands\": {own_txt})" if side == "ballast" else "")
          + f"; TPM time {med(tpm):.1f} ms of {med(span):.1f} ms first command to last response (medians)")
    seq = ss[0]["commands"]
    print(f"  {'':26} {' '.join(seq)}{'' if same else ' (sequences differ between unlocks!)'}")
    if side == "ballast":
        print(f"  {'':26} its own count equals the capture's in {sum(a == b for a, b in zip(own, n))} of {len(n)} unlocks")
    bad = {f"{c}={rc:#x}" for s in ss for c, rc in zip(s["commands"], s["responses"]) if rc}
    print(f"  {'':26} not TPM2_RC_SUCCESS: {', '.join(sorted(bad)) or 'none'}")
PY
