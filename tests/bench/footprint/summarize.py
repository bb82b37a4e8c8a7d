#!/usr/bin/python3
"""Medians and ratios of footprint runs (JSON lines from run.sh)."""
import json
import statistics
import sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {}
for r in rows:
    by.setdefault(r["who"], []).append(r)
keys = [("vmrss_kb", "idle VmRSS (kB)"), ("rss_anon_kb", "idle RssAnon (kB)"),
        ("rss_file_kb", "idle RssFile (kB)"), ("threads", "threads"),
        ("name_owned_us", "exec -> bus name owned (ms)"), ("ready_us", "exec -> READY=1 (ms)"),
        ("idle_wakeups_per_s", "idle wake-ups per s"), ("stop_us", "SIGTERM -> exit (ms)")]
med = {w: {k: statistics.median([r[k] for r in rs]) for k, _ in keys} for w, rs in by.items()}
rng = {w: {k: (min(r[k] for r in rs), max(r[k] for r in rs)) for k, _ in keys} for w, rs in by.items()}
b, r = med.get("ballast"), med.get("rauc")
n = len(by.get("ballast", []))
print(f"footprint: {n} alternating starts each, median [min-max]")
print(f"| {'measure':30} | {'ballast-agent':>22} | {'rauc service':>22} | {'ratio':>6} |")
print(f"|{'-'*32}|{'-'*24}|{'-'*24}|{'-'*8}|")
for k, label in keys:
    scale = 1000 if k.endswith("_us") else 1
    def cell(w):
        if w not in med or med[w][k] < 0:
            return "n/a"
        lo, hi = rng[w][k]
        return f"{med[w][k]/scale:.1f} [{lo/scale:.1f}-{hi/scale:.1f}]"
    ratio = f"{b[k]/r[k]:.2f}" if b and r and r[k] > 0 and b[k] >= 0 else "-"
    print(f"| {label:30} | {cell('ballast'):>22} | {cell('rauc'):>22} | {ratio:>6} |")
ok_rss = b["vmrss_kb"] <= 0.5 * r["vmrss_kb"]
ok_anon = b["rss_anon_kb"] < r["rss_anon_kb"]
ok_wake = b["idle_wakeups_per_s"] == 0
print(f"goals: idle RSS <= 0.5x RAUC: {'met' if ok_rss else 'NOT met'}; "
      f"RssAnon below RAUC: {'met' if ok_anon else 'NOT met'}; "
      f"zero idle wake-ups (no watchdog): {'met' if ok_wake else 'NOT met'}")
