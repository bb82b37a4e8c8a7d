"""Issue 6 on a booted node (and issue 4's install onto a real block device, with the live
power-off after it): a running node installs onto a second disk with BALLAST_PERSISTENT
encrypted, sealed to its own TPM (swtpm) at PCR 7 as OVMF measured it, and powers off through
systemd. The installed disk then boots alone with the same TPM: the initramfs unlocks the
persistent partition through dm-crypt with no prompt."""
import json
import subprocess

ENCRYPT = "#cloud-config\ninstall:\n  encrypted_partitions: [BALLAST_PERSISTENT]\n"


def test_install_encrypted_onto_a_second_disk_then_it_boots_unlocked(vm, image):
    target = vm.work / "target.img"
    subprocess.run(["truncate", "-s", "1200M", str(target)], check=True)
    vm.extra_disks = [target]
    m = vm.boot()
    assert m["slot"] == "a" and m["failed"] == "none", (m, vm.tail())
    bundle = sorted(image.glob("ballast-*.tar"))[0]
    vm.ssh("mkdir -p /var/lib/e2e")
    vm.put(bundle, "/var/lib/e2e/os.tar")
    vm.ssh("cat > /var/lib/e2e/encrypt.yaml", input=ENCRYPT)
    # The demo OEM config again, so the installed node has the test's ssh key.
    r = vm.ssh("agentctl install --device /dev/vdb --bundle /var/lib/e2e/os.tar --config /oem/10_demo.yaml "
               "--config /var/lib/e2e/encrypt.yaml --poweroff", check=False, timeout=900)
    # 255: ssh cut by the power-off; the output up to it is kept.
    assert r.returncode in (0, 255), r.stdout + r.stderr
    assert "encrypting BALLAST_PERSISTENT (LUKS2, TPM2 at " in r.stderr, r.stdout + r.stderr
    vm.wait_poweroff()

    # The installed disk alone, same TPM and firmware variables.
    vm.disk, vm.extra_disks = target, []
    m = vm.boot()
    assert m["slot"] == "a" and m["mount"] == "ok" and m["persistent"] == "ext4" and m["failed"] == "none", \
        (m, vm.tail())
    assert "enter the recovery key" not in vm.serial()
    assert json.loads(vm.ssh("cat /run/ballast/mount.json").stdout)["unlocked"] == "tpm2"
    assert "crypt ballast-persistent" in vm.ssh("lsblk -rno TYPE,NAME").stdout
    assert vm.ssh("findmnt -no SOURCE /var/lib/ballast").stdout.startswith("/dev/mapper/ballast-persistent")
    st = json.loads(vm.ssh("agentctl --json encrypt status").stdout)
    tpm2 = [t for t in st["tokens"] if t["type"] == "systemd-tpm2"]
    assert len(tpm2) == 1 and tpm2[0]["pcrs"] == [7] and tpm2[0]["policy_satisfied"], st
    assert sorted(t["type"] for t in st["tokens"]) == ["systemd-recovery", "systemd-tpm2"], st
