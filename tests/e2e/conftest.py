"""The e2e layer: real Ballast images in QEMU. One image, built once per run by
packaging/image/build.sh into BUILD/image (reusing BUILD/deb's package, which the integration
layer's packaging test makes; the base tree is cached in /var/cache/ballast/image)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "integration" / "helpers"))
import tls  # noqa: E402

TOP = Path(__file__).resolve().parents[2]


def build_dir() -> Path:
    d = os.environ.get("BALLAST_BUILD_DIR")
    if not d:
        pytest.fail("BALLAST_BUILD_DIR is not set (run through `make test` or tests/run.sh)")
    return Path(d).resolve()


@pytest.fixture(scope="session")
def image():
    """BUILD/image with disk.img, the bundle and pki/ (signing and ssh test keys)."""
    for tool, pkg in [("qemu-system-x86_64", "qemu-system-x86"), ("ssh", "openssh-client")]:
        if not shutil.which(tool):
            pytest.fail(f"{tool} is missing: packaging/deps.sh image installs {pkg}")
    out = build_dir() / "image"
    if os.environ.get("BALLAST_E2E_REUSE_IMAGE") != "1" or not (out / "disk.img").exists():
        r = subprocess.run([str(TOP / "packaging/image/build.sh"), "--out", str(out)],
                           capture_output=True, text=True)
        (build_dir() / "image-build.log").write_text(r.stdout + r.stderr)
        assert r.returncode == 0, "image build failed:\n" + (r.stdout + r.stderr)[-4000:]
    return out


@pytest.fixture
def vm(image, tmp_path):
    from vm import Vm
    v = Vm(image, tmp_path)
    yield v
    v.power_cut()
    # Keep the serial log of a failed test next to the results.
    logs = build_dir() / "e2e-logs"
    logs.mkdir(exist_ok=True)
    shutil.copy(v.log, logs / f"{tmp_path.name}.log")


# The host as QEMU's user networking shows it to the guest.
HOST_FROM_GUEST = "10.0.2.2"


@pytest.fixture(scope="session")
def web(image, tmp_path_factory):
    """nginx on the host's loopback, reached by nodes as https://10.0.2.2:PORT, serving bundles
    made from the image's squashfs under other versions (same content, other version strings)."""
    for tool, pkg in [("nginx", "nginx"), ("openssl", "openssl")]:
        if not shutil.which(tool):
            pytest.fail(f"{tool} is missing: install the Debian package {pkg}")
    pki = tls.make_pki(tmp_path_factory.mktemp("e2e-pki"), ips=("127.0.0.1", HOST_FROM_GUEST))
    # /slow/: the same files at 8 MB/s, so a power cut can land in the middle of a write.
    d = tmp_path_factory.mktemp("e2e-web")
    n = tls.Nginx(d, pki, server_extra=f"location /slow/ {{ alias {d}/www/; limit_rate 8m; }}")
    n.pki = pki
    n.guest_url = f"https://{HOST_FROM_GUEST}:{n.port}"
    agentctl = image / "agentctl-host" / "usr" / "bin" / "agentctl"
    compatible = (image / "root" / "usr" / "lib" / "ballast" / "compatible").read_text().strip()

    def bundle(version: str, squashfs: Path | None = None, slow: bool = False) -> str:
        """A signed bundle of the image's squashfs (or another one) as VERSION; its guest URL."""
        out = n.docroot / f"ballast-{version}.tar"
        if not out.exists():
            subprocess.run([str(agentctl), "bundle", "create", "--image", str(squashfs or image / "rootfs.sqfs"),
                            "--version", version, "--compatible", compatible,
                            "--key", str(image / "pki" / "s.key"), "--cert", str(image / "pki" / "s.pem"),
                            "-o", str(out)], check=True, capture_output=True)
        return f"{n.guest_url}/{'slow/' if slow else ''}{out.name}"

    n.bundle = bundle
    n.image = image
    yield n
    n.stop()
