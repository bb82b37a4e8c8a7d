"""Scenario 1: first boot and the immutable root. The OEM cloud-config is applied, / is the
read-only slot, /etc changes and the persistent paths survive a reboot, /var and /tmp do not,
and the node made its own SSH host keys and machine id once. The first boot is the one the saved
node made (conftest.py, booted: a fresh copy of the image's disk, booted once and saved); this
resumes it and checks what that boot did, then reboots it for real. Then (issue 20) a factory
reset asked for on the running node: the initramfs wipes persistent at the next boot, and the
node comes back as a fresh one with its OEM config."""

import json

STATE = ("cat /etc/hostname; cat /etc/machine-id; ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub | "
         "cut -d' ' -f2; cat /etc/e2e-etc /var/lib/rancher/e2e /root/e2e /var/log/e2e 2>&1; "
         "ls /var/e2e-ram /tmp/e2e-ram 2>&1")


def test_first_boot_applies_oem_and_keeps_persistent_state(vm, booted):
    m = vm.resume(booted)
    assert m["root"] == "squashfs" and m["ro"] == "yes", m
    assert m["etc"] == "overlay" and m["persistent"] == "ext4" and m["mount"] == "ok", m
    assert m["agent"] == "active" and m["failed"] == "none", (m, vm.tail())
    # OEM cloud-config: hostname (initramfs stage), motd (boot stage), the demo user.
    assert vm.ssh("hostname").stdout.strip() == "ballast-demo"
    assert "Ballast demo node" in vm.ssh("cat /etc/motd").stdout
    assert vm.ssh("id -u ballast", check=False).returncode == 0
    # The slot is read-only; the writable places are where the layout says.
    assert vm.ssh("touch /usr/e2e", check=False).returncode != 0
    vm.ssh("echo etc > /etc/e2e-etc && echo k3s > /var/lib/rancher/e2e && echo home > /root/e2e && "
           "echo log > /var/log/e2e && echo ram > /var/e2e-ram && echo ram > /tmp/e2e-ram && sync")
    before = vm.ssh(STATE).stdout.splitlines()
    assert before[3:7] == ["etc", "k3s", "home", "log"], before
    mounts = vm.ssh("findmnt -rn -o TARGET,FSTYPE").stdout
    for path in ["/home", "/root", "/opt", "/usr/local", "/var/log", "/var/lib/rancher", "/var/lib/ballast"]:
        assert f"{path} ext4" in mounts, (path, mounts)

    m2 = vm.reboot()
    assert m2["mount"] == "ok" and m2["failed"] == "none", (m2, vm.tail())
    after = vm.ssh(STATE, check=False).stdout.splitlines()  # ls fails: the RAM files are gone
    # hostname, machine id and host key: made once, kept. Files: kept, RAM gone.
    assert after[:7] == before[:7], (before, after)
    assert len(after[1]) == 32 and after[2].startswith("SHA256:")
    assert after[7:] == ["ls: cannot access '/var/e2e-ram': No such file or directory",
                         "ls: cannot access '/tmp/e2e-ram': No such file or directory"], after


def test_factory_reset_from_the_running_node(vm, booted):
    """The daemon stores the request and reboots; the initramfs erases and remakes persistent
    before mounting it (mke2fs in the initramfs); OEM is kept. Asked with --poweroff, as for a
    device about to be sent away: the boot that did the reset powers the machine off at its end
    (ballast-reset-poweroff.service), and the next power-on finds a fresh node. Costs two
    boots."""
    vm.resume(booted)
    vm.ssh("echo etc > /etc/e2e-etc && echo k3s > /var/lib/rancher/e2e && echo home > /root/e2e && sync")
    before = vm.ssh(STATE, check=False).stdout.splitlines()
    assert before[3:6] == ["etc", "k3s", "home"], before
    slots = vm.slots()
    r = vm.ssh("agentctl reset --poweroff", check=False, timeout=60)
    assert r.returncode in (0, 255), r.stdout + r.stderr  # 255: ssh cut by the reboot
    vm.wait_poweroff()
    console = vm.serial()
    assert "ballast: finishing the factory reset asked for on /dev/vda" in console, vm.tail()
    assert "the machine powers off once this boot has run the after-reset stage" in console, vm.tail()
    vm.boots_seen = len(vm.markers())  # the reset's boot may have reached its marker first
    m = vm.boot()
    assert m["mount"] == "ok" and m["failed"] == "none" and m["persistent"] == "ext4", (m, vm.tail())
    # Done once: this boot did no reset and stays up.
    report = json.loads(vm.ssh("cat /run/ballast/mount.json").stdout)
    assert "reset" not in report, report
    assert vm.ssh("systemctl show -p ActiveState ballast-reset-poweroff.service").stdout.strip() == \
        "ActiveState=inactive"
    after = vm.ssh(STATE, check=False).stdout.splitlines()
    # OEM kept: its hostname again. /etc and the persistent paths: gone, and the machine id and
    # SSH host key made anew, as on a first boot.
    assert after[0] == "ballast-demo", after
    assert after[1] != before[1] and len(after[1]) == 32, (before, after)
    assert after[2] != before[2] and after[2].startswith("SHA256:"), (before, after)
    assert after[3:6] == ["cat: /etc/e2e-etc: No such file or directory",
                          "cat: /var/lib/rancher/e2e: No such file or directory",
                          "cat: /root/e2e: No such file or directory"], after
    st = vm.status()
    assert "ResetPending" not in st, st
    assert {k: (v["State"], v["Version"]) for k, v in vm.slots().items()} == \
        {k: (v["State"], v["Version"]) for k, v in slots.items()}
