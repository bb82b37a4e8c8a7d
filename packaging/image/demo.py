#!/usr/bin/python3
"""`make demo`: the life of a Ballast node, in QEMU (OVMF, swtpm as the TPM, serial console,
TCG: no KVM needed). Builds the image when there is none (packaging/image/build.sh, which makes
the .deb when there is none), then narrates:

  first boot (OEM cloud-config: hostname, user, files) -> agentctl status -> upgrade to v2 over
  https -> reboot into B -> commit -> upgrade to a broken v3 whose health check fails ->
  automatic rollback to B, the failure reported.

Ends with a table of the steps and exits 0 only if every one happened.
Usage: packaging/image/demo.py [--image DIR] [--keep]   (DIR default build/image)"""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOP = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(TOP / "tests" / "e2e"), str(TOP / "tests" / "integration" / "helpers")]
from vm import Vm  # noqa: E402
from web import Web  # noqa: E402

BOLD, DIM, OFF = ("\033[1m", "\033[2m", "\033[0m") if sys.stdout.isatty() else ("", "", "")
# v3 is "broken": its health check fails in slot A (where it lands), so the node rolls back.
HEALTH = """health:
  deadline: 20s
  interval: 1s
  commands:
    - "grep -qv ballast.slot=a /proc/cmdline || ! test -e /etc/demo-v3-is-broken"
"""

steps: list[tuple[str, bool, float, str]] = []


def say(text: str):
    print(f"\n{BOLD}== {text}{OFF}", flush=True)


def show(text: str):
    for line in text.rstrip().splitlines():
        print(f"   {line}")


def step(name: str, fn):
    """Runs one step; records whether it happened, how long it took and what it showed."""
    say(name)
    t0 = time.monotonic()
    try:
        detail = fn() or ""
        ok = True
    except Exception as e:  # noqa: BLE001  (the demo reports every failure in its table)
        detail, ok = str(e).splitlines()[0][:100] if str(e) else type(e).__name__, False
        print(f"   FAILED: {e}")
    steps.append((name, ok, time.monotonic() - t0, detail))
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", default=str(TOP / "build" / "image"))
    ap.add_argument("--keep", action="store_true", help="keep the work folder (serial log, disk)")
    args = ap.parse_args()
    image = Path(args.image).resolve()
    if not (image / "disk.img").exists():
        say(f"Building the OS image into {image} (packaging/image/build.sh)")
        subprocess.run([str(TOP / "packaging/image/build.sh"), "--out", str(image)], check=True)
    work = Path(tempfile.mkdtemp(prefix="ballast-demo-"))
    print(f"{DIM}work folder {work}: serial console in node-serial.log{OFF}")
    web = Web(image, work)
    vm = Vm(image, work)
    try:
        run(vm, web)
    finally:
        vm.power_cut()
        web.stop()
    width = max(len(s[0]) for s in steps)
    say("Summary")
    for name, ok, secs, detail in steps:
        print(f"   {'ok  ' if ok else 'FAIL'}  {name:<{width}}  {secs:6.1f} s  {detail}")
    all_ok = len(steps) == 7 and all(s[1] for s in steps)
    print(f"\n{BOLD}{'Every step happened.' if all_ok else 'Some steps did not happen.'}{OFF}")
    if not args.keep and all_ok:
        subprocess.run(["rm", "-rf", str(work)])
    return 0 if all_ok else 1


def run(vm: Vm, web: Web):
    def first_boot():
        m = vm.boot()
        show(f"console: BALLAST-SMOKE {' '.join(f'{k}={v}' for k, v in m.items())}")
        assert m["root"] == "squashfs" and m["ro"] == "yes" and m["mount"] == "ok", m
        out = vm.ssh("hostname; id ballast; head -n1 /etc/motd; findmnt -no FSTYPE,OPTIONS / | cut -c1-40").stdout
        show(out)
        assert out.startswith("ballast-demo\n"), out
        return f"slot {m['slot'].upper()}, hostname {out.split()[0]}, / read-only squashfs"

    def status(expect_slot: str):
        def f():
            out = vm.ssh("agentctl status").stdout
            show(out)
            booted = vm.status()["BootedSlot"]
            assert booted == expect_slot, booted
            return f"booted {booted}"
        return f

    def upgrade_v2():
        web.trust(vm, HEALTH)
        url = web.bundle("2.0.0-demo")
        show(f"agentctl upgrade {url}")
        r = vm.ssh(f"agentctl upgrade {url}", check=False, timeout=600)
        show(r.stdout + r.stderr)
        m = vm.wait_boot()
        vm.wait_ssh()
        assert m["slot"] == "b", m
        return "written to B, rebooted into B"

    def commit():
        s = vm.slots()
        show(json.dumps({k: {f: v[f] for f in ("Version", "State", "Primary")} for k, v in s.items()}))
        assert s["B"]["State"] == "good" and s["B"]["Version"] == "2.0.0-demo", s
        return "health passed: B committed (good, primary)"

    def upgrade_v3():
        vm.ssh("touch /etc/demo-v3-is-broken && sync")
        url = web.bundle("3.0.0-demo")
        show(f"agentctl upgrade {url}   (its health check will fail)")
        r = vm.ssh(f"agentctl upgrade {url}", check=False, timeout=600)
        show(r.stdout + r.stderr)
        m = vm.wait_boot(timeout=600)
        show(f"console: slot={m['slot']} failed={m['failed']}")
        if m["slot"] == "a":
            m = vm.wait_boot(timeout=600)
        vm.wait_ssh()
        assert m["slot"] == "b", m
        return "v3 failed its health check in A; the node went back to B by itself"

    def reported():
        st = vm.status()
        show(f"LastError: {st['LastError']}")
        show(vm.ssh("agentctl status").stdout)
        assert "3.0.0-demo" in st["LastError"], st
        return "the failure is reported; v3 is refused until --force"

    for name, fn in [("First boot: OEM cloud-config applied", first_boot),
                     ("agentctl status", status("A")),
                     ("Upgrade to v2 over https, reboot into B", upgrade_v2),
                     ("Boot assessment commits B", commit),
                     ("Upgrade to a broken v3", upgrade_v3),
                     ("Automatic rollback, reported", reported),
                     ("agentctl status after the rollback", status("B"))]:
        if not step(name, fn):
            break


if __name__ == "__main__":
    sys.exit(main())
