"""Scenarios 4-6: the new slot never comes up, whatever the reason, and the node ends up on the
old one by itself. 4: the new slot's kernel panics (no usable initramfs); 5: power cut in the
middle of the image write; 6: power cut after activation, before the commit, every time. Each
starts from the fresh node after its first boot, resumed (conftest.py, booted)."""
import hashlib
import shutil
import subprocess
import time

from vm import Vm  # noqa: F401  (the fixture's type)


def slot_sha256(vm, slot: str, size: int) -> str:
    out = vm.ssh(f"head -c {size} /dev/disk/by-partlabel/BALLAST_{slot} | sha256sum").stdout
    return out.split()[0]


def wait_serial(vm, text: str, after: int, timeout: float = 300) -> int:
    """Waits for `text` on the console after offset `after`; returns its offset."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        i = vm.serial().find(text, after)
        if i >= 0:
            return i
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not on the console within {timeout} s:\n{vm.tail()}")


def test_power_cut_after_activation_every_time_falls_back(vm, web, booted):
    vm.resume(booted)
    web.trust(vm)
    r = vm.ssh(f"agentctl upgrade --no-reboot {web.bundle('6.0.0-e2e')}", timeout=600)
    assert "6.0.0-e2e" in r.stdout
    assert vm.slots()["B"]["State"] == "trial"
    vm.ssh("sync")
    vm.power_cut()
    # Three tries (update.tries), each cut as soon as B's kernel runs: never committed.
    for _ in range(3):
        pos = len(vm.serial())
        vm.start()
        wait_serial(vm, "ballast.slot=b", pos)
        vm.power_cut()
    m = vm.boot()
    assert m["slot"] == "a" and m["failed"] == "none", (m, vm.tail())
    st = vm.status()
    assert "6.0.0-e2e" in st["LastError"] and "did not come up healthy" in st["LastError"], st
    assert vm.slots()["B"]["State"] == "bad"


def test_kernel_panic_in_new_slot_falls_back(vm, web, booted, tmp_path):
    # A slot image whose kernel finds no initramfs: it cannot mount its root and panics
    # (panic=10 on GRUB's command line reboots it).
    tree = tmp_path / "broken"
    (tree / "boot").mkdir(parents=True)
    shutil.copy(web.image / "root" / "boot" / "vmlinuz", tree / "boot" / "vmlinuz")
    (tree / "boot" / "initrd.img").write_bytes(b"\0" * 4096)
    sq = tmp_path / "broken.sqfs"
    subprocess.run(["mksquashfs", str(tree), str(sq), "-comp", "xz", "-quiet", "-no-progress"], check=True)
    vm.resume(booted)
    web.trust(vm)
    vm.ssh(f"agentctl upgrade --no-reboot {web.bundle('4.0.0-broken', squashfs=sq)}", timeout=600)
    vm.ssh("systemctl reboot --no-block", check=False, timeout=30)
    pos = 0
    for _ in range(3):
        pos = wait_serial(vm, "Kernel panic", pos, timeout=300) + 1
    m = vm.wait_boot(timeout=600)
    vm.wait_ssh()
    assert m["slot"] == "a", (m, vm.tail())
    st = vm.status()
    assert "4.0.0-broken" in st["LastError"], st
    assert vm.slots()["B"]["State"] == "bad"


def test_power_cut_during_write_boots_old_slot_and_retry_succeeds(vm, web, booted):
    sqfs = web.image / "rootfs.sqfs"
    size = sqfs.stat().st_size
    url = web.bundle("5.0.0-e2e", slow=True)
    vm.resume(booted)
    web.trust(vm)
    a_before = slot_sha256(vm, "A", size)
    assert a_before == hashlib.sha256(sqfs.read_bytes()).hexdigest()
    vm.ssh(f"nohup agentctl upgrade --no-reboot {url} </dev/null >/dev/null 2>&1 &")
    # Cut once the write is under way (the journal says so), well before its end.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        j = vm.ssh("cat /var/lib/ballast/upgrade.json 2>/dev/null", check=False).stdout
        if '"writing"' in j:
            break
        time.sleep(0.5)
    else:
        raise AssertionError("the upgrade never started writing")
    time.sleep(3)
    vm.power_cut()

    m = vm.boot()
    assert m["slot"] == "a" and m["mount"] == "ok", (m, vm.tail())
    assert slot_sha256(vm, "A", size) == a_before  # the booted slot was never touched
    # The agent resumes the cut write by itself (its journal says "writing" until it is done);
    # a retry finishes it otherwise. "busy" means the resume is still running: wait, try again.
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        s = vm.slots()
        if s["B"]["Version"] == "5.0.0-e2e" and vm.status()["Operation"] == "idle":
            break
        if vm.status()["Operation"] == "idle":
            time.sleep(5)  # a resume may not have started yet
            if vm.status()["Operation"] == "idle" and vm.slots()["B"]["Version"] != "5.0.0-e2e":
                r = vm.ssh(f"agentctl upgrade --no-reboot {url}", check=False, timeout=600)
                assert r.returncode == 0 or "busy" in r.stderr, r.stdout + r.stderr
        time.sleep(2)
    s = vm.slots()
    assert s["B"]["Version"] == "5.0.0-e2e" and s["B"]["State"] == "trial" and s["B"]["Primary"], s
    assert slot_sha256(vm, "B", size) == a_before  # same squashfs under another version
    m = vm.reboot()
    assert m["slot"] == "b" and m["failed"] == "none", (m, vm.tail())
    assert vm.slots()["B"]["State"] == "good"
