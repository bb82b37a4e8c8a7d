"""Scenarios 2 and 3 on one node: an upgrade A->B over https (nginx on the host side of QEMU's
user networking), the real reboot through systemd, the boot assessment committing B; then an
upgrade whose health check fails on its new slot: the node goes back by itself and says why."""

HEALTH = """health:
  deadline: 20s
  interval: 1s
  commands:
    # Unhealthy only in slot A, and only once the test has planted the flag.
    - "grep -qv ballast.slot=a /proc/cmdline || ! test -e /etc/e2e-unhealthy-a"
"""


def test_upgrade_over_https_commits_then_failed_health_rolls_back(vm, web):
    m = vm.boot()
    assert m["slot"] == "a" and m["failed"] == "none", (m, vm.tail())
    web.trust(vm, HEALTH)
    vm.ssh("echo before-upgrade > /var/lib/rancher/e2e && sync")

    # 2: v2 over https into B; the agent reboots the node; B passes its health check: committed.
    r = vm.ssh(f"agentctl upgrade {web.bundle('2.0.0-e2e')}", check=False, timeout=600)
    assert r.returncode in (0, 255), r.stdout + r.stderr  # 255: ssh cut by the reboot
    m = vm.wait_boot()
    vm.wait_ssh()
    assert m["slot"] == "b" and m["mount"] == "ok" and m["failed"] == "none", (m, vm.tail())
    s = vm.slots()
    assert s["B"]["Version"] == "2.0.0-e2e" and s["B"]["State"] == "good" and s["B"]["Primary"], s
    assert s["A"]["State"] == "good"
    assert vm.ssh("cat /var/lib/rancher/e2e").stdout == "before-upgrade\n"

    # 3: v3 into A, whose health check fails there (the flag file names slot a): marked bad,
    # back to B without anyone touching it; the failure is reported and v3 refused.
    vm.ssh("touch /etc/e2e-unhealthy-a && sync")
    r = vm.ssh(f"agentctl upgrade {web.bundle('3.0.0-e2e')}", check=False, timeout=600)
    assert r.returncode in (0, 255), r.stdout + r.stderr
    m = vm.wait_boot(timeout=600)
    if m["slot"] == "a":  # the marker of the failed boot, printed before the reboot took hold
        m = vm.wait_boot(timeout=600)
    vm.wait_ssh()
    assert m["slot"] == "b", (m, vm.tail())
    st = vm.status()
    assert "3.0.0-e2e" in st["LastError"], st
    s = {x["Slot"]: x for x in st["Slots"]}
    assert s["A"]["State"] == "bad" and s["B"]["Primary"], s
    assert [v["Version"] for v in st["RefusedVersions"]] == ["3.0.0-e2e"]
    r = vm.ssh(f"agentctl upgrade {web.bundle('3.0.0-e2e')} --no-reboot", check=False)
    assert r.returncode == 1 and "--force" in r.stderr, r.stdout + r.stderr
