#!/usr/bin/env python3
"""The TPM2 unlock benchmark's measuring part (tests/bench/unlock/run.sh sets up and calls it).

measure.py OUT_DIR RUNS TCTI IMG TOKEN BALLAST_AGENT PLUGIN_OPEN PCAP_COUNT
Phases, all against the same swtpm and the same LUKS2 image and token:
  1. timing: RUNS rounds after one warm-up round, each round one `ballast-agent unlock` process
     and one `plugin_open` process (systemd 252's token plugin via libcryptsetup), alternating
     which goes first. Wall time is exec to exit (fork+exec+wait4 from this process, the same
     for both), CPU time from wait4's rusage. After every unlock the TPM's transient objects and
     loaded sessions are listed (tpm2_getcap) and flushed, outside the timings, so every unlock
     starts from an empty TPM (systemd's plugin would fail its third unlock otherwise).
  2. leaks: from an empty TPM, 4 unlocks of each in a row without flushing, listing the handles
     after each.
  3. commands: 10 unlocks of each through tpm2-tss's pcap TCTI ("pcap:" + TCTI, file from
     $TCTI_PCAP_FILE), counted by pcap_count.py, and Ballast's own "tpm_commands" beside them.
Writes OUT_DIR/result.json; prints nothing but failures.
"""
import json
import os
import subprocess
import sys
import tempfile
import time

out_dir, runs, tcti, img, token, agent, plugin, pcap_count = sys.argv[1:9]
# A signed-policy token (SIGNED=1 in run.sh): both sides get the same signature file.
signature = sys.argv[9] if len(sys.argv) > 9 else ""
runs, token = int(runs), str(int(token))
env = {k: v for k, v in os.environ.items() if k not in ("PIN", "PASSWORD", "INVOCATION_ID")}
tools_env = dict(env, TPM2TOOLS_TCTI=tcti)


def cmd(side, t=tcti):
    sig = ["--tpm2-signature", signature] if signature else []
    return ([agent, "unlock", "--device", img, "--tpm2-device", t, "--json", *sig]
            if side == "ballast" else [plugin, img, t, token, *([signature] if signature else [])])


def timed(argv, extra_env=None):
    """Runs argv; returns (wall seconds, cpu seconds, rc, stdout, stderr)."""
    e = dict(env, **(extra_env or {}))
    with tempfile.TemporaryFile() as fo, tempfile.TemporaryFile() as fe:
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fo, stderr=fe, env=e)
        _, st, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(st)
        fo.seek(0)
        fe.seek(0)
        return wall, ru.ru_utime + ru.ru_stime, p.returncode, fo.read().decode(), fe.read().decode()


def check(side, rc, out, err):
    """Each unlock must really have opened keyslot 1 through the TPM token."""
    if side == "ballast":
        last = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
        ok = rc == 0 and last.get("ok") is True and last.get("method") == "tpm2" and last.get("keyslot") == 1
        return ok, last
    return rc == 0 and out.strip() == "1", {"keyslot": out.strip()}


def handles():
    r = {}
    for cap in ("handles-transient", "handles-loaded-session"):
        p = subprocess.run(["tpm2_getcap", cap], capture_output=True, text=True, env=tools_env)
        if p.returncode != 0:
            sys.exit(f"unlock bench: tpm2_getcap {cap}: {p.stderr}")
        r[cap] = [l.strip("- ").strip() for l in p.stdout.splitlines() if l.strip()]
    return r


def flush():
    for flag in ("-t", "-l"):
        subprocess.run(["tpm2_flushcontext", flag], capture_output=True, env=tools_env)


# ---- 1. timing ----
flush()
rounds = []
for i in range(runs + 1):   # round 0: warm-up, not counted
    order = ("ballast", "systemd") if i % 2 == 0 else ("systemd", "ballast")
    rnd = {}
    for side in order:
        wall, cpu, rc, o, e = timed(cmd(side))
        ok, info = check(side, rc, o, e)
        if not ok:
            sys.exit(f"unlock bench: {side} unlock failed in round {i} (rc {rc}): {o}{e}")
        h = handles()
        flush()
        rnd[side] = {"wall": wall, "cpu": cpu, "handles": h, "info": info}
    if i > 0:
        rounds.append(rnd)

# ---- 2. leaks: 4 in a row, no flush in between ----
leaks = {}
for side in ("ballast", "systemd"):
    flush()
    seq = []
    for _ in range(4):
        wall, cpu, rc, o, e = timed(cmd(side))
        ok, _ = check(side, rc, o, e)
        last_err = [l for l in e.splitlines() if l.strip()][-1:] if not ok else []
        seq.append({"ok": ok, "handles": handles(), "error": last_err[0] if last_err else ""})
    leaks[side] = seq
flush()

# ---- 3. TPM commands from outside: the pcap TCTI ----
counts = {}
for side in ("ballast", "systemd"):
    pc = os.path.join(out_dir, f"{side}.pcap")
    if os.path.exists(pc):
        os.unlink(pc)
    own = []
    for _ in range(10):
        wall, cpu, rc, o, e = timed(cmd(side, "pcap:" + tcti), {"TCTI_PCAP_FILE": pc})
        ok, info = check(side, rc, o, e)
        if not ok:
            sys.exit(f"unlock bench: {side} unlock through the pcap TCTI failed (rc {rc}): {o}{e}")
        own.append(info.get("tpm_commands"))
        flush()
    sessions = json.loads(subprocess.run([sys.executable, pcap_count, pc, "--json"], check=True,
                                         capture_output=True, text=True).stdout)
    if len(sessions) != 10:
        sys.exit(f"unlock bench: {pc}: {len(sessions)} TCTI sessions, expected 10")
    counts[side] = {"sessions": sessions, "own_count": own}

json.dump({"rounds": rounds, "leaks": leaks, "counts": counts}, open(os.path.join(out_dir, "result.json"), "w"))
