"""The e2e layer: real Ballast images in QEMU. One image, built once per run by
packaging/image/build.sh into BUILD/image (reusing BUILD/deb's package, which the integration
layer's packaging test makes; the base tree is cached in /var/cache/ballast/image)."""
import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "integration" / "helpers"))

TOP = Path(__file__).resolve().parents[2]


def build_dir() -> Path:
    d = os.environ.get("BALLAST_BUILD_DIR")
    if not d:
        pytest.fail("BALLAST_BUILD_DIR is not set (run through `make test` or tests/run.sh)")
    return Path(d).resolve()


# tests/run.sh runs this layer on two workers (pytest-xdist, --dist loadgroup): the longest file
# and two short scenarios (files, or file::test) on one, every other scenario on the second, so
# that both finish about together (xdist's file scheduling would hand one worker two files up
# front and leave the other idle). Node seconds of the run of 2026-12-07: upgrade 554, unlock
# benchmark 55, first boot 61 against reset 136, damaged persistent 168, panic 119, power cut
# after activation 93, during the write 156.
ALONE = ("test_upgrade.py", "test_unlock_bench.py",
         "test_first_boot.py::test_first_boot_applies_oem_and_keeps_persistent_state")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the marks into the test ids
def pytest_collection_modifyitems(items):
    for item in items:
        alone = item.path.name in ALONE or f"{item.path.name}::{item.name}" in ALONE
        item.add_marker(pytest.mark.xdist_group(name="alone" if alone else "shared"))


@pytest.fixture(scope="session")
def image(testrun_uid):
    """BUILD/image with disk.img, the bundle and pki/ (signing and ssh test keys). Built once a
    run: the first worker to get the lock builds it, the others wait for it and take it."""
    for tool, pkg in [("qemu-system-x86_64", "qemu-system-x86"), ("ssh", "openssh-client"),
                      ("swtpm", "swtpm")]:
        if not shutil.which(tool):
            pytest.fail(f"{tool} is missing: packaging/deps.sh image installs {pkg}")
    out = build_dir() / "image"
    stamp = build_dir() / "image.run"
    with open(build_dir() / "image.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists() and stamp.read_text() == testrun_uid:
            return out
        stamp.unlink(missing_ok=True)
        build_image(out)
        stamp.write_text(testrun_uid)
    return out


def extra_packages() -> list[str]:
    text = (Path(__file__).parent / "extra-packages.list").read_text()
    return [w for line in text.splitlines() for w in line.split("#", 1)[0].split()]


def build_image(out: Path):
    if os.environ.get("BALLAST_E2E_REUSE_IMAGE") != "1" or not (out / "disk.img").exists():
        # Only this test image carries what the image a user flashes does without: the packages
        # of extra-packages.list (the k3s stand-in's Python, GRUB's EFI modules for an install
        # run on a node); and network config in OEM (oem-network.yaml), which the demo image
        # leaves out. `make test` may have started the base tree already (build.sh --base-only,
        # BUILD/image-base.log): build.sh waits for it.
        r = subprocess.run([str(TOP / "packaging/image/build.sh"), "--out", str(out), "--extra-packages",
                            " ".join(extra_packages()),
                            "--oem", str(Path(__file__).parent / "oem-network.yaml")],
                           capture_output=True, text=True)
        (build_dir() / "image-build.log").write_text(r.stdout + r.stderr)
        assert r.returncode == 0, "image build failed:\n" + (r.stdout + r.stderr)[-4000:]


# Every node has a blank second disk: the encrypted install (encrypted.py) installs onto it, and a
# resumed node (booted, below) must have the devices its saved state has.
SPARE_DISK = "1200M"


def keep_logs(v, name: str):
    """The node's serial log and timeline next to the results (BUILD/e2e-logs)."""
    logs = build_dir() / "e2e-logs"
    logs.mkdir(exist_ok=True)
    if v.log.exists():
        shutil.copy(v.log, logs / f"{name}.log")
    if v.timeline.exists():
        shutil.copy(v.timeline, logs / f"{name}.timeline.txt")


@pytest.fixture(scope="session")
def booted(image, testrun_uid):
    """A fresh node right after its first boot, saved whole (Vm.save): the scenarios resume it
    (Vm.resume) in a few seconds instead of each booting a fresh node, about a minute under TCG.
    That first boot is real and checked by test_first_boot.py; each scenario gets its own copy of
    the disks, TPM and variables (the copies share its machine id and host keys; a scenario that
    compares nodes boots its own). Made once a run, by the first worker that needs it, while the
    other waits; if that boot fails, every scenario that needs it fails with its reason."""
    from vm import Vm
    d = build_dir() / "booted"
    stamp = build_dir() / "booted.run"
    with open(build_dir() / "booted.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = stamp.read_text() if stamp.exists() else ""
        if done == testrun_uid:
            return d / "saved"
        if done.startswith(f"{testrun_uid} failed: "):
            pytest.fail(f"the saved fresh node could not be made ({done.split(': ', 1)[1]}); "
                        "BUILD/e2e-logs/booted.log")
        stamp.unlink(missing_ok=True)
        shutil.rmtree(d, ignore_errors=True)
        (d / "node").mkdir(parents=True)
        v = Vm(image, d / "node")
        v.extra_disks = [d / "node" / "spare.img"]
        subprocess.run(["truncate", "-s", SPARE_DISK, str(v.extra_disks[0])], check=True)
        try:
            v.boot()
            v.save(d / "saved")
        except Exception as e:
            stamp.write_text(f"{testrun_uid} failed: {(str(e).splitlines() or [repr(e)])[0][:300]}")
            raise
        finally:
            v.power_cut()
            keep_logs(v, "booted")
            shutil.rmtree(d / "node", ignore_errors=True)  # its disks are copied in saved/
        stamp.write_text(testrun_uid)
    return d / "saved"


@pytest.fixture
def vm(image, tmp_path):
    from vm import Vm
    v = Vm(image, tmp_path)
    yield v
    v.power_cut()
    keep_logs(v, tmp_path.name)


@pytest.fixture(scope="session")
def web(image, tmp_path_factory):
    """The update server (web.py): nginx with a test PKI, bundles of the image's squashfs."""
    for tool, pkg in [("nginx", "nginx"), ("openssl", "openssl")]:
        if not shutil.which(tool):
            pytest.fail(f"{tool} is missing: install the Debian package {pkg}")
    from web import Web
    w = Web(image, tmp_path_factory.mktemp("e2e-web"))
    yield w
    w.stop()
