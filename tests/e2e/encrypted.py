"""An encrypted node (issue 6 on a booted machine, and issue 4's install onto a real block device
with the live power-off after it): a running node installs the image's bundle onto a second disk
with BALLAST_PERSISTENT encrypted, sealed to its own TPM (swtpm) at PCR 7 as OVMF measured it, and
powers off through systemd. The installed disk then boots alone with the same TPM, and the
initramfs must unlock the persistent partition through dm-crypt with no prompt."""
import json
import re
import subprocess

ENCRYPT = "#cloud-config\ninstall:\n  encrypted_partitions: [BALLAST_PERSISTENT]\n"


def assert_unlocked_by_tpm(vm):
    """This boot opened BALLAST_PERSISTENT with the TPM2 token: no recovery key was asked for."""
    assert "enter the recovery key" not in vm.serial()
    assert json.loads(vm.ssh("cat /run/ballast/mount.json").stdout)["unlocked"] == "tpm2"
    assert "crypt ballast-persistent" in vm.ssh("lsblk -rno TYPE,NAME").stdout
    assert vm.ssh("findmnt -no SOURCE /var/lib/ballast").stdout.startswith("/dev/mapper/ballast-persistent")
    st = json.loads(vm.ssh("agentctl --json encrypt status").stdout)
    tpm2 = [t for t in st["tokens"] if t["type"] == "systemd-tpm2"]
    assert tpm2 and all(t["pcrs"] == [7] and t["policy_satisfied"] for t in tpm2), st
    return st


def boot_encrypted_node(vm, image) -> tuple[dict, str]:
    """Boots `vm` from its disk, installs onto a second one, then boots that one: its marker and
    the recovery key the install showed."""
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
    key = re.search(r"shown only this once:\s+([cbdefghijklnrtuv]{8}(?:-[cbdefghijklnrtuv]{8}){7})\n", r.stdout)
    assert key, r.stdout
    vm.wait_poweroff()

    # The installed disk alone, same TPM and firmware variables.
    vm.disk, vm.extra_disks = target, []
    m = vm.boot()
    assert m["slot"] == "a" and m["mount"] == "ok" and m["persistent"] == "ext4" and m["failed"] == "none", \
        (m, vm.tail())
    st = assert_unlocked_by_tpm(vm)
    assert sorted(t["type"] for t in st["tokens"]) == ["systemd-recovery", "systemd-tpm2"], st
    return m, key.group(1)


def boot_with_recovery_key(vm, key: str) -> dict:
    """Powers the node off and boots it with no TPM: the initramfs says why on the console and
    asks for the recovery key, which is typed there. The marker of that boot."""
    vm.ssh("systemctl poweroff --no-block", check=False, timeout=30)
    vm.wait_poweroff()
    tpm_state, vm.tpm_state = vm.tpm_state, None
    try:
        vm.start()
        vm.wait_serial("enter the recovery key to continue")
        vm.wait_serial("Recovery key for ")
        vm.type(key + "\n")
        m = vm.wait_boot()
        vm.wait_ssh()
    finally:
        vm.tpm_state = tpm_state
    assert m["mount"] == "ok" and m["persistent"] == "ext4", (m, vm.tail())
    assert json.loads(vm.ssh("cat /run/ballast/mount.json").stdout)["unlocked"] == "recovery-key"
    assert key not in vm.serial()  # not echoed
    return m
