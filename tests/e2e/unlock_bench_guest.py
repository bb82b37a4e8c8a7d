#!/usr/bin/env python3
"""Issue 6's unlock benchmark inside the e2e VM (encrypted.py copies it in and runs it): opening
one LUKS2 volume through one TPM2 token made by `agentctl encrypt enroll`, with real dm-crypt and
the kernel's TPM resource manager, as the boot does, Ballast against systemd-cryptsetup.

unlock_bench_guest.py DEVICE NAME ROUNDS  ->  one JSON object on stdout

- ballast: `ballast-agent unlock --device DEVICE --name NAME --json` (what `ballast-agent mount`
  runs in the initramfs);
- systemd: `systemd-cryptsetup attach NAME DEVICE - tpm2-device=auto,headless=true` (what
  systemd-cryptsetup@.service runs for a crypttab line; headless: no password prompt to fall
  back on, so only the token can open it).
Each is one process, timed exec to exit (CPU: the children's rusage around it), alternating which goes first, after
one warm-up round. Every unlock must leave /dev/mapper/NAME; it is detached (not timed) before
the next. Timings are reported, never judged: the caller asserts only that every unlock worked.
"""
import json
import os
import resource
import statistics
import subprocess
import sys
import time

CRYPTSETUP = "/lib/systemd/systemd-cryptsetup"
dev, name, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
argv = {
    "ballast": ["ballast-agent", "unlock", "--device", dev, "--name", name, "--json"],
    "systemd": [CRYPTSETUP, "attach", name, dev, "-", "tpm2-device=auto,headless=true"],
}


def timed(cmd):
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate()
    wall = time.perf_counter() - t0
    return wall, p.returncode, out.decode(), err.decode()


def children_cpu() -> float:
    """CPU seconds of all reaped children: its difference around timed() is that process's."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def fail(why: str):
    print(json.dumps({"ok": False, "error": why}))
    sys.exit(1)


walls = {side: [] for side in argv}
cpus = {side: [] for side in argv}
tpm_commands = set()
for r in range(rounds + 1):
    for side in (("ballast", "systemd") if r % 2 == 0 else ("systemd", "ballast")):
        cpu0 = children_cpu()
        wall, rc, out, err = timed(argv[side])
        cpu = children_cpu() - cpu0
        if rc != 0 or not os.path.exists(f"/dev/mapper/{name}"):
            fail(f"{side} round {r}: exit {rc}: {err.strip()}")
        if side == "ballast":
            res = json.loads(out.strip().splitlines()[-1])
            if res.get("method") != "tpm2":
                fail(f"ballast round {r}: opened by {res.get('method')}, not the TPM")
            tpm_commands.add(res["tpm_commands"])
        d = subprocess.run([CRYPTSETUP, "detach", name], capture_output=True, text=True)
        if d.returncode != 0:
            fail(f"detach after {side}: {d.stderr.strip()}")
        if r > 0:
            walls[side].append(wall * 1000)
            cpus[side].append(cpu * 1000)


def summary(xs):
    xs = sorted(xs)
    return {"median": round(statistics.median(xs), 1), "p90": round(xs[int(0.9 * (len(xs) - 1))], 1),
            "min": round(xs[0], 1), "max": round(xs[-1], 1)}


print(json.dumps({
    "ok": True, "rounds": rounds,
    "wall_ms": {side: summary(walls[side]) for side in argv},
    "cpu_ms": {side: summary(cpus[side]) for side in argv},
    "ratio_wall_median": round(statistics.median(walls["ballast"]) / statistics.median(walls["systemd"]), 2),
    "ratio_cpu_median": round(statistics.median(cpus["ballast"]) / statistics.median(cpus["systemd"]), 2),
    "ballast_tpm_commands": sorted(tpm_commands),
}))
