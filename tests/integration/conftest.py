"""Fixtures for integration tests: the real ballast-agent and agentctl on a private dbus-daemon.

Needs root (like the agent itself) and the build directory in $BALLAST_BUILD_DIR.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "helpers"))
import tls  # noqa: E402

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]

BUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  {policy}
</busconfig>
"""

# Everyone may do everything on the test bus, so that a denial can only come from the daemon.
ALLOW_ALL = """<policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>"""


def build_dir() -> Path:
    d = os.environ.get("BALLAST_BUILD_DIR")
    if not d:
        pytest.fail("BALLAST_BUILD_DIR is not set (run through `make test` or tests/run.sh)")
    return Path(d).resolve()


def need_tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.fail(f"{name} is missing: install the Debian package {package} (packaging/deps.sh does)")
    return path


@pytest.fixture(scope="session")
def bins():
    b = build_dir()
    agent, ctl = b / "agent" / "ballast-agent", b / "agent" / "agentctl"
    for p in (agent, ctl):
        if not p.exists():
            pytest.fail(f"{p} is not built")
    return {"agent": str(agent), "ctl": str(ctl)}


@pytest.fixture
def world_tmp():
    """A temp dir that an unprivileged user can traverse (sockets, copied binaries)."""
    d = tempfile.mkdtemp(prefix="ballast-it-")
    os.chmod(d, 0o755)
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


class Bus:
    def __init__(self, directory: Path, policy: str = ALLOW_ALL, extra_conf: str = ""):
        need_tool("dbus-daemon", "dbus")
        self.dir = directory
        self.socket = directory / "bus.sock"
        self.address = f"unix:path={self.socket}"
        conf = directory / "bus.conf"
        conf.write_text(BUS_CONF.format(socket=self.socket, policy=policy + extra_conf))
        self.proc = subprocess.Popen(
            ["dbus-daemon", f"--config-file={conf}", "--nofork", "--nopidfile"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: self.socket.exists(), "dbus-daemon socket")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def wait_for(pred, what, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture
def bus(world_tmp):
    b = Bus(world_tmp)
    yield b
    b.stop()


def name_owned(address: str, name: str = "org.ballast.Agent1") -> bool:
    r = subprocess.run(["busctl", f"--address={address}", "status", name],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return r.returncode == 0


class Agent:
    """A running ballast-agent."""

    def __init__(self, bins, bus: Bus, root: Path, args=(), env=None, wait=True):
        self.bins, self.bus, self.root = bins, bus, root
        root.mkdir(parents=True, exist_ok=True)
        full_env = dict(os.environ)
        full_env.pop("NOTIFY_SOCKET", None)
        full_env.pop("JOURNAL_STREAM", None)
        full_env.update(env or {})
        self.log = root.parent / (root.name + ".log")
        self.log_file = open(self.log, "w")
        self.proc = subprocess.Popen(
            [bins["agent"], "--bus-address", bus.address, "--root", str(root), *args],
            stdout=self.log_file, stderr=subprocess.STDOUT, env=full_env)
        if wait:
            wait_for(lambda: name_owned(bus.address) or self.proc.poll() is not None, "agent on the bus")
            if self.proc.poll() is not None:
                pytest.fail(f"ballast-agent exited with {self.proc.returncode}:\n{self.output()}")

    def output(self) -> str:
        self.log_file.flush()
        return self.log.read_text()

    def stop(self, sig=signal.SIGTERM, timeout=10):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=timeout)
        self.log_file.close()
        return self.proc.returncode


@pytest.fixture
def start_agent(bins, bus, world_tmp):
    started = []

    def start(args=("--booted-slot", "A"), root=None, env=None, wait=True):
        a = Agent(bins, bus, root or world_tmp / f"root{len(started)}", args, env, wait)
        started.append(a)
        return a

    yield start
    for a in started:
        a.stop(signal.SIGKILL)


@pytest.fixture
def agent(start_agent):
    return start_agent()


def ctl(bins, address, *args, nobody=False, env=None, ctl_path=None):
    """Runs agentctl; returns CompletedProcess with text output."""
    full_env = dict(os.environ)
    full_env.pop("BALLAST_BUS_ADDRESS", None)
    full_env.update(env or {})
    cmd = [ctl_path or bins["ctl"]]
    if address:
        cmd += ["--bus-address", address]
    cmd += list(args)
    if nobody:
        cmd = NOBODY + cmd
    return subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=60)


@pytest.fixture
def nobody_ctl(bins, world_tmp):
    """A copy of agentctl that the unprivileged user can execute wherever the build lives."""
    need_tool("setpriv", "util-linux")
    dst = world_tmp / "agentctl"
    shutil.copy(bins["ctl"], dst)
    os.chmod(dst, 0o755)
    return str(dst)


class NotifySocket:
    """A NOTIFY_SOCKET like systemd's: collects sd_notify datagrams."""

    def __init__(self, directory: Path):
        self.path = directory / "notify.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.messages = []

    def receive_until(self, pred, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536).decode()
            except socket.timeout:
                break
            self.messages.append(data)
            if pred(self.messages):
                return True
        return pred(self.messages)

    def close(self):
        self.sock.close()


@pytest.fixture
def notify_socket(world_tmp):
    n = NotifySocket(world_tmp)
    yield n
    n.close()


# ---------------------------------------------------------------------------------------------
# TLS test PKI and an nginx on loopback

def run_ok(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        pytest.fail(f"{cmd[0]} failed: {r.stdout}{r.stderr}")
    return r


@pytest.fixture(scope="session")
def test_pki(tmp_path_factory):
    """A CA and a server certificate for 127.0.0.1/localhost (openssl), plus a second, unrelated CA."""
    need_tool("openssl", "openssl")
    try:
        return tls.make_pki(tmp_path_factory.mktemp("pki"))
    except RuntimeError as e:
        pytest.fail(str(e))


def free_port():
    return tls.free_port()


def Nginx(directory: Path, pki: Path, server_extra: str = ""):
    need_tool("nginx", "nginx")
    try:
        return tls.Nginx(directory, pki, server_extra)
    except RuntimeError as e:
        pytest.fail(str(e))


@pytest.fixture(scope="module")
def nginx(tmp_path_factory, test_pki):
    n = Nginx(tmp_path_factory.mktemp("nginx"), test_pki)
    yield n
    n.stop()


# ---------------------------------------------------------------------------------------------
# Bundle signing PKI and slot images

CA_CNF = """[ca]
default_ca = CA_default
[CA_default]
dir = {d}
database = {d}/db/index
serial = {d}/db/serial
new_certs_dir = {d}/db
certificate = {d}/ca.pem
private_key = {d}/ca.key
default_md = sha256
policy = policy_any
copy_extensions = none
unique_subject = no
[policy_any]
commonName = supplied
[codesign]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = codeSigning
[plain]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
[serverauth]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
[nodigsig]
basicConstraints = CA:FALSE
keyUsage = critical,keyEncipherment
"""


@pytest.fixture(scope="session")
def signing_pki(tmp_path_factory):
    """A release CA with signers: `signer` (codeSigning), `plain` (no EKU), `expired`,
    `serverauth` (wrong EKU), `nodigsig` (wrong key usage); and `otherca` with its own signer."""
    need_tool("openssl", "openssl")
    d = tmp_path_factory.mktemp("signing")
    out = {}
    for ca in ("ca", "otherca"):
        cd = d / ca
        (cd / "db").mkdir(parents=True)
        (cd / "db" / "index").write_text("")
        (cd / "db" / "serial").write_text("01\n")
        run_ok(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-days", "3650", "-subj", f"/O=Ballast tests/CN={ca}", "-keyout", str(cd / "ca.key"),
                "-out", str(cd / "ca.pem"), "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        (cd / "ca.cnf").write_text(CA_CNF.format(d=cd))
        out[ca] = str(cd / "ca.pem")

    def issue(ca, name, ext, dates=None):
        cd = d / ca
        key, csr, pem = cd / f"{name}.key", cd / f"{name}.csr", cd / f"{name}.pem"
        run_ok(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(csr)])
        cmd = ["openssl", "ca", "-batch", "-config", str(cd / "ca.cnf"), "-extensions", ext, "-in", str(csr),
               "-out", str(pem)]
        cmd += ["-startdate", dates[0], "-enddate", dates[1]] if dates else ["-days", "365"]
        run_ok(cmd)
        return {"key": str(key), "cert": str(pem)}

    out["signer"] = issue("ca", "signer", "codesign")
    out["plain"] = issue("ca", "plain", "plain")
    out["expired"] = issue("ca", "expired", "codesign", ("20200101000000Z", "20210101000000Z"))
    out["serverauth"] = issue("ca", "serverauth", "serverauth")
    out["nodigsig"] = issue("ca", "nodigsig", "nodigsig")
    out["other"] = issue("otherca", "other", "codesign")
    return out


def make_slot_image(path: Path, version: str, extra_mb: int = 0, with_kernel: bool = True):
    """A squashfs root image as bundles carry it (tiny: /boot/vmlinuz, /boot/initrd.img, os-release)."""
    need_tool("mksquashfs", "squashfs-tools")
    src = path.parent / (path.name + ".d")
    (src / "boot").mkdir(parents=True)
    (src / "etc").mkdir()
    if with_kernel:
        (src / "boot" / "vmlinuz").write_bytes(b"kernel " + version.encode())
        (src / "boot" / "initrd.img").write_bytes(b"initrd " + version.encode())
    (src / "etc" / "os-release").write_text(f'ID=ballast\nVERSION_ID="{version}"\n')
    if extra_mb:
        (src / "payload").write_bytes(os.urandom(extra_mb * 1024 * 1024))
    run_ok(["mksquashfs", str(src), str(path), "-quiet", "-noappend", "-no-progress"])
    shutil.rmtree(src)
    return path
