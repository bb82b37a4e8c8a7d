"""Scenario 1: first boot and the immutable root. The OEM cloud-config is applied, / is the
read-only slot, /etc changes and the persistent paths survive a reboot, /var and /tmp do not,
and the node made its own SSH host keys and machine id once. The first boot is the one the saved
node made (conftest.py, booted: a fresh copy of the image's disk, booted once and saved); this
resumes it and checks what that boot did, then reboots it for real."""

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
