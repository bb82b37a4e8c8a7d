"""systemd-boot 252 itself against Ballast's model of it (lib/ballast/boot/sdboot_menu.hpp): an ESP
whose /EFI/Linux the systemd-boot backend wrote (`boot-tool sdboot`: the real FAT code),
booted under OVMF in QEMU. The UKIs are Debian's stub with an .osrel and no kernel: the loader
counts the try (renaming the file), starts the stub, the stub finds no .linux and returns, and the
loader prints "Failed to execute TITLE (\\EFI\\Linux\\NAME)": the entry it chose, under the name it
gave it. Each boot is a fresh QEMU, about 8 s under TCG to that line; eight boots in all (marked
vm). The renames' crash safety is checked here too, with no QEMU."""
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import build_dir, need_tool

OVMF = Path("/usr/share/OVMF")
STUB = Path("/usr/lib/systemd/boot/efi/linuxx64.efi.stub")
LOADER = Path("/usr/lib/systemd/boot/efi/systemd-bootx64.efi")
ESP_START = 1024 * 1024
ENV = dict(os.environ, MTOOLS_SKIP_CHECK="1")


def esp_path(disk):
    return f"{disk}@@{ESP_START}"


def mtools(*args):
    subprocess.run(list(args), env=ENV, check=True, capture_output=True)


def make_esp(tmp: Path, version_a: str, version_b: str) -> Path:
    """A GPT disk with a 40 MiB ESP: systemd-boot as the fallback loader, loader.conf with no
    default, the backend's record, and each slot's UKI copied in not yet listed (.off)."""
    need_tool("qemu-system-x86_64", "qemu-system-x86")
    need_tool("mcopy", "mtools")
    need_tool("objcopy", "binutils")
    for f in (OVMF / "OVMF_CODE_4M.fd", STUB, LOADER):
        if not f.exists():
            pytest.fail(f"{f} is missing: packaging/deps.sh installs ovmf and systemd-boot-efi")
    disk = tmp / "disk.img"
    subprocess.run(["truncate", "-s", "48M", str(disk)], check=True)
    subprocess.run(["sfdisk", "-q", str(disk)], input="label: gpt\nstart=2048, size=81920, "
                   "type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\n", text=True, check=True)
    subprocess.run(["mkfs.vfat", "-F", "32", "--offset", "2048", str(disk), str(81920 // 2)],
                   check=True, capture_output=True)
    e = esp_path(disk)
    mtools("mmd", "-i", e, "::/EFI", "::/EFI/BOOT", "::/EFI/Linux", "::/loader", "::/loader/ballast")
    mtools("mcopy", "-i", e, str(LOADER), "::/EFI/BOOT/BOOTX64.EFI")
    (tmp / "loader.conf").write_text("timeout 0\neditor no\n")
    mtools("mcopy", "-i", e, str(tmp / "loader.conf"), "::/loader/loader.conf")
    (tmp / "env").write_bytes(b"#" * 1024)
    for n in (1, 2):
        mtools("mcopy", "-i", e, str(tmp / "env"), f"::/loader/ballast/env{n}")
    for slot, version in (("a", version_a), ("b", version_b)):
        osrel = tmp / f"{slot}.osrel"
        osrel.write_text(f'ID=debian\nVERSION_ID={version}\nPRETTY_NAME="Ballast {slot.upper()} {version}"\n')
        uki = tmp / f"{slot}.efi"
        subprocess.run(["objcopy", "--add-section", f".osrel={osrel}", "--change-section-vma",
                        ".osrel=0x20000", str(STUB), str(uki)], check=True)
        mtools("mcopy", "-i", e, str(uki), f"::/EFI/Linux/ballast-{slot}.off")
    return disk


def backend(disk: Path, *steps) -> dict:
    """The backend's transitions, then what the model says the loader starts."""
    r = subprocess.run([str(build_dir() / "tests" / "boot-tool"), "sdboot", str(disk), str(ESP_START), *steps],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def boot(disk: Path, tmp: Path) -> str:
    """One power-on: the name systemd-boot started, as it printed it."""
    vars_fd, log = tmp / "vars.fd", tmp / "serial.log"
    shutil.copy(OVMF / "OVMF_VARS_4M.fd", vars_fd)
    log.unlink(missing_ok=True)
    q = subprocess.Popen(
        ["qemu-system-x86_64", "-machine", "q35", "-m", "256", "-display", "none", "-monitor", "none",
         "-nic", "none", "-no-reboot", "-serial", f"file:{log}",
         "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF / 'OVMF_CODE_4M.fd'}",
         "-drive", f"if=pflash,format=raw,unit=1,file={vars_fd}",
         "-drive", f"file={disk},format=raw,if=virtio"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            text = log.read_bytes().decode(errors="replace") if log.exists() else ""
            at = text.find("Failed to execute ")
            if at >= 0 and ")" in text[at:]:
                return text[at:].split("(", 1)[1].split(")", 1)[0].rsplit("\\", 1)[1]
            if q.poll() is not None:
                pytest.fail(f"QEMU ended: {q.stderr.read().decode()}")
            time.sleep(0.2)
        pytest.fail(f"systemd-boot started nothing in 120 s; console: {text[-2000:]}")
    finally:
        q.kill()
        q.wait()


def check_boot(disk, tmp, expect_slot):
    """The model's choice, then the real loader's; the same file under the same new name."""
    model = backend(disk)
    assert model["slot"] == expect_slot, model
    assert boot(disk, tmp) == model["starts"]
    return backend(disk)


@pytest.mark.vm
def test_upgrade_to_a_newer_release_then_its_tries_spent(tmp_path):
    disk = make_esp(tmp_path, "1.0", "2.0")
    out = backend(disk, "init:A:1.0", "stage:B:2.0:1")
    assert sorted(out["files"]) == ["ballast-a.efi", "ballast-b+1-0.efi"]
    after = check_boot(disk, tmp_path, "B")
    assert after["state"]["ballast_B_tries"] == "0" and after["state"]["ballast_B_trial"] == "1"
    check_boot(disk, tmp_path, "A")  # spent: sorted last, the older release starts


@pytest.mark.vm
def test_an_older_release_on_trial_holds_the_newer_back(tmp_path):
    disk = make_esp(tmp_path, "2.0", "1.0")
    out = backend(disk, "init:A:2.0", "stage:B:1.0:1")
    assert sorted(out["files"]) == ["ballast-a+0-0.efi", "ballast-b+1-0.efi"]
    check_boot(disk, tmp_path, "B")
    check_boot(disk, tmp_path, "A")  # both spent: the newer version first, as the model says


@pytest.mark.vm
def test_committed_older_release_and_rollback(tmp_path):
    disk = make_esp(tmp_path, "2.0", "1.0")
    backend(disk, "init:A:2.0", "stage:B:1.0:3")
    check_boot(disk, tmp_path, "B")
    out = backend(disk, "commit:B")
    assert sorted(out["files"]) == ["ballast-a+0-0.efi", "ballast-b.efi"]
    check_boot(disk, tmp_path, "B")  # the newer one stays held back
    out = backend(disk, "rollback:B")
    assert sorted(out["files"]) == ["ballast-a.efi", "ballast-b.efi"]
    check_boot(disk, tmp_path, "A")


@pytest.mark.vm
def test_the_same_release_reinstalled_in_a(tmp_path):
    # Same identity: the file name decides, and the loader puts "ballast-b" first.
    disk = make_esp(tmp_path, "1.0", "1.0")
    out = backend(disk, "init:B:1.0", "stage:A:1.0:1")
    assert sorted(out["files"]) == ["ballast-a+1-0.efi", "ballast-b+0-0.efi"]
    check_boot(disk, tmp_path, "A")
    check_boot(disk, tmp_path, "B")


def listing(disk):
    out = subprocess.run(["mdir", "-b", "-i", esp_path(disk), "::/EFI/Linux"], env=ENV, capture_output=True,
                         text=True, check=True).stdout
    return sorted(Path(line).name for line in out.split())


def fsck_esp(disk: Path):
    """fsck.vfat, read-only, on a copy of the ESP's bytes (it takes no offset)."""
    esp = disk.with_suffix(".esp")
    with open(disk, "rb") as src, open(esp, "wb") as dst:
        src.seek(ESP_START)
        dst.write(src.read())
    return subprocess.run(["fsck.vfat", "-n", str(esp)], capture_output=True, text=True)


@pytest.mark.parametrize("cut,left", [("fat.rename.pieces", ["ballast-b.off"]),
                                      ("fat.rename.both-names", ["ballast-b+3-0.efi", "ballast-b.off"]),
                                      ("fat.free.short-entry", ["ballast-b+3-0.efi"])])
def test_a_rename_cut_inside_its_directory_writes(tmp_path, cut, left):
    """The backend's renames are FAT directory writes of its own: the new name's entries, synced,
    then the old one's freed, short entry first. Killed at each step of the activation's rename,
    the ESP holds the old name, the new one, or both (one file's data under two names); the
    model's choice is then the old or the new, and the next load leaves exactly one name,
    with fsck finding nothing wrong."""
    disk = make_esp(tmp_path, "1.0", "2.0")
    backend(disk, "init:A:1.0")
    r = subprocess.run([str(build_dir() / "tests" / "boot-tool"), "sdboot", str(disk), str(ESP_START),
                        "stage:B:2.0:3"], capture_output=True, text=True,
                       env=dict(os.environ, BALLAST_FAILPOINT=cut))
    assert r.returncode == -9, r.stderr
    assert listing(disk) == sorted(["ballast-a.efi", *left])  # nothing else, no bare 8.3 name
    model = backend(disk, "load")  # finishes the record's renames, drops a second name
    assert sorted(model["files"]) == ["ballast-a.efi", "ballast-b+3-0.efi"]
    assert listing(disk) == ["ballast-a.efi", "ballast-b+3-0.efi"]
    assert model["slot"] == "B"
    f = fsck_esp(disk)
    assert f.returncode == 0, f.stdout
