"""Scenario 1: first boot and the immutable root. The OEM cloud-config is applied, / is the
read-only slot, /etc changes and the persistent paths survive a reboot, /var and /tmp do not,
and the node made its own SSH host keys and machine id once. The first boot is the one the saved
node made (conftest.py, booted: a fresh copy of the image's disk, booted once and saved); this
resumes it and checks what that boot did, then reboots it for real. Then (issue 20) a factory
reset asked for on the running node: the initramfs wipes persistent at the next boot, and the
node comes back as a fresh one with its OEM config."""

import json
import subprocess

from k3s_standin import K3S, STANDIN, wait_k3s

STATE = ("cat /etc/hostname; cat /etc/machine-id; ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub | "
         "cut -d' ' -f2; cat /etc/e2e-etc /var/lib/rancher/e2e /root/e2e /var/log/e2e 2>&1; "
         "ls /var/e2e-ram /tmp/e2e-ram 2>&1")

NETWORK = """#cloud-config
network:
  version: 2
  vlans:
    vlan42: {id: 42, link: wired, addresses: [198.51.100.7/24]}
"""
ADDRS = "ip -o -4 addr show | awk '$4 !~ /^(127|10)\\./ {print $4}' | sort"


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
    # Issue 19: network config (cloud-init's version 2), rendered by the image's netplan generator
    # for networkd. The OEM config's static address beside DHCP on the NIC (matched by name) is
    # there from the first boot on (written by the initramfs stage, rendered by netplan's systemd
    # generator); a VLAN on it added by a second file is applied live by the reconcile stage; the
    # node keeps its DHCP address (ssh goes on). A document netplan refuses is an error naming its
    # file, and nothing changes.
    assert vm.ssh(ADDRS).stdout.split() == ["192.0.2.10/24"], vm.ssh("ip -o addr").stdout
    vm.ssh("cat > /etc/ballast/config.d/60-network.yaml", input=NETWORK)
    r = vm.ssh("agentctl stage run reconcile", check=False, timeout=120)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert vm.ssh(ADDRS).stdout.split() == ["192.0.2.10/24", "198.51.100.7/24"], vm.ssh("ip -o addr").stdout
    vm.ssh("cat > /etc/ballast/config.d/61-network-bad.yaml",
           input="#cloud-config\nnetwork:\n  version: 2\n  vlans:\n    vlan43: {id: 43, link: nic9}\n")
    r = vm.ssh("agentctl stage run reconcile", check=False, timeout=120)
    assert r.returncode != 0 and "61-network-bad.yaml:" in r.stdout + r.stderr and "nic9" in r.stdout + r.stderr, (r.stdout, r.stderr)
    vm.ssh("rm /etc/ballast/config.d/61-network-bad.yaml")
    assert "vlan43" not in vm.ssh("ip -o link").stdout
    assert vm.ssh("ls /etc/netplan").stdout.split() == ["50-ballast-01.yaml", "50-ballast-02.yaml"]
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
    # At boot netplan's systemd generator renders /etc/netplan before networkd starts.
    assert vm.ssh(ADDRS).stdout.split() == ["192.0.2.10/24", "198.51.100.7/24"], vm.ssh("ip -o addr").stdout


def test_factory_reset_from_the_running_node(vm, booted):
    """A node running k3s (the stand-in) with a pod on it: the daemon has it leave the cluster
    (cordon, drain, delete its Node, through the API as kubectl does), stores the request, and at
    the next boot the initramfs erases and remakes persistent before mounting it (mke2fs in the
    initramfs); OEM is kept. Asked with --poweroff, as for a device about to be sent away: the boot
    that did the reset powers the machine off at its end (ballast-reset-poweroff.service), and
    the next power-on finds a fresh node, without k3s or its config. Costs two boots."""
    vm.resume(booted)
    vm.ssh("echo etc > /etc/e2e-etc && echo k3s > /var/lib/rancher/e2e && echo home > /root/e2e && sync")
    before = vm.ssh(STATE, check=False).stdout.splitlines()
    assert before[3:6] == ["etc", "k3s", "home"], before
    vm.ssh("cat > /usr/local/bin/k3s && chmod 755 /usr/local/bin/k3s", input=STANDIN.read_text())
    vm.ssh("mkdir -p /etc/ballast/config.d && cat > /etc/ballast/config.d/50-k3s.yaml", input=K3S)
    vm.ssh("systemctl restart ballast-stage@boot.service")
    wait_k3s(vm, "site=e2e")
    vm.ssh("cat > /var/lib/rancher/k3s-standin/pods.json", input=json.dumps([
        {"metadata": {"name": "web-1", "namespace": "default", "ownerReferences": [{"kind": "ReplicaSet"}]},
         "spec": {"nodeName": "ballast-demo"}}]))
    slots = vm.slots()
    r = vm.ssh("agentctl --json reset --poweroff --no-reboot", timeout=300)
    assert json.loads(r.stdout) == {"reset": "persistent", "reboot": False}, r.stdout
    assert vm.ssh("cat /var/lib/rancher/k3s-standin/evictions.log").stdout == "default/web-1\n"
    deleted = json.loads(vm.ssh("cat /var/lib/rancher/k3s-standin/deleted.json").stdout)
    assert deleted["node"] == "ballast-demo" and deleted["spec"] == {"unschedulable": True}, deleted
    vm.ssh("systemctl reboot --no-block", check=False, timeout=30)
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
    # k3s went with persistent: its binary (/usr/local), its config (/etc) and its state.
    assert vm.ssh("ls /usr/local/bin/k3s /etc/ballast/config.d/50-k3s.yaml /var/lib/ballast/k3s.json",
                  check=False).stdout == ""
    assert vm.ssh("systemctl is-active k3s.service", check=False).stdout.strip() != "active"


def test_damaged_persistent_boots_recovery_and_is_repaired_there(vm, booted):
    """First asked for (agentctl recovery: GRUB's recovery entry, once): persistent is neither
    unlocked nor mounted, its data untouched. Then persistent damaged (blank, as a dead
    filesystem reads): the initramfs cannot mount it, says why on the console, and the node boots
    ballast-recovery.target instead of running as a fresh node on RAM: SSH with the OEM config's
    key, `agentctl status` saying it is in recovery and why, none of the config's stages. From
    there the operator repairs it (agentctl reset --device) and reboots into a fresh node. Costs
    three boots."""
    vm.resume(booted)
    vm.ssh("echo kept > /var/lib/rancher/e2e && sync")
    pos = len(vm.serial())
    r = vm.ssh("agentctl recovery", check=False, timeout=60)
    assert r.returncode in (0, 255), r.stdout + r.stderr  # 255: ssh cut by the reboot
    vm.wait_serial("ballast: RECOVERY BOOT: asked for on the kernel command line")
    vm.wait_ssh(timeout=300)
    assert "ballast.recovery" in vm.serial()[pos:]
    st = vm.status()
    assert st["Recovery"]["Asked"] and "RecoveryNext" not in st, st
    assert vm.ssh("findmnt -n -o FSTYPE /var/lib/rancher", check=False).stdout.strip() != "ext4"
    vm.ssh("sync")
    vm.power_cut()
    parts0 = json.loads(subprocess.run(["sfdisk", "-J", str(vm.disk)], capture_output=True, text=True,
                                       check=True).stdout)["partitiontable"]["partitions"]
    p0 = next(p for p in parts0 if p["name"] == "BALLAST_PERSISTENT")
    kept = subprocess.run(["debugfs", "-R", "cat /.ballast/state/var/lib/rancher/e2e",
                           f"{vm.disk}?offset={p0['start'] * 512}"], capture_output=True, text=True)
    assert kept.stdout == "kept\n", kept.stdout + kept.stderr  # untouched by the recovery boot
    # From the host, with the node off: the partition's bytes gone (e2fsck finds no superblock,
    # not even a backup one).
    parts = json.loads(subprocess.run(["sfdisk", "-J", str(vm.disk)], capture_output=True, text=True,
                                      check=True).stdout)["partitiontable"]["partitions"]
    p = next(p for p in parts if p["name"] == "BALLAST_PERSISTENT")
    subprocess.run(["fallocate", "--punch-hole", "--offset", str(p["start"] * 512), "--length",
                    str(p["size"] * 512), str(vm.disk)], check=True)
    pos = len(vm.serial())
    vm.start()
    vm.wait_ssh(timeout=300)
    console = vm.serial()[pos:]
    assert "ballast: RECOVERY BOOT: persistent could not be mounted" in console, vm.tail()
    assert vm.ssh("systemctl is-active ballast-recovery.target").stdout.strip() == "active"
    assert vm.ssh("systemctl is-active ballast-recovery-access.service").stdout.strip() == "active"
    # The node is not itself: no stage ran (the boot stage writes /etc/motd), nothing is assessed.
    assert vm.ssh("systemctl is-active ballast-stage@boot.service ballast-health.service",
                  check=False).stdout.split() == ["inactive", "inactive"]
    assert "Ballast demo node" not in vm.ssh("cat /etc/motd", check=False).stdout
    st = vm.status()
    assert st["Recovery"]["Reason"].startswith("persistent could not be mounted"), st
    assert not st["Recovery"]["Asked"]
    assert "IN RECOVERY: persistent could not be mounted" in vm.ssh("agentctl status").stdout
    r = vm.ssh("agentctl upgrade https://updates.invalid/os.tar --no-reboot", check=False)
    assert r.returncode != 0 and "a recovery boot upgrades nothing" in r.stderr, r.stdout + r.stderr
    # Repaired from here: persistent made anew (OEM, mounted read-only, is kept), then a normal boot.
    r = vm.ssh("agentctl reset --device /dev/vda --json", timeout=300)
    rep = json.loads(r.stdout)
    assert rep["persistent_before"] == "" and not rep["oem_wiped"], rep
    m = vm.reboot()
    assert m["mount"] == "ok" and m["failed"] == "none" and m["persistent"] == "ext4", (m, vm.tail())
    assert "Recovery" not in vm.status()
    assert "Ballast demo node" in vm.ssh("cat /etc/motd").stdout
