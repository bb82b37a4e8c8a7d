"""A/B upgrade, boot assessment and rollback on an image-file disk with the real agent on a
private bus. `--booted-slot` plays the boot: between "boots" the GRUB harness runs our grub.cfg
on the ESP's environment files and writes back what GRUB would save, so tries count down as on
a machine."""
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import tarfile
import sys
import time
from pathlib import Path

import pytest

from conftest import Nginx, ctl, free_port, make_slot_image, need_tool, run_ok, wait_for

TOP = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TOP / "tests" / "integration" / "helpers"))
import grubsim  # noqa: E402

CFG = grubsim.compile_cfg((TOP / "overlay" / "grub" / "grub.cfg").read_text())
ENVS = ("/grub/env1/grubenv", "/grub/env2/grubenv")
COMPATIBLE = "ballast-test-amd64"


def make_bundle(bins, pki, image, out, version):
    r = ctl(bins, None, "bundle", "create", "--image", str(image), "--version", version, "--compatible",
            COMPATIBLE, "--key", pki["signer"]["key"], "--cert", pki["signer"]["cert"], "-o", str(out))
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def bundles(bins, signing_pki, tmp_path_factory):
    d = tmp_path_factory.mktemp("bundles")
    out = {}
    for v in ("1.0", "2.0", "3.0"):
        # v2 spans several 4 MiB write chunks, so a cut can land mid-stream.
        img = make_slot_image(d / f"v{v}.sqfs", v, extra_mb=14 if v == "2.0" else 3)
        out[v] = {"image": img, "tar": make_bundle(bins, signing_pki, img, d / f"v{v}.tar", v),
                  "dir": make_bundle(bins, signing_pki, img, d / f"v{v}", v)}
    return out


class Node:
    """An installed image-file disk, its root folder, and helpers to play boots."""

    def __init__(self, bins, pki, bundles, tmp: Path, start_agent, health_cmd=None, extra_settings="",
                 slot_mb=64, update_settings=""):
        need_tool("mtype", "mtools")
        self.bins, self.start_agent, self.tmp = bins, start_agent, tmp
        self.disk = tmp / "disk.img"
        subprocess.run(["truncate", "-s", "512M", str(self.disk)], check=True)
        r = ctl(bins, None, "install", "--device", str(self.disk), "--bundle", str(bundles["1.0"]["tar"]),
                "--keyring", pki["ca"], "--slot-size", str(slot_mb), "--no-reboot")
        assert r.returncode == 0, r.stderr
        parts = json.loads(subprocess.run(["sfdisk", "-J", str(self.disk)], capture_output=True, text=True,
                                          check=True).stdout)["partitiontable"]["partitions"]
        self.part = {p["name"]: (p["start"] * 512, p["size"] * 512) for p in parts}
        self.root = tmp / "root"
        (self.root / "etc/ballast").mkdir(parents=True)
        shutil.copy(pki["ca"], self.root / "etc/ballast/keyring.pem")
        self.flag = tmp / "healthy"
        self.flag.touch()
        check = health_cmd or f"test -e {self.flag}"
        (self.root / "etc/ballast/agent.yaml").write_text(
            f"update:\n  compatible: {COMPATIBLE}\n{update_settings}health:\n  commands: ['{check}']\n"
            f"  deadline: 2s\n  interval: 500ms\n{extra_settings}")
        self.agent = None

    # --- the disk ---
    def slot_bytes(self, slot, n=None):
        start, size = self.part[f"BALLAST_{slot}"]
        with open(self.disk, "rb") as f:
            f.seek(start)
            return f.read(n if n is not None else size)

    def slot_hash(self, slot):
        return hashlib.sha256(self.slot_bytes(slot)).hexdigest()

    def esp(self):
        return f"{self.disk}@@{self.part['BALLAST_EFI'][0]}"

    def env_files(self):
        env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
        return {p: subprocess.run(["mtype", "-i", self.esp(), "::" + p], capture_output=True, env=env,
                                  check=True).stdout for p in ENVS}

    def decide(self):
        """The slot GRUB would boot now (nothing written back)."""
        _, linux = grubsim.boot(CFG, self.env_files())
        return "A" if "ballast.slot=a" in linux else "B" if "ballast.slot=b" in linux else None

    def boot(self, **agent_args):
        """A reboot: stop the agent, run GRUB (saving its environment as GRUB does), start the
        agent as booted from the slot GRUB chose."""
        self.stop()
        files = self.env_files()
        _, linux = grubsim.boot(CFG, files)
        self.last_cmdline = linux
        slot = "A" if "ballast.slot=a" in linux else "B"
        env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
        for p in ENVS:
            src = self.tmp / "env.tmp"
            src.write_bytes(files[p])
            subprocess.run(["mcopy", "-o", "-i", self.esp(), str(src), "::" + p], env=env, check=True)
        self.start(slot, **agent_args)
        return slot

    # --- the agent ---
    def start(self, slot, env=None):
        self.agent = self.start_agent(args=("--booted-slot", slot, "--disk", str(self.disk), "--config",
                                            str(self.root / "etc/ballast/agent.yaml")),
                                      root=self.root, env=env)
        return self.agent

    def stop(self, sig=signal.SIGTERM):
        if self.agent:
            self.agent.stop(sig)
            self.agent = None

    def ctl(self, *args, **kw):
        return ctl(self.bins, self.agent.bus.address, *args, **kw)

    def status(self):
        r = self.ctl("status", "--json")
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    def slots(self):
        return {s["Slot"]: s for s in self.status()["Slots"]}

    def journal(self):
        p = self.root / "var/lib/ballast/upgrade.json"
        return json.loads(p.read_text()) if p.exists() else None

    def wait_idle(self, timeout=60):
        wait_for(lambda: self.status()["Operation"] == "idle", "the agent to be idle", timeout)


@pytest.fixture
def node(bins, signing_pki, bundles, tmp_path, start_agent):
    n = Node(bins, signing_pki, bundles, tmp_path, start_agent)
    yield n
    n.stop(signal.SIGKILL)


def upgrade(node, source, *extra):
    r = node.ctl("upgrade", str(source), "--no-reboot", "--json", *extra)
    lines = [json.loads(l) for l in r.stdout.splitlines() if l.strip()]
    return r, lines


def test_upgrade_commit_failed_health_fallback_and_rollback(node, bundles):
    node.start("A")
    a_hash = node.slot_hash("A")

    # v2 into B: written, verified, primary, on trial; A untouched.
    r, lines = upgrade(node, bundles["2.0"]["tar"])
    assert r.returncode == 0, r.stderr + node.agent.output()
    assert lines[-1]["ok"] and "2.0" in lines[-1]["message"]
    phases = [l["progress"]["phase"] for l in lines if "progress" in l]
    assert "writing" in phases and "verifying" in phases
    img = bundles["2.0"]["image"].read_bytes()
    assert node.slot_bytes("B", len(img)) == img
    assert node.slot_hash("A") == a_hash
    s = node.slots()
    assert s["B"]["State"] == "trial" and s["B"]["Version"] == "2.0" and s["B"]["Primary"]
    st = node.status()
    assert st["RebootRequired"] and st["Upgrade"]["State"] == "staged" and st["Upgrade"]["Target"] == "B"
    assert node.decide() == "B"

    # Boot B; the health check passes: committed.
    assert node.boot() == "B"
    assert node.slots()["B"]["State"] == "trial"
    # No factory reset while B may still fall back (to an initramfs that may predate resets).
    before = node.env_files()
    r = node.ctl("reset", "--no-reboot")
    assert r.returncode == 1 and "slot B is on trial" in r.stderr, r.stderr
    assert node.env_files() == before
    r = node.ctl("health", "--no-reboot", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    rep = json.loads(r.stdout)
    assert rep["ok"] and rep["trial"] and rep["committed"]
    s = node.slots()
    assert s["B"]["State"] == "good" and s["B"]["LastGood"] and s["B"]["Primary"]
    assert node.journal()["state"] == "committed"
    # The same version again (a fleet job re-run after the reboot it caused): nothing to do.
    before = node.env_files()
    r = node.ctl("upgrade", str(bundles["2.0"]["tar"]))
    assert r.returncode == 0 and "already running 2.0" in r.stdout, r.stdout + r.stderr
    assert node.env_files() == before and not node.status()["RebootRequired"]

    # v3 into A; its health check fails: marked bad, the next boot is B, v3 refused.
    r, lines = upgrade(node, bundles["3.0"]["dir"])
    assert r.returncode == 0, r.stderr
    assert node.boot() == "A"
    node.flag.unlink()
    r = node.ctl("health", "--no-reboot")
    assert r.returncode == 1
    assert "FAILED" in r.stdout and "marked bad" in r.stdout
    st = node.status()
    assert "3.0" in st["LastError"] and "health check" in st["LastError"]
    assert node.slots()["A"]["State"] == "bad"
    assert node.decide() == "B"
    assert node.boot() == "B"
    st = node.status()
    assert "3.0" in st["LastError"] and st["Upgrade"]["State"] == "failed"
    assert [v["Version"] for v in st["RefusedVersions"]] == ["3.0"]
    r, lines = upgrade(node, bundles["3.0"]["tar"])
    assert r.returncode == 1 and "failed on this node" in r.stderr and "--force" in r.stderr
    # Rolling back to a bad slot is refused; nothing changes.
    r = node.ctl("rollback", "--no-reboot")
    assert r.returncode == 1 and "bad" in r.stderr
    assert node.decide() == "B"

    # --force tries v3 again; this time it is healthy; then a manual rollback to B, persistently.
    node.flag.touch()
    r, lines = upgrade(node, bundles["3.0"]["tar"], "--force")
    assert r.returncode == 0, r.stderr
    assert "RefusedVersions" not in node.status()
    assert node.boot() == "A"
    assert node.ctl("health", "--no-reboot").returncode == 0
    r = node.ctl("rollback", "--no-reboot")
    assert r.returncode == 0 and "slot B is primary" in r.stdout, r.stderr
    for _ in range(3):
        assert node.boot() == "B"
    s = node.slots()
    assert s["A"]["State"] == "good" and s["B"]["State"] == "good" and s["B"]["Primary"]


def test_verity_bundle_is_veritysetups_and_its_tree_lands_in_the_slot(node, bundles, bins, signing_pki, tmp_path):
    """`bundle create --verity`: the image gains a hash tree veritysetup (the anchor) checks with
    the signed root hash; the upgrade writes tree and all into the slot, where a byte flipped
    later is caught."""
    need_tool("veritysetup", "cryptsetup-bin")
    out = tmp_path / "v2-verity"
    r = ctl(bins, None, "bundle", "create", "--image", str(bundles["2.0"]["image"]), "--version", "2.0",
            "--compatible", COMPATIBLE, "--key", signing_pki["signer"]["key"], "--cert",
            signing_pki["signer"]["cert"], "--verity", "-o", str(out))
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "manifest.json").read_text())
    v = m["verity"]
    sqfs = bundles["2.0"]["image"].read_bytes()
    img = (out / "rootfs.img").read_bytes()
    assert img[:len(sqfs)] == sqfs and not img[len(sqfs):v["hash_offset"]].strip(b"\0")
    assert v["data_blocks"] * 4096 == v["hash_offset"] >= len(sqfs) and m["image"]["size"] == len(img)
    assert [p.name for p in out.iterdir() if p.name.startswith("ballast-")] == []  # no scratch left
    verify = ["veritysetup", "verify", "--hash-offset", str(v["hash_offset"])]
    run_ok([*verify, str(out / "rootfs.img"), str(out / "rootfs.img"), v["root_hash"]])
    dump = run_ok(["veritysetup", "dump", "--hash-offset", str(v["hash_offset"]), str(out / "rootfs.img")])
    assert v["uuid"] in dump.stdout and v["salt"] in dump.stdout
    r = ctl(bins, None, "bundle", "verify", str(out), "--keyring", signing_pki["ca"])
    assert r.returncode == 0, r.stdout + r.stderr
    # The tar form holds the same image.
    tar = tmp_path / "v2-verity.tar"
    r = ctl(bins, None, "bundle", "create", "--image", str(bundles["2.0"]["image"]), "--version", "2.0",
            "--compatible", COMPATIBLE, "--key", signing_pki["signer"]["key"], "--cert",
            signing_pki["signer"]["cert"], "--verity", "-o", str(tar))
    assert r.returncode == 0, r.stderr
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("ballast-")] == []
    with tarfile.open(tar) as t:
        tm = json.loads(t.extractfile("manifest.json").read())
        timg = t.extractfile("rootfs.img").read()
    assert len(timg) == len(img) and tm["verity"]["data_blocks"] == v["data_blocks"]
    (tmp_path / "tar-rootfs.img").write_bytes(timg)
    run_ok(["veritysetup", "verify", "--hash-offset", str(tm["verity"]["hash_offset"]),
            str(tmp_path / "tar-rootfs.img"), str(tmp_path / "tar-rootfs.img"), tm["verity"]["root_hash"]])

    # Upgrade with it: the slot holds image and tree; the anchor checks the slot's bytes.
    node.start("A")
    r, lines = upgrade(node, out)
    assert r.returncode == 0 and lines[-1]["ok"], r.stderr + node.agent.output()
    assert node.slot_bytes("B", len(img)) == img
    slot = tmp_path / "slot-b.img"
    slot.write_bytes(node.slot_bytes("B", len(img)))
    run_ok([*verify, str(slot), str(slot), v["root_hash"]])
    # A byte of the slot's data changed after the write: the tree catches it.
    data = bytearray(slot.read_bytes())
    data[len(sqfs) // 2] ^= 0x01
    slot.write_bytes(bytes(data))
    bad = subprocess.run([*verify, str(slot), str(slot), v["root_hash"]], capture_output=True, text=True)
    assert bad.returncode != 0 and "Verification failed" in bad.stderr, bad.stderr


def test_tries_run_out_and_the_fallback_is_reported(node, bundles):
    node.start("A")
    r, _ = upgrade(node, bundles["2.0"]["tar"])
    assert r.returncode == 0, r.stderr
    # B never comes up healthy (no health check runs): GRUB tries it 3 times, then A.
    for _ in range(3):
        assert node.boot() == "B"
    assert node.boot() == "A"
    st = node.status()
    assert "2.0" in st["LastError"] and "did not come up healthy" in st["LastError"], st
    assert node.slots()["B"]["State"] == "bad"
    assert node.journal()["state"] == "failed"
    r, _ = upgrade(node, bundles["2.0"]["tar"])
    assert r.returncode == 1 and "failed on this node" in r.stderr


def test_operator_marks(node, bundles):
    node.start("A")
    r = node.ctl("mark-good", "B")
    assert r.returncode == 1 and "empty" in r.stderr  # nothing in B to vouch for
    r = node.ctl("rollback", "--no-reboot")
    assert r.returncode == 1 and "empty" in r.stderr, r.stderr
    assert node.decide() == "A"
    r, _ = upgrade(node, bundles["2.0"]["tar"])
    assert r.returncode == 0, r.stderr
    assert node.boot() == "B"
    r = node.ctl("mark-good")
    assert r.returncode == 0 and "slot B marked good" in r.stdout
    s = node.slots()
    assert s["B"]["State"] == "good" and s["B"]["LastGood"]
    assert node.journal()["state"] == "committed"
    r = node.ctl("mark-bad", "A", "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == {"slot": "A", "state": "bad"}
    assert node.slots()["A"]["State"] == "bad" and node.decide() == "B"
    assert node.ctl("mark-bad", "C").returncode == 2


def test_refusals_change_nothing(node, bundles, bins, signing_pki, tmp_path):
    node.start("A")
    before = node.env_files()
    other = make_bundle(bins, signing_pki, bundles["2.0"]["image"], tmp_path / "other.tar", "2.0")
    # A bundle for another machine.
    r = ctl(bins, None, "bundle", "create", "--image", str(bundles["2.0"]["image"]), "--version", "2.0",
            "--compatible", "other-arm64", "--key", signing_pki["signer"]["key"], "--cert",
            signing_pki["signer"]["cert"], "-o", str(tmp_path / "arm.tar"))
    assert r.returncode == 0
    cases = {
        tmp_path / "arm.tar": "other-arm64",
        tmp_path / "missing.tar": "no such bundle",
    }
    # A tampered image: the hash check fails while writing; B stays bad, A untouched.
    bad = tmp_path / "bad.tar"
    data = bytearray(other.read_bytes())
    with tarfile.open(other) as t:
        image = t.getmember("rootfs.img")
    data[image.offset_data + image.size // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    for src, msg in cases.items():
        r, _ = upgrade(node, src)
        assert r.returncode in (1, 2) and msg in r.stderr, r.stderr
        assert node.env_files() == before
    r, _ = upgrade(node, bad)
    assert r.returncode == 1 and "sha256" in r.stderr.lower(), r.stderr
    assert node.decide() == "A" and node.slots()["B"]["State"] == "empty"
    assert node.journal()["state"] == "failed"
    # Relative paths are made absolute by agentctl; the daemon takes absolute ones only.
    r = subprocess.run(["busctl", f"--address={node.agent.bus.address}", "call", "org.ballast.Agent1",
                        "/org/ballast/Agent1", "org.ballast.Agent1", "Upgrade", "sa{sv}", "v2.tar", "0"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "absolute" in r.stderr
    r = subprocess.run(["busctl", f"--address={node.agent.bus.address}", "call", "org.ballast.Agent1",
                        "/org/ballast/Agent1", "org.ballast.Agent1", "Upgrade", "sa{sv}", str(other), "1",
                        "Forse", "b", "true"], capture_output=True, text=True)
    assert r.returncode != 0 and "Forse" in r.stderr


def test_non_root_callers_are_denied(node, bundles, nobody_ctl):
    node.start("A")
    before = node.env_files()
    for args in (("upgrade", str(bundles["2.0"]["tar"]), "--no-reboot"), ("rollback", "--no-reboot"),
                 ("mark-good",), ("mark-bad", "B"), ("health", "--no-reboot")):
        r = node.ctl(*args, nobody=True, ctl_path=nobody_ctl)
        assert r.returncode == 4 and "needs root" in r.stderr, (args, r.stderr)
    assert node.env_files() == before


def test_factory_reset_of_the_running_node(node, nobody_ctl):
    """agentctl reset with no --device: the daemon stores the request in the boot state (root
    only), GRUB keeps it, and what the initramfs runs at the next boot (install::reset on the
    disk, played here as agentctl reset --device; the initramfs itself in tests/e2e) finishes it
    with the request's settings. A slot on trial refuses it."""
    node.start("A")
    start, _ = node.part["BALLAST_PERSISTENT"]
    at = f"{node.disk}?offset={start}"
    (node.tmp / "data").write_text("old\n")
    run_ok(["debugfs", "-w", "-R", f"write {node.tmp / 'data'} data.txt", at])
    before = node.env_files()
    r = node.ctl("reset", "--no-reboot", nobody=True, ctl_path=nobody_ctl)
    assert r.returncode == 4 and "needs root" in r.stderr, r.stderr
    r = node.ctl("reset", "--dry-run")
    assert r.returncode == 1 and "--dry-run needs --device" in r.stderr, r.stderr
    r = subprocess.run(["busctl", f"--address={node.agent.bus.address}", "call", "org.ballast.Agent1",
                        "/org/ballast/Agent1", "org.ballast.Agent1", "Reset", "a{sv}", "1", "ResetOEM", "b",
                        "true"], capture_output=True, text=True)
    assert r.returncode != 0 and "ResetOEM" in r.stderr
    assert node.env_files() == before
    r = node.ctl("--json", "reset", "--reset-oem", "--no-reboot")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"reset": "persistent and OEM", "reboot": False}
    st = node.status()
    assert st["ResetPending"] and st["ResetOem"] and st["RebootRequired"] and not st["ResetPoweroff"]
    assert "Factory reset pending: persistent and OEM wiped at the next boot" in node.ctl("status").stdout
    vars1 = dict(grubsim.env_parse(node.env_files()[ENVS[0]]))
    assert vars1["ballast_reset"] == "2" and vars1["ballast_A_ok"] == "1"
    # Asked again (without OEM): the pending request stands as it is.
    assert json.loads(node.ctl("--json", "reset", "--no-reboot").stdout)["reset"] == "persistent and OEM"
    # GRUB keeps the request through a boot (the agent's own reset waits for the initramfs).
    assert node.boot() == "A" and node.status()["ResetPending"]
    # The next boot's initramfs runs install::reset on the disk: played here by --device.
    node.stop()
    r = ctl(node.bins, None, "--json", "reset", "--device", str(node.disk))
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["resumed"] and rep["oem_wiped"]
    assert node.boot() == "A"
    st = node.status()
    assert "ResetPending" not in st and st["Slots"][0]["State"] == "good"
    assert "File not found" in subprocess.run(["debugfs", "-R", "stat /data.txt", at], capture_output=True,
                                              text=True).stderr


def test_factory_reset_of_the_running_node_follows_its_reset_block(node):
    """The node's own reset: block (its OEM config) chooses what Reset does when the caller does
    not: OEM wiped, power off when done, no reboot now. A block that does not load refuses the
    reset, naming file:line, with nothing written."""
    oem = node.root / "oem"
    oem.mkdir(exist_ok=True)
    (oem / "90_reset.yaml").write_text("#cloud-config\nreset:\n  reset-oem: perhaps\n")
    node.start("A")
    before = node.env_files()
    r = node.ctl("reset")
    assert r.returncode == 1 and "/oem/90_reset.yaml:3" in r.stderr, r.stderr
    assert node.env_files() == before and "ResetPending" not in node.status()
    (oem / "90_reset.yaml").write_text("#cloud-config\nreset:\n  reset-oem: true\n  poweroff: true\n"
                                       "  reboot: false\n")
    r = node.ctl("--json", "reset")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"reset": "persistent and OEM", "reboot": False}
    vars1 = dict(grubsim.env_parse(node.env_files()[ENVS[0]]))
    assert vars1["ballast_reset"] == "6"  # 1 + oem + 4 * poweroff
    st = node.status()
    assert st["ResetPending"] and st["ResetOem"] and st["ResetPersistent"] and st["ResetPoweroff"]
    assert "wiped at the next boot, then power off" in node.ctl("status").stdout
    # Cleared (the initramfs's part, played by --device), then the caller's options win.
    node.stop()
    r = ctl(node.bins, None, "--json", "reset", "--device", str(node.disk))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["poweroff"]
    node.start("A")
    r = node.ctl("--json", "reset", "--reset-oem=false", "--poweroff=false")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"reset": "persistent", "reboot": False}
    assert dict(grubsim.env_parse(node.env_files()[ENVS[0]]))["ballast_reset"] == "1"


def test_factory_reset_of_a_k3s_node_leaves_its_cluster_first(node):
    """A node with k3s set up leaves its cluster before the request is stored (the leave job:
    cordon, drain, delete the Node, against the k3s stand-in's API); when it cannot (the cluster
    is unreachable) the reset is refused with nothing written, and --force goes on."""
    import socket
    (node.root / "etc/hostname").write_text("edge-node\n")
    (node.root / "var/lib/ballast").mkdir(parents=True, exist_ok=True)
    (node.root / "var/lib/ballast/k3s.json").write_text('{"role": "server", "unit": "k3s.service"}\n')
    port = free_port()
    standin = subprocess.Popen([str(TOP / "tests/k3s-standin/k3s"), "server"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, K3S_STANDIN_ROOT=str(node.root), K3S_STANDIN_PORT=str(port)))
    try:
        def up():
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0
        wait_for(lambda: up() or standin.poll() is not None, "k3s stand-in listening", 30)
        assert standin.poll() is None, standin.stderr.read()
        state = node.root / "var/lib/rancher/k3s-standin"
        (state / "pods.json").write_text(json.dumps([
            {"metadata": {"name": "web-1", "namespace": "default", "ownerReferences": [{"kind": "ReplicaSet"}]},
             "spec": {"nodeName": "edge-node"}}]))
        node.start("A")
        r = node.ctl("--json", "reset", "--no-reboot")
        assert r.returncode == 0, r.stderr + node.agent.output()
        assert json.loads(r.stdout) == {"reset": "persistent", "reboot": False}
        assert (state / "evictions.log").read_text() == "default/web-1\n"
        assert json.loads((state / "deleted.json").read_text())["node"] == "edge-node"
        assert dict(grubsim.env_parse(node.env_files()[ENVS[0]]))["ballast_reset"] == "1"
    finally:
        standin.terminate()
        standin.wait(timeout=10)
    # Cleared (the initramfs's part), then the cluster is gone: refused, nothing written.
    node.stop()
    assert ctl(node.bins, None, "reset", "--device", str(node.disk)).returncode == 0
    node.start("A")
    before = node.env_files()
    r = node.ctl("reset", "--no-reboot")
    assert r.returncode != 0 and "could not leave its k3s cluster" in r.stderr and "--force" in r.stderr, r.stderr
    assert node.env_files() == before and "ResetPending" not in node.status()
    r = node.ctl("--json", "reset", "--no-reboot", "--force")
    assert r.returncode == 0, r.stderr
    assert dict(grubsim.env_parse(node.env_files()[ENVS[0]]))["ballast_reset"] == "1"
    # --graceful and --force are for this node's reset.
    r = ctl(node.bins, None, "reset", "--device", str(node.disk), "--graceful")
    assert r.returncode == 1 and "--graceful/--force is for this node's reset" in r.stderr, r.stderr


def test_recovery_once_from_the_running_node(node, bundles):
    """agentctl recovery (root only): the next boot, once, takes GRUB's recovery entry (the last
    good slot, ballast.recovery on its command line); the one after is normal again. Refused while
    the booted slot is on trial."""
    node.start("A")
    r = node.ctl("--json", "recovery", "--no-reboot")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"recovery": "A", "reboot": False}
    assert dict(grubsim.env_parse(node.env_files()[ENVS[0]]))["ballast_next"] == "r"
    assert node.status()["RecoveryNext"]
    assert "the next boot is a recovery boot" in node.ctl("status").stdout
    assert node.boot() == "A" and "ballast.recovery" in node.last_cmdline
    assert dict(grubsim.env_parse(node.env_files()[ENVS[0]]))["ballast_next"] == "0"
    assert node.boot() == "A" and "ballast.recovery" not in node.last_cmdline
    # B on trial after an upgrade, booted: refused, nothing written.
    r, _ = upgrade(node, bundles["2.0"]["tar"])
    assert r.returncode == 0, r.stderr
    assert node.boot() == "B"
    before = node.env_files()
    r = node.ctl("recovery", "--no-reboot")
    assert r.returncode != 0 and "is on trial" in r.stderr, r.stderr
    assert node.env_files() == before


def test_a_recovery_boot_upgrades_and_assesses_nothing(node, bundles):
    """The initramfs marked this boot as a recovery boot (persistent not mounted): the daemon says
    so and why, refuses upgrades, and the boot assessment commits nothing (the trial slot stays on
    trial for the next normal boot)."""
    run = node.root / "run/ballast"
    run.mkdir(parents=True, exist_ok=True)
    (run / "recovery.json").write_text('{"reason": "persistent could not be mounted: bad magic", '
                                       '"asked": false}\n')
    node.start("A")
    before = node.env_files()
    st = node.status()
    assert st["Recovery"] == {"Reason": "persistent could not be mounted: bad magic", "Asked": False}
    assert "IN RECOVERY: persistent could not be mounted: bad magic" in node.ctl("status").stdout
    r, _ = upgrade(node, bundles["2.0"]["tar"])
    assert r.returncode != 0 and "a recovery boot upgrades nothing" in r.stderr, r.stderr
    r = node.ctl("health", "--no-reboot")
    assert r.returncode != 0 and "is not assessed" in r.stdout + r.stderr, r.stdout + r.stderr
    r = node.ctl("stage", "run", "boot")
    assert r.returncode != 0 and "a recovery boot runs no cloud-config stage" in r.stderr, r.stderr
    assert not (node.root / "run/ballast/stages/boot.json").exists()
    assert node.env_files() == before


def test_stages_around_the_upgrade_and_busy(node, bundles):
    # The before-upgrade stage holds the job for a while: other mutating calls are refused.
    # Commands run chrooted into the node root: give it a shell and the tools used.
    for tool in ("/bin/dash", "/bin/sleep", "/bin/false", "/lib/x86_64-linux-gnu/libc.so.6",
                 "/lib64/ld-linux-x86-64.so.2"):
        dst = node.root / tool.lstrip("/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(tool, dst)
    os.symlink("dash", node.root / "bin/sh")
    (node.root / "oem").mkdir()
    log = node.root / "stages.log"
    (node.root / "oem/90_upgrade.yaml").write_text(f"""#cloud-config
stages:
  before-upgrade:
    - commands: ["sleep 2", "echo before >> /stages.log"]
  after-upgrade:
    - commands: ["echo after >> /stages.log"]
""")
    node.start("A")
    p = subprocess.Popen([node.bins["ctl"], "--bus-address", node.agent.bus.address, "upgrade",
                          str(bundles["2.0"]["tar"]), "--no-reboot"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    wait_for(lambda: node.status()["Operation"] != "idle" or p.poll() is not None, "the upgrade job", 30)
    assert p.poll() is None, "the upgrade ended before the busy checks"
    for args in (("upgrade", str(bundles["3.0"]["tar"])), ("rollback",), ("mark-good",)):
        r = node.ctl(*args)
        assert r.returncode == 1 and "busy" in r.stderr, r.stderr
    # The boot assessment waits for the job instead of failing the boot's health unit.
    h = subprocess.Popen([node.bins["ctl"], "--bus-address", node.agent.bus.address, "health", "--no-reboot"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    hout, herr = h.communicate(timeout=60)
    assert h.returncode == 0 and "waiting" in herr and "health: passed" in hout, hout + herr
    assert log.read_text() == "before\nafter\n"
    # A failing after-upgrade stage stops the upgrade before activation.
    node.boot()
    assert node.ctl("health", "--no-reboot").returncode == 0
    (node.root / "oem/91_fail.yaml").write_text("#cloud-config\nstages:\n  after-upgrade:\n    - commands: [\"false\"]\n")
    r, _ = upgrade(node, bundles["3.0"]["tar"])
    assert r.returncode == 1 and "after-upgrade" in r.stderr, r.stderr
    assert node.decide() == "B" and node.slots()["A"]["State"] == "empty"  # begun, never activated


# Every step of specs/ab-update.md, in order, with whether the target is active once it is done.
CRASH_POINTS = [
    ("upgrade.checked", False),        # checks done, nothing written
    ("upgrade.target-bad", False),     # target marked bad
    ("upgrade.journaled", False),      # journal: writing
    ("write.header-cleared", False),   # the target's old header gone
    ("upgrade.half-written", False),   # mid-stream
    ("write.body-written", False),     # body written and synced, no header yet
    ("write.header-written", False),   # header last
    ("upgrade.post-install", False),   # after-upgrade hooks done
    ("upgrade.activated", True),       # the one boot-control write
    ("upgrade.staged", True),          # journal: staged
]


@pytest.mark.parametrize("point,active", CRASH_POINTS, ids=[p for p, _ in CRASH_POINTS])
def test_crash_at_every_step(node, bundles, point, active):
    """kill -9 of the job at the point and of the daemon right after: GRUB boots the old slot
    until activation and the new one after, the booted slot's bytes never change, and the
    restarted daemon finishes the job (restarting an interrupted write)."""
    node.start("A", env={"BALLAST_FAILPOINT": point})
    a_hash = node.slot_hash("A")
    r, lines = upgrade(node, bundles["2.0"]["tar"])
    assert r.returncode == 1 and "status 137" in r.stderr + r.stdout or "signal" in r.stderr, r.stderr
    node.stop(signal.SIGKILL)
    assert node.slot_hash("A") == a_hash
    assert node.decide() == ("B" if active else "A")
    if not active:
        # The daemon comes back (no reboot): an interrupted write is restarted and finished.
        node.start("A")
        if point not in ("upgrade.checked", "upgrade.target-bad"):
            node.wait_idle()
            assert node.journal()["state"] == "staged", node.agent.output()
        else:  # nothing was journaled: nothing to resume
            assert node.journal() is None and node.status()["Operation"] == "idle"
            r, _ = upgrade(node, bundles["2.0"]["tar"])
            assert r.returncode == 0, r.stderr
        assert node.slot_hash("A") == a_hash
    # Either way the node now boots B on trial, and commits it.
    assert node.boot() == "B"
    assert node.ctl("health", "--no-reboot").returncode == 0, node.agent.output()
    assert node.journal()["state"] == "committed"
    s = node.slots()
    assert s["B"]["State"] == "good" and s["B"]["Version"] == "2.0" and s["A"]["State"] == "good"
    img = bundles["2.0"]["image"].read_bytes()
    assert node.slot_bytes("B", len(img)) == img


@pytest.fixture(scope="module")
def web(tmp_path_factory, test_pki, bundles):
    """nginx with the test CA's certificate; /slow/ is rate-limited so a transfer can be cut."""
    n = Nginx(tmp_path_factory.mktemp("web"), test_pki, server_extra="location /slow/ { limit_rate 3m; }")
    (n.docroot / "slow").mkdir()
    shutil.copy(bundles["2.0"]["tar"], n.docroot / "v2.tar")
    shutil.copy(bundles["2.0"]["tar"], n.docroot / "slow" / "v2.tar")
    # A bundle whose image member is longer than its (validly signed) manifest says.
    import tarfile
    src = bundles["2.0"]["dir"]
    long_img = n.dir / "long.img"
    long_img.write_bytes((src / "rootfs.img").read_bytes() + os.urandom(1 << 20))
    with tarfile.open(n.docroot / "long.tar", "w", format=tarfile.USTAR_FORMAT) as t:
        t.add(src / "manifest.json", "manifest.json")
        t.add(src / "manifest.json.sig", "manifest.json.sig")
        t.add(long_img, "rootfs.img")
    yield n
    n.stop()


@pytest.fixture
def web_node(bins, signing_pki, bundles, tmp_path, start_agent, test_pki):
    n = Node(bins, signing_pki, bundles, tmp_path, start_agent,
             extra_settings=f"http:\n  ca_file: {test_pki / 'ca.pem'}\n")
    yield n
    n.stop(signal.SIGKILL)


def test_https_download(web_node, web, bundles):
    n = web_node
    n.start("A")
    r, lines = upgrade(n, f"{web.url}/v2.tar")
    assert r.returncode == 0, r.stderr + n.agent.output()
    img = bundles["2.0"]["image"].read_bytes()
    assert n.slot_bytes("B", len(img)) == img and n.decide() == "B"


def test_https_transfer_cut_and_resumed(web_node, web, bundles):
    n = web_node
    n.start("A")
    p = subprocess.Popen([n.bins["ctl"], "--bus-address", n.agent.bus.address, "upgrade", f"{web.url}/slow/v2.tar",
                          "--no-reboot", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Cut the server once the image is partly through, then bring it back.
    wait_for(lambda: n.status().get("Progress", {}).get("Bytes", 0) > 3 << 20 or p.poll() is not None,
             "part of the image", 30)
    assert p.poll() is None
    web.proc.kill()
    web.proc.wait()
    time.sleep(0.5)
    web.start()
    out, err = p.communicate(timeout=90)
    assert p.returncode == 0, err + n.agent.output()
    assert "resuming at byte" in n.agent.output()
    log = (web.dir / "access.log").read_text()
    assert " 206 " in log.splitlines()[-1]  # the last request was a range request
    img = bundles["2.0"]["image"].read_bytes()
    assert n.slot_bytes("B", len(img)) == img and n.decide() == "B"


def test_https_failures_write_nothing(bins, signing_pki, bundles, tmp_path, start_agent, test_pki, web):
    n = Node(bins, signing_pki, bundles, tmp_path, start_agent,
             extra_settings=f"http:\n  ca_file: {test_pki / 'otherca.pem'}\n")
    n.start("A")
    before = n.env_files()
    r, _ = upgrade(n, f"{web.url}/v2.tar")
    assert r.returncode == 1 and "certificate" in r.stderr.lower(), r.stderr
    assert n.env_files() == before
    n.stop()
    (n.root / "etc/ballast/agent.yaml").write_text(
        (n.root / "etc/ballast/agent.yaml").read_text().replace("otherca.pem", "ca.pem"))
    n.start("A")
    r, _ = upgrade(n, f"{web.url}/missing.tar")
    assert r.returncode == 1 and "404" in r.stderr, r.stderr
    r, _ = upgrade(n, f"{web.url.replace('https', 'http')}/v2.tar")
    assert r.returncode == 1 and "plain http is refused" in r.stderr, r.stderr
    assert n.env_files() == before
    # More bytes than the manifest says: refused before a byte is written.
    r, _ = upgrade(n, f"{web.url}/long.tar")
    assert r.returncode == 1 and "manifest" in r.stderr, r.stderr
    assert n.env_files() == before and n.decide() == "A"
    n.stop(signal.SIGKILL)


def test_daemon_killed_mid_download_resumes(web_node, web, bundles):
    """kill -9 of the daemon while it downloads: its job dies with it (two writers never share a
    slot), and the next daemon starts the write again from the journal and finishes it."""
    n = web_node
    n.start("A")
    a_hash = n.slot_hash("A")
    p = subprocess.Popen([n.bins["ctl"], "--bus-address", n.agent.bus.address, "upgrade", f"{web.url}/slow/v2.tar",
                          "--no-reboot"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: n.status().get("Progress", {}).get("Bytes", 0) > 2 << 20, "part of the image", 30)
    n.stop(signal.SIGKILL)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 3 and "went away" in err, err
    wait_for(lambda: subprocess.run(["pgrep", "-f", f"upgrade {web.url}/slow/v2.tar"],
                                    capture_output=True).returncode != 0, "the orphaned job to die", 10)
    assert n.journal()["state"] == "writing" and n.decide() == "A"
    n.start("A")
    n.wait_idle(90)
    assert n.journal()["state"] == "staged", n.agent.output()
    assert "starting it again" in n.agent.output()
    img = bundles["2.0"]["image"].read_bytes()
    assert n.slot_bytes("B", len(img)) == img and n.decide() == "B" and n.slot_hash("A") == a_hash


def test_an_image_larger_than_the_slot_is_refused(bins, signing_pki, bundles, tmp_path, start_agent):
    n = Node(bins, signing_pki, bundles, tmp_path, start_agent, slot_mb=8)
    n.start("A")
    before = n.env_files()
    r, _ = upgrade(n, bundles["2.0"]["tar"])
    assert r.returncode == 1 and "does not fit slot B" in r.stderr, r.stderr
    assert n.env_files() == before
    n.stop(signal.SIGKILL)


@pytest.fixture
def proxy(tmp_path, web):
    """tinyproxy on loopback, allowed to CONNECT to the web server only."""
    need_tool("tinyproxy", "tinyproxy-bin")
    from conftest import free_port
    port = free_port()
    log = tmp_path / "tinyproxy.log"
    conf = tmp_path / "tinyproxy.conf"
    conf.write_text(f"Port {port}\nListen 127.0.0.1\nAllow 127.0.0.1\nTimeout 60\nLogFile \"{log}\"\n"
                    f"LogLevel Info\nMaxClients 10\nConnectPort {web.port}\n")
    p = subprocess.Popen(["tinyproxy", "-d", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import socket
    def up():
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0
    wait_for(lambda: up() or p.poll() is not None, "tinyproxy")
    yield {"url": f"http://127.0.0.1:{port}", "log": log}
    p.terminate()
    p.wait(timeout=10)


@pytest.mark.parametrize("how", ["agent.yaml", "environment"])
def test_https_through_a_proxy(bins, signing_pki, bundles, tmp_path, start_agent, test_pki, web, proxy, how):
    setting = f"  proxy: {proxy['url']}\n" if how == "agent.yaml" else ""
    n = Node(bins, signing_pki, bundles, tmp_path, start_agent,
             extra_settings=f"http:\n  ca_file: {test_pki / 'ca.pem'}\n{setting}")
    n.start("A", env={"https_proxy": proxy["url"]} if how == "environment" else None)
    r, _ = upgrade(n, f"{web.url}/v2.tar")
    assert r.returncode == 0, r.stderr + n.agent.output()
    assert f"CONNECT 127.0.0.1:{web.port}" in proxy["log"].read_text(), proxy["log"].read_text()
    img = bundles["2.0"]["image"].read_bytes()
    assert n.slot_bytes("B", len(img)) == img
    n.stop(signal.SIGKILL)


def test_progress_bar_on_a_terminal(node, bundles):
    """On a tty agentctl draws a bar with bytes, rate and ETA (script(1) provides the tty)."""
    need_tool("script", "bsdutils")
    node.start("A")
    cmd = shlex.join([node.bins["ctl"], "--bus-address", node.agent.bus.address, "upgrade",
                      str(bundles["2.0"]["tar"]), "--no-reboot"])
    r = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, timeout=60)
    out = r.stdout.decode()  # bytes: text mode would turn the bar's \r into \n
    assert r.returncode == 0, out
    assert "\r\x1b[Kwriting    [" in out and "\r\x1b[Kverifying  [###" in out, out
    assert "14.0 MiB/14.0 MiB" in out and "B/s  ETA " in out, out
    assert "upgraded to 2.0 in slot B; it boots on trial at the next reboot" in out


def test_the_only_fallback_is_never_given_up(node, bundles):
    """A staged slot cannot be made primary without its trial, and a booted slot marked bad
    keeps the other slot: an upgrade may not overwrite the last good image."""
    node.start("A")
    r, _ = upgrade(node, bundles["2.0"]["tar"])
    assert r.returncode == 0, r.stderr
    r = node.ctl("rollback", "--no-reboot")
    assert r.returncode == 1 and "on trial" in r.stderr, r.stderr
    assert node.boot() == "B"
    a_hash = node.slot_hash("A")
    node.flag.unlink()
    assert node.ctl("health", "--no-reboot").returncode == 1  # B marked bad; A stays the fallback
    node.flag.touch()
    before = node.env_files()
    r, _ = upgrade(node, bundles["3.0"]["tar"])
    assert r.returncode == 1 and "marked bad" in r.stderr and "only fallback" in r.stderr, r.stderr
    assert node.slot_hash("A") == a_hash and node.env_files() == before and node.decide() == "A"


def test_tpm2_keys_follow_the_upgrade(bins, signing_pki, bundles, tmp_path, start_agent):
    """The TPM2 token for the encrypted partition is checked before activation, and the token a
    dbx-style PCR 7 change left behind is removed after the commit."""
    from test_crypt import Swtpm, make_volume, tpm2_token
    tpm = Swtpm(tmp_path / "swtpm")
    luks, key = make_volume(tmp_path)
    enroll = ["encrypt", "enroll", "--device", str(luks), "--tpm2-device", tpm.tcti,
              "--unlock-key-file", str(key)]
    n = Node(bins, signing_pki, bundles, tmp_path, start_agent,
             extra_settings=f"tpm:\n  device: '{tpm.tcti}'\n  encrypted_device: {luks}\n")
    try:
        assert ctl(bins, None, *enroll).returncode == 0
        (old_id, _), = tpm2_token(luks).items()
        # PCR 7 changes (a dbx update), the operator enrolls for it; the old token stays.
        tpm.extend(7, "c" * 64)
        assert ctl(bins, None, *enroll).returncode == 0
        assert len(tpm2_token(luks)) == 2
        n.start("A")
        r, lines = upgrade(n, bundles["2.0"]["tar"])
        assert r.returncode == 0, r.stderr + n.agent.output()
        assert "will open" in n.agent.output()
        assert n.boot() == "B"
        r = n.ctl("health", "--no-reboot", "--json")
        assert r.returncode == 0, r.stdout + r.stderr
        rep = json.loads(r.stdout)
        assert rep["committed"] and rep["keys"] == "removed 1 stale TPM2 keyslot(s)"
        assert old_id not in tpm2_token(luks) and len(tpm2_token(luks)) == 1

        # PCR 7 changes again and nobody reseals: no token can open after the upgrade, so the
        # upgrade stops before activation; the booted slot stays primary.
        tpm.extend(7, "d" * 64)
        b_hash = n.slot_hash("B")
        r, lines = upgrade(n, bundles["3.0"]["tar"])
        assert r.returncode == 1 and "reseal with the recovery key" in r.stderr, r.stderr
        assert n.decide() == "B" and n.slot_hash("B") == b_hash
        assert n.slots()["A"]["State"] == "empty"  # begun, never activated
    finally:
        n.stop(signal.SIGKILL)
        tpm.stop()


def test_tpm2_policy_the_new_slot_changes_stops_the_upgrade(bins, signing_pki, bundles, tmp_path,
                                                              start_agent):
    from test_crypt import Swtpm, make_volume
    tpm = Swtpm(tmp_path / "swtpm")
    luks, key = make_volume(tmp_path)
    n = Node(bins, signing_pki, bundles, tmp_path, start_agent,
             extra_settings=f"tpm:\n  device: '{tpm.tcti}'\n  encrypted_device: {luks}\n  pcrs: '4,7'\n")
    try:
        n.start("A")
        r, lines = upgrade(n, bundles["2.0"]["tar"])
        assert r.returncode == 1 and "binds PCR 4" in r.stderr, r.stderr
        assert n.decide() == "A" and n.slots()["B"]["State"] == "empty"
    finally:
        n.stop(signal.SIGKILL)
        tpm.stop()


def test_tpm2_pin_tokens_and_plain_volumes_let_the_upgrade_through(bins, signing_pki, bundles, tmp_path,
                                                                    start_agent):
    from test_crypt import Swtpm, make_volume
    tpm = Swtpm(tmp_path / "swtpm")
    luks, key = make_volume(tmp_path)
    n = Node(bins, signing_pki, bundles, tmp_path, start_agent,
             extra_settings=f"tpm:\n  device: '{tpm.tcti}'\n  encrypted_device: {luks}\n")
    try:
        n.start("A")
        # A volume with only its passphrase: no TPM key to keep.
        r, lines = upgrade(n, bundles["2.0"]["tar"])
        assert r.returncode == 0, r.stderr + n.agent.output()
        assert "has no TPM2 token: nothing to do" in n.agent.output()
        assert n.boot() == "B"
        assert n.ctl("health", "--no-reboot").returncode == 0
        # Only a PIN token: its policy is checked offline (testing it would need the PIN).
        r = ctl(bins, None, "encrypt", "enroll", "--pin", "--device", str(luks), "--tpm2-device", tpm.tcti,
                "--unlock-key-file", str(key), env={"NEWPIN": "1357"})
        assert r.returncode == 0, r.stderr
        r, lines = upgrade(n, bundles["3.0"]["tar"])
        assert r.returncode == 0, r.stderr + n.agent.output()
        assert "will open" in n.agent.output()
    finally:
        n.stop(signal.SIGKILL)
        tpm.stop()


# --- OCI registries -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def registry(bins, signing_pki, bundles, tmp_path_factory, test_pki):
    """docker-registry (TLS, htpasswd) holding v2 as edge/os:2.0, pushed by `agentctl bundle push`."""
    need_tool("docker-registry", "docker-registry")
    from registry import Registry
    d = tmp_path_factory.mktemp("registry")
    try:
        reg = Registry(d, test_pki, users={"node": "n0de-Pw"})
    except RuntimeError as e:
        pytest.fail(str(e))
    reg.auth = reg.auth_file(d / "auth.json", "node", "n0de-Pw")
    r = ctl(bins, None, "--json", "bundle", "push", str(bundles["2.0"]["tar"]), f"{reg.host}/edge/os:2.0",
            "--auth-file", str(reg.auth), "--ca-file", str(test_pki / "ca.pem"))
    assert r.returncode == 0, r.stderr
    reg.v2_digest = json.loads(r.stdout)["digest"]
    yield reg
    reg.stop()


def oci_node(bins, signing_pki, bundles, tmp_path, start_agent, test_pki, auth):
    tmp_path.mkdir(parents=True, exist_ok=True)
    n = Node(bins, signing_pki, bundles, tmp_path, start_agent,
             extra_settings=f"http:\n  ca_file: {test_pki / 'ca.pem'}\n",
             update_settings="  registry_auth: /etc/ballast/registry-auth.json\n")
    shutil.copy(auth, n.root / "etc/ballast/registry-auth.json")
    return n


def test_oci_upgrade_by_tag_and_by_digest(bins, signing_pki, bundles, tmp_path, start_agent, test_pki, registry):
    n = oci_node(bins, signing_pki, bundles, tmp_path, start_agent, test_pki, registry.auth)
    try:
        n.start("A")
        before = n.env_files()
        # A digest the registry does not hold: refused before anything is written.
        r, _ = upgrade(n, f"oci://{registry.host}/edge/os@sha256:{'0' * 64}")
        assert r.returncode != 0 and "no such tag or manifest" in r.stderr, r.stderr
        r, _ = upgrade(n, f"oci://{registry.host}/edge/os:9.9")
        assert r.returncode != 0 and "no such tag or manifest" in r.stderr, r.stderr
        assert n.env_files() == before
        r, lines = upgrade(n, f"oci://{registry.host}/edge/os@{registry.v2_digest}")
        assert r.returncode == 0, r.stderr + n.agent.output()
        img = bundles["2.0"]["image"].read_bytes()
        assert n.slot_bytes("B", len(img)) == img and n.decide() == "B"
        assert "n0de-Pw" not in n.agent.output()
    finally:
        n.stop(signal.SIGKILL)
    # By tag, on a fresh node.
    n = oci_node(bins, signing_pki, bundles, tmp_path / "tag", start_agent, test_pki, registry.auth)
    try:
        n.start("A")
        r, lines = upgrade(n, f"oci://{registry.host}/edge/os:2.0")
        assert r.returncode == 0, r.stderr + n.agent.output()
        img = bundles["2.0"]["image"].read_bytes()
        assert n.slot_bytes("B", len(img)) == img and n.decide() == "B"
    finally:
        n.stop(signal.SIGKILL)


def test_oci_download_cut_and_resumed(bins, signing_pki, bundles, tmp_path, start_agent, test_pki, registry):
    from fault_proxy import FaultProxy
    proxy = FaultProxy(registry.port, test_pki)
    auth = registry.auth_file(tmp_path / "proxy-auth.json", "node", "n0de-Pw", key=proxy.host)
    n = oci_node(bins, signing_pki, bundles, tmp_path, start_agent, test_pki, auth)
    try:
        n.start("A")
        proxy.faults = [("GET", "drop-half")]
        r, _ = upgrade(n, f"oci://{proxy.host}/edge/os:2.0")
        assert r.returncode == 0, r.stderr + n.agent.output()
        assert not proxy.faults and "resuming at byte" in n.agent.output()
        # The image came in two requests: the first cut, the second a range from where it stopped.
        image_gets = [i for i, (m, p, _) in enumerate(proxy.log) if m == "GET" and p.endswith(
            json.loads((bundles["2.0"]["dir"] / "manifest.json").read_text())["image"]["sha256"])]
        assert [proxy.log[i][2] for i in image_gets] == [-1, 206]
        assert proxy.ranges[image_gets[1]].startswith("bytes=") and not proxy.ranges[image_gets[1]].startswith("bytes=0-")
        img = bundles["2.0"]["image"].read_bytes()
        assert n.slot_bytes("B", len(img)) == img and n.decide() == "B"
    finally:
        n.stop(signal.SIGKILL)
        proxy.stop()


def test_oci_registry_lies_leave_the_node_untouched(bins, signing_pki, bundles, tmp_path, start_agent, test_pki,
                                                    registry):
    """An artifact whose signed manifest is v3's but whose image layer is v2's, and one that is not
    a Ballast artifact: refused before the first byte, boot state as it was."""
    need_tool("skopeo", "skopeo")
    import hashlib
    layout = tmp_path / "layout"
    r = ctl(bins, None, "--json", "bundle", "export", str(bundles["2.0"]["dir"]), "--oci-layout", str(layout))
    assert r.returncode == 0, r.stderr
    v3 = tmp_path / "layout3"
    assert ctl(bins, None, "bundle", "export", str(bundles["3.0"]["dir"]), "--oci-layout", str(v3)).returncode == 0
    blobs = layout / "blobs" / "sha256"
    for p in (v3 / "blobs" / "sha256").iterdir():
        shutil.copy(p, blobs / p.name)
    index = json.loads((layout / "index.json").read_text())
    m2 = json.loads((blobs / index["manifests"][0]["digest"][7:]).read_text())
    m3 = json.loads((blobs / json.loads((v3 / "index.json").read_text())["manifests"][0]["digest"][7:]).read_text())

    def add(tag, manifest):
        raw = json.dumps(manifest).encode()
        digest = hashlib.sha256(raw).hexdigest()
        (blobs / digest).write_bytes(raw)
        index["manifests"].append({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                   "digest": "sha256:" + digest, "size": len(raw),
                                   "annotations": {"org.opencontainers.image.ref.name": tag}})
        (layout / "index.json").write_text(json.dumps(index))
        run_ok(["skopeo", "copy", "--dest-creds", "node:n0de-Pw", "--dest-cert-dir", str(registry.cert_dir),
                f"oci:{layout}:{tag}", f"docker://{registry.host}/edge/os:{tag}"])

    swapped = dict(m2, layers=m3["layers"][:3] + m2["layers"][3:])  # v3's signed parts, v2's image
    add("swapped", swapped)
    add("foreign", dict(m2, artifactType="application/vnd.example.other"))
    n = oci_node(bins, signing_pki, bundles, tmp_path / "node", start_agent, test_pki, registry.auth)
    try:
        n.start("A")
        before = n.env_files()
        r, _ = upgrade(n, f"oci://{registry.host}/edge/os:swapped")
        # The signed manifest (v3's) names an image of another size than the layer's (v2's).
        v3_size = json.loads((bundles["3.0"]["dir"] / "manifest.json").read_text())["image"]["size"]
        assert r.returncode != 0 and f"more than the {v3_size} the manifest says" in r.stderr, r.stderr
        r, _ = upgrade(n, f"oci://{registry.host}/edge/os:foreign")
        assert r.returncode != 0 and "not a Ballast OS artifact" in r.stderr, r.stderr
        assert n.env_files() == before and n.slots()["B"]["State"] != "bad"
    finally:
        n.stop(signal.SIGKILL)


def test_install_from_an_oci_reference(bins, signing_pki, bundles, tmp_path, test_pki, registry):
    """install.source in Kairos' oci: spelling: the bundle is checked from the registry before
    anything is written, then streamed into slot A; bad credentials change nothing."""
    root = tmp_path / "root"
    (root / "etc/ballast").mkdir(parents=True)
    shutil.copy(registry.auth, root / "etc/ballast/registry-auth.json")
    (root / "etc/ballast/agent.yaml").write_text(
        f"update:\n  registry_auth: /etc/ballast/registry-auth.json\nhttp:\n  ca_file: {test_pki / 'ca.pem'}\n")
    cfg = tmp_path / "install.yaml"
    cfg.write_text(f"#cloud-config\ninstall:\n  source: oci:{registry.host}/edge/os:2.0\n")
    disk = tmp_path / "disk.img"
    subprocess.run(["truncate", "-s", "512M", str(disk)], check=True)

    def install():
        return ctl(bins, None, "--root", str(root), "install", "--device", str(disk), "--config", str(cfg),
                   "--keyring", signing_pki["ca"], "--slot-size", "64", "--no-reboot")
    registry.auth_file(root / "etc/ballast/registry-auth.json", "node", "wrong")
    r = install()
    assert r.returncode != 0 and "401" in r.stderr, r.stderr
    with open(disk, "rb") as f:
        assert not any(f.read(4 << 20))  # no partition table: nothing written
    assert "wrong" not in r.stderr + r.stdout
    shutil.copy(registry.auth, root / "etc/ballast/registry-auth.json")
    r = install()
    assert r.returncode == 0, r.stderr
    assert f"from oci://{registry.host}/edge/os@sha256:" in r.stderr, r.stderr
    parts = json.loads(subprocess.run(["sfdisk", "-J", str(disk)], capture_output=True, text=True,
                                      check=True).stdout)["partitiontable"]["partitions"]
    start = next(p["start"] * 512 for p in parts if p["name"] == "BALLAST_A")
    img = bundles["2.0"]["image"].read_bytes()
    with open(disk, "rb") as f:
        f.seek(start)
        assert f.read(len(img)) == img


@pytest.fixture(scope="module")
def delta_bundles(bins, signing_pki, tmp_path_factory):
    """v1 and v2 sharing a 14 MiB payload; v2 adds a 256 KiB file and changes os-release."""
    d = tmp_path_factory.mktemp("delta")
    payload = os.urandom(14 << 20)
    out = {}
    for v in ("1.0", "2.0"):
        src = d / f"v{v}.d"
        (src / "boot").mkdir(parents=True)
        (src / "etc").mkdir()
        (src / "boot" / "vmlinuz").write_bytes(b"kernel")
        (src / "boot" / "initrd.img").write_bytes(b"initrd")
        (src / "etc" / "os-release").write_text(f'ID=ballast\nVERSION_ID="{v}"\n')
        (src / "payload").write_bytes(payload)
        if v == "2.0":
            (src / "new-file").write_bytes(os.urandom(256 << 10))
        img = d / f"v{v}.sqfs"
        run_ok(["mksquashfs", str(src), str(img), "-quiet", "-noappend", "-no-progress"])
        out[v] = {"image": img, "tar": make_bundle(bins, signing_pki, img, d / f"v{v}.tar", v),
                  "dir": make_bundle(bins, signing_pki, img, d / f"v{v}", v)}
    return out


@pytest.fixture
def delta_env(bins, signing_pki, delta_bundles, tmp_path, start_agent, test_pki, registry):
    """A node booted from v1 of the delta pair, a fault proxy in front of the registry holding v2,
    and v2's reference through the proxy."""
    from fault_proxy import FaultProxy
    r = ctl(bins, None, "bundle", "push", str(delta_bundles["2.0"]["tar"]), f"{registry.host}/edge/delta:2.0",
            "--auth-file", str(registry.auth), "--ca-file", str(test_pki / "ca.pem"))
    assert r.returncode == 0, r.stderr
    proxy = FaultProxy(registry.port, test_pki)
    auth = registry.auth_file(tmp_path / "proxy-auth.json", "node", "n0de-Pw", key=proxy.host)
    n = oci_node(bins, signing_pki, delta_bundles, tmp_path / "node", start_agent, test_pki, auth)
    n.start("A")
    yield n, proxy, f"oci://{proxy.host}/edge/delta:2.0"
    n.stop(signal.SIGKILL)
    proxy.stop()


def image_requests(proxy, bundle):
    """Indexes in proxy.log of the GETs of `bundle`'s image blob."""
    sha = json.loads((bundle["dir"] / "manifest.json").read_text())["image"]["sha256"]
    return [i for i, (m, p, _) in enumerate(proxy.log) if m == "GET" and p.endswith(sha)]


def test_oci_delta_fetches_only_what_the_booted_slot_lacks(delta_env, delta_bundles):
    n, proxy, ref = delta_env
    r, lines = upgrade(n, ref)
    assert r.returncode == 0, r.stderr + n.agent.output()
    img = delta_bundles["2.0"]["image"].read_bytes()
    assert n.slot_bytes("B", len(img)) == img and n.decide() == "B"
    assert "range requests;" in n.agent.output()
    assert f"of {len(img)} bytes downloaded)" in lines[-1]["message"], lines[-1]
    # Progress of a delta counts the bytes downloaded, against the figure planned.
    downloading = [l["progress"] for l in lines if l.get("progress", {}).get("phase") == "downloading"]
    assert downloading and downloading[-1]["total"] < len(img) // 4, downloading[-1:]
    # The index of what slot B now holds is kept for the next delta.
    assert (n.root / "var/lib/ballast/slot-index/B.bcidx").read_bytes() == \
        (delta_bundles["2.0"]["dir"] / "rootfs.bcidx").read_bytes()
    gets = image_requests(proxy, delta_bundles["2.0"])
    fetched = sum(proxy.sizes[i] for i in gets)
    # Every image request a single range; well under a quarter of the image on the wire.
    assert gets and all(proxy.ranges[i].startswith("bytes=") and "," not in proxy.ranges[i] for i in gets)
    assert fetched < len(img) // 4, (fetched, len(img))


def test_oci_delta_chunk_that_lies_stops_the_upgrade(delta_env):
    n, proxy, ref = delta_env
    a_hash = n.slot_hash("A")
    proxy.faults = [("GET", "corrupt")]
    r, _ = upgrade(n, ref)
    assert r.returncode != 0 and "does not match the signed chunk index" in r.stderr, r.stderr
    assert "from the registry" in r.stderr
    assert n.decide() == "A" and n.slot_hash("A") == a_hash
    assert n.slots()["B"]["State"] in ("bad", "empty")


def test_oci_delta_through_a_cache_that_ignores_ranges(delta_env, delta_bundles):
    n, proxy, ref = delta_env
    proxy.ignore_ranges = True
    r, _ = upgrade(n, ref)
    assert r.returncode == 0, r.stderr + n.agent.output()
    assert "answers ranges with the whole image" in n.agent.output()
    img = delta_bundles["2.0"]["image"].read_bytes()
    assert n.slot_bytes("B", len(img)) == img and n.decide() == "B"
    # One range request answered whole, then one stream for the rest: not one per range.
    assert len(image_requests(proxy, delta_bundles["2.0"])) <= 2


def planned(output, nth=-1):
    """(to fetch, copied, in place) from the agent's 'N of M bytes to download' log lines."""
    import re
    found = re.findall(r"(\d+) of \d+ bytes to download in \d+ range requests; (\d+) bytes copied from the "
                       r"booted slot, (\d+) already in place", output)
    assert found, output
    return tuple(int(x) for x in found[nth])


def test_oci_delta_dry_run_says_what_it_would_fetch(delta_env, delta_bundles):
    n, proxy, ref = delta_env
    before, b_hash = n.env_files(), n.slot_hash("B")
    r = n.ctl("upgrade", "--dry-run", ref)
    assert r.returncode == 0, r.stderr + n.agent.output()
    img = delta_bundles["2.0"]["image"].read_bytes()
    assert "dry run: would upgrade from 1.0 to 2.0 in slot B" in r.stdout, r.stdout
    fetch, copied, in_place = planned(n.agent.output())
    assert f"{fetch} of {len(img)} bytes to download" in r.stdout and in_place == 0
    assert 0 < fetch < len(img) // 4 and fetch + copied >= len(img) - 65536
    # Nothing written, nothing journaled, no byte of the image fetched.
    assert n.env_files() == before and n.slot_hash("B") == b_hash and n.journal() is None
    assert not image_requests(proxy, delta_bundles["2.0"]) and n.status()["Operation"] == "idle"
    assert not n.status()["RebootRequired"]
    # The upgrade then downloads what the dry run said.
    r, lines = upgrade(n, ref)
    assert r.returncode == 0, r.stderr
    assert f"({fetch} of {len(img)} bytes downloaded)" in lines[-1]["message"], lines[-1]


def test_oci_delta_killed_mid_write_resumes_from_the_target(delta_env, delta_bundles):
    """kill -9 at half the write: the restarted daemon re-plans, keeps what is already correct in
    slot B, and fetches only what is still missing."""
    n, proxy, ref = delta_env
    n.stop(signal.SIGKILL)
    n.start("A", env={"BALLAST_FAILPOINT": "upgrade.half-written"})
    r, _ = upgrade(n, ref)
    assert r.returncode != 0
    first_fetch, _, _ = planned(n.agent.output())
    n.stop(signal.SIGKILL)
    assert n.journal()["state"] == "writing" and n.decide() == "A"
    n.start("A")
    n.wait_idle(90)
    assert n.journal()["state"] == "staged", n.agent.output()
    fetch, copied, in_place = planned(n.agent.output())
    # v2's new file lies early in the image: written before the kill, it is not fetched again.
    assert in_place > 256 << 10 and fetch < first_fetch, (first_fetch, fetch, in_place)
    img = delta_bundles["2.0"]["image"].read_bytes()
    assert n.slot_bytes("B", len(img)) == img and n.decide() == "B"


@pytest.mark.parametrize("status", [416, 501])
def test_oci_delta_when_ranges_are_refused(delta_env, delta_bundles, status):
    """A server that does no ranges (416 or 501): one plain GET of the whole blob instead."""
    n, proxy, ref = delta_env
    proxy.refuse_ranges = status
    r, _ = upgrade(n, ref)
    assert r.returncode == 0, r.stderr + n.agent.output()
    assert f"HTTP {status} to a range request" in n.agent.output()
    img = delta_bundles["2.0"]["image"].read_bytes()
    assert n.slot_bytes("B", len(img)) == img and n.decide() == "B"
    gets = image_requests(proxy, delta_bundles["2.0"])
    assert [proxy.log[i][2] for i in gets] == [status, 200] and proxy.ranges[gets[1]] == ""


def test_oci_registry_lies_about_a_delta(delta_env, delta_bundles):
    """A truncated image blob: found while writing, the upgrade fails with slot A and the boot
    order as they were. A chunk index that does not match its digest, a manifest that is not the
    one whose digest was asked for: refused before anything is written."""
    import hashlib
    n, proxy, ref = delta_env
    a_hash = n.slot_hash("A")
    img = delta_bundles["2.0"]["image"].read_bytes()
    proxy.truncate_at = len(img) - 100_000
    r, _ = upgrade(n, ref)
    assert r.returncode != 0 and "HTTP 416 to a range request" in r.stderr, r.stderr + n.agent.output()
    assert "shorter than its digest's" in r.stderr
    assert n.decide() == "A" and n.slot_hash("A") == a_hash
    proxy.truncate_at = None
    before = n.env_files()

    idx = hashlib.sha256((delta_bundles["2.0"]["dir"] / "rootfs.bcidx").read_bytes()).hexdigest()
    proxy.corrupt_path = idx
    r, _ = upgrade(n, ref)
    assert r.returncode != 0 and "chunk index that does not match the signed manifest" in r.stderr, r.stderr
    proxy.corrupt_path = None

    proxy.manifest_body = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}'
    r, _ = upgrade(n, ref.replace(":2.0", "@sha256:" + "1" * 64))
    assert r.returncode != 0 and "not the one asked for" in r.stderr, r.stderr
    assert n.env_files() == before and n.slot_hash("A") == a_hash


def test_oci_delta_through_a_pull_through_cache(bins, delta_env, delta_bundles, tmp_path, test_pki):
    """Debian's docker-registry as a pull-through cache of another: on a miss it answers a range
    with the whole blob (200); the node notices and takes the rest in one stream."""
    from registry import Registry
    n, _, _ = delta_env
    try:
        origin = Registry(tmp_path / "origin", test_pki)
        cache = Registry(tmp_path / "cache", test_pki, upstream=origin.host)
    except RuntimeError as e:
        pytest.fail(str(e))
    try:
        r = ctl(bins, None, "bundle", "push", str(delta_bundles["2.0"]["tar"]), f"{origin.host}/edge/delta:2.0",
                "--ca-file", str(test_pki / "ca.pem"))
        assert r.returncode == 0, r.stderr
        r, _ = upgrade(n, f"oci://{cache.host}/edge/delta:2.0")
        assert r.returncode == 0, r.stderr + n.agent.output()
        img = delta_bundles["2.0"]["image"].read_bytes()
        assert n.slot_bytes("B", len(img)) == img and n.decide() == "B"
        assert "answers ranges with the whole image" in n.agent.output()
    finally:
        cache.stop()
        origin.stop()


def test_oci_delta_token_expires_mid_download(bins, signing_pki, delta_bundles, tmp_path, start_agent, test_pki):
    """A registry behind the tests' Bearer token service: a 401 in the middle of the delta (the
    token expired) gets the node a new token, and the download goes on."""
    from fault_proxy import FaultProxy
    from registry import Registry
    from token_server import TokenServer
    for d in ("tokens", "registry"):
        (tmp_path / d).mkdir()
    try:
        tokens = TokenServer(tmp_path / "tokens", test_pki, {"edge": "t0ken-Pw"})
        reg = Registry(tmp_path / "registry", test_pki, auth=tokens.registry_auth())
    except RuntimeError as e:
        pytest.fail(str(e))
    proxy = FaultProxy(reg.port, test_pki)
    n = None
    try:
        auth = reg.auth_file(tmp_path / "push-auth.json", "edge", "t0ken-Pw")
        r = ctl(bins, None, "bundle", "push", str(delta_bundles["2.0"]["tar"]), f"{reg.host}/edge/delta:2.0",
                "--auth-file", str(auth), "--ca-file", str(test_pki / "ca.pem"))
        assert r.returncode == 0, r.stderr
        issued = tokens.issued
        node_auth = reg.auth_file(tmp_path / "node-auth.json", "edge", "t0ken-Pw", key=proxy.host)
        n = oci_node(bins, signing_pki, delta_bundles, tmp_path / "node", start_agent, test_pki, node_auth)
        n.start("A")
        proxy.faults = [("GET", "401")]
        r, _ = upgrade(n, f"oci://{proxy.host}/edge/delta:2.0")
        assert r.returncode == 0, r.stderr + n.agent.output()
        assert not proxy.faults and ("GET", 401) in [(m, s) for m, _, s in proxy.log]
        assert tokens.issued >= issued + 2  # the first token, and one after the 401
        img = delta_bundles["2.0"]["image"].read_bytes()
        assert n.slot_bytes("B", len(img)) == img and n.decide() == "B"
        assert "t0ken-Pw" not in n.agent.output()
    finally:
        if n:
            n.stop(signal.SIGKILL)
        proxy.stop()
        reg.stop()
        tokens.stop()
