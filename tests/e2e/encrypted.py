"""An encrypted node (issue 6 on a booted machine, and issue 4's unattended install onto a real
block device): a running node whose config says install.auto reboots, and at that boot
ballast-install.service installs the image's bundle onto a second disk with BALLAST_PERSISTENT
encrypted, sealed to its own TPM (swtpm) at PCR 7 as OVMF measured it, and powers off through
systemd. The installed disk then boots alone with the same TPM, and the
initramfs must unlock the persistent partition through dm-crypt with no prompt."""
import hashlib
import json
import re
import struct
import subprocess
import uuid
from pathlib import Path

from vm import MARKER

# The bundle is copied in by the test; the demo OEM config (the test's ssh key) goes along, as
# every file of the node's config does.
AUTO_INSTALL = """#cloud-config
install:
  auto: true
  device: /dev/vdb
  source: /usr/local/e2e/os.tar
  poweroff: true
  encrypted_partitions: [BALLAST_PERSISTENT]
"""


def assert_unlocked_by_tpm(vm):
    """This boot opened BALLAST_PERSISTENT with the TPM2 token: no recovery key was asked for."""
    # This boot's console: since the marker of the boot before.
    ends = [0] + [m.end() for m in MARKER.finditer(vm.serial())]
    this_boot = vm.serial()[ends[-2]:ends[-1]]
    assert "enter the recovery key" not in this_boot
    assert json.loads(vm.ssh("cat /run/ballast/mount.json").stdout)["unlocked"] == "tpm2"
    assert "crypt ballast-persistent" in vm.ssh("lsblk -rno TYPE,NAME").stdout
    assert vm.ssh("findmnt -no SOURCE /var/lib/ballast").stdout.startswith("/dev/mapper/ballast-persistent")
    st = json.loads(vm.ssh("agentctl --json encrypt status").stdout)
    tpm2 = [t for t in st["tokens"] if t["type"] == "systemd-tpm2"]
    assert tpm2 and all(t["pcrs"] == [7] and t["policy_satisfied"] for t in tpm2), st
    return st


def boot_encrypted_node(vm, image, booted) -> tuple[dict, str]:
    """Resumes the fresh node `booted` (conftest.py) in `vm`, installs onto its blank second disk,
    then boots that one: its marker and the recovery key the install showed."""
    m = vm.resume(booted)
    target = vm.extra_disks[0]
    assert m["slot"] == "a" and m["failed"] == "none", (m, vm.tail())
    bundle = sorted(image.glob("ballast-*.tar"))[0]
    vm.ssh("mkdir -p /usr/local/e2e")  # persistent: /var is in RAM
    vm.put(bundle, "/usr/local/e2e/os.tar")
    # Unattended, as at a site: install.auto in the node's own config, acted on at the next boot
    # by ballast-install.service, which powers the node off when done.
    vm.ssh("cat > /etc/ballast/config.d/90-install.yaml && sync", input=AUTO_INSTALL)
    since = len(vm.serial())
    vm.ssh("systemctl reboot --no-block", check=False, timeout=30)
    vm.wait_poweroff(timeout=900)
    console = vm.serial()[since:]
    assert "encrypting BALLAST_PERSISTENT (LUKS2, TPM2 at " in console, vm.tail()
    # systemd's "A start job is running" lines may land between the heading and the key.
    key = re.search(r"shown only this once:.*?\b([cbdefghijklnrtuv]{8}(?:-[cbdefghijklnrtuv]{8}){7})\b", console,
                    re.DOTALL)
    assert key, vm.tail()
    vm.boots_seen = len(vm.markers())  # that boot's marker, if it came before the power-off

    # The installed disk alone, same TPM and firmware variables.
    vm.disk, vm.extra_disks = target, []
    m = vm.boot()
    assert m["slot"] == "a" and m["mount"] == "ok" and m["persistent"] == "ext4" and m["failed"] == "none", \
        (m, vm.tail())
    st = assert_unlocked_by_tpm(vm)
    assert sorted(t["type"] for t in st["tokens"]) == ["systemd-recovery", "systemd-tpm2"], st
    return m, key.group(1)


def _guid(text: str) -> bytes:
    return uuid.UUID(text).bytes_le


EFI_GLOBAL = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
DB = "d719b2cb-3d3a-4596-a3bc-dad00e67656f"  # EFI_IMAGE_SECURITY_DATABASE_GUID


def db_entry_write() -> bytes:
    """What to write to efivarfs to add one SHA-256 entry to the firmware's db: attributes
    (NV, BS, RT, time-based authenticated), EFI_VARIABLE_AUTHENTICATION_2 (a time stamp and an
    empty PKCS#7 certificate: in Setup Mode the firmware checks the format, not a signature),
    then one EFI_SIGNATURE_LIST holding one EFI_SIGNATURE_DATA."""
    owner = _guid("77fa9abd-0359-4d32-bd60-28f4e78f784b")
    data = owner + hashlib.sha256(b"ballast e2e: a new Secure Boot db entry").digest()
    siglist = _guid("c1c41626-504c-4092-aca9-41f936934328") + struct.pack("<III", 28 + len(data), 0, len(data)) + data
    when = struct.pack("<HBBBBBBIhBB", 2026, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0)  # EFI_TIME
    auth = when + struct.pack("<IHH", 24, 0x0200, 0x0EF1) + _guid("4aafd29d-68df-49ee-8aa9-347d375665a7")
    return struct.pack("<I", 0x27) + auth + siglist


def pcr7(vm) -> str:
    return vm.ssh("cat /sys/class/tpm/tpm0/pcr-sha256/7").stdout.strip()


def change_pcr7(vm):
    """Changes what the firmware measures into PCR 7 from the next boot on, as a firmware update
    or a new Secure Boot key does: a new entry in db. OVMF's blank variable store has no PK
    (Setup Mode, Secure Boot off), so db can be written from the running node; the firmware
    measures db into PCR 7 at every boot."""
    setup_mode = vm.ssh(f"od -An -tu1 /sys/firmware/efi/efivars/SetupMode-{EFI_GLOBAL}").stdout.split()
    assert setup_mode[-1] == "1", setup_mode
    blob = vm.work / "db-entry.bin"
    blob.write_bytes(db_entry_write())
    vm.put(blob, f"/sys/firmware/efi/efivars/db-{DB}")


def boot_with_recovery_key(vm, key: str, why: str) -> dict:
    """Powers the node off and boots it: the initramfs says `why` on the console and asks for
    the recovery key, which is typed there. The marker of that boot."""
    vm.ssh("systemctl poweroff --no-block", check=False, timeout=30)
    vm.wait_poweroff()
    since = len(vm.serial())
    vm.start()
    vm.wait_serial(why)
    vm.wait_serial("enter the recovery key to continue")
    vm.wait_serial("Recovery key for ")
    vm.type(key + "\n")
    m = vm.wait_boot()
    vm.wait_ssh()
    assert m["mount"] == "ok" and m["persistent"] == "ext4", (m, vm.tail())
    assert json.loads(vm.ssh("cat /run/ballast/mount.json").stdout)["unlocked"] == "recovery-key"
    assert key not in vm.serial()[since:]  # not echoed (the install showed it, earlier)
    return m


def assert_crypttab_line(vm):
    """The image's crypttab line for BALLAST_PERSISTENT: systemd's generator makes a unit of it
    that runs systemd-cryptsetup with the TPM2 token, and nothing starts it at boot (noauto)."""
    unit = "systemd-cryptsetup@ballast\\x2dpersistent.service"
    text = vm.ssh(f"systemctl cat '{unit}'").stdout
    assert "attach 'ballast-persistent' '/dev/disk/by-partlabel/BALLAST_PERSISTENT' '-' " in text, text
    assert "tpm2-device=auto" in text, text
    assert vm.ssh(f"systemctl is-active '{unit}'", check=False).stdout.strip() == "inactive"


BENCH_PASS = "e2e-bench-passphrase"


def unlock_benchmark(vm, rounds: int) -> dict:
    """Issue 6's benchmark in this VM (unlock_bench_guest.py): a LUKS2 volume made on the host
    (pbkdf2, 1000 iterations: the benchmark times the TPM, not a KDF), on a loop device in the
    node, a TPM2 token enrolled by agentctl against the node's TPM. systemd-cryptsetup first
    opens it through a crypttab line, as systemd-cryptsetup@.service does at boot."""
    img = vm.work / "bench-luks.img"
    subprocess.run(["truncate", "-s", "32M", str(img)], check=True)
    subprocess.run(["cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2", "--pbkdf", "pbkdf2",
                    "--pbkdf-force-iterations", "1000", str(img), "-"], input=BENCH_PASS.encode(), check=True)
    vm.put(img, "/run/e2e-bench.img")
    vm.put(Path(__file__).with_name("unlock_bench_guest.py"), "/run/unlock_bench_guest.py")
    vm.ssh("cat > /run/e2e-bench.pass", input=BENCH_PASS)
    dev = vm.ssh("losetup -f --show /run/e2e-bench.img").stdout.strip()
    r = vm.ssh(f"agentctl encrypt enroll --device {dev} --unlock-key-file /run/e2e-bench.pass && "
               "rm /run/e2e-bench.pass", check=False)
    assert r.returncode == 0, r.stdout + r.stderr

    unit = "systemd-cryptsetup@e2e\\x2dbench.service"
    vm.ssh(f"cp /etc/crypttab /run/crypttab.orig && echo 'e2e-bench {dev} - tpm2-device=auto,headless=true,noauto' "
           f">> /etc/crypttab && systemctl daemon-reload && systemctl start '{unit}' && test -b /dev/mapper/e2e-bench "
           f"&& systemctl stop '{unit}' && cp /run/crypttab.orig /etc/crypttab && systemctl daemon-reload")

    r = vm.ssh(f"python3 /run/unlock_bench_guest.py {dev} e2e-bench {rounds}", check=False, timeout=900)
    vm.ssh(f"losetup -d {dev}; rm -f /run/e2e-bench.img")
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)
