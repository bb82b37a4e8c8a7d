"""agentctl reset on image files: a plain and an encrypted persistent partition (swtpm) erased and
made anew, OEM kept or wiped, the slots and boot state kept, the old key useless, a kill at each
step finished by the next run, and every refusal writing nothing."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ctl, need_tool, run_ok
from test_install import bundle, images, new_disk  # noqa: F401 (images: a fixture)

TOP = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TOP / "tests" / "integration" / "helpers"))
import grubsim  # noqa: E402

MiB = 1024 * 1024


class Disk:
    """An installed image file, addressed by partition label."""

    def __init__(self, path):
        self.path = path
        t = json.loads(run_ok(["sfdisk", "-J", str(path)]).stdout)["partitiontable"]["partitions"]
        self.parts = {p["name"]: (p["start"] * 512, p["size"] * 512) for p in t}

    def at(self, label):
        return f"{self.path}?offset={self.parts[label][0]}"

    def read(self, label, n=None):
        start, size = self.parts[label]
        with open(self.path, "rb") as f:
            f.seek(start)
            return f.read(size if n is None else n)

    def debugfs(self, label, request, write=False):
        return subprocess.run(["debugfs", *(["-w"] if write else []), "-R", request, self.at(label)],
                              capture_output=True, text=True)

    def boot_vars(self):
        esp = f"{self.path}@@{self.parts['BALLAST_EFI'][0]}"
        env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
        copies = [subprocess.run(["mtype", "-i", esp, f"::/grub/env{i}/grubenv"], capture_output=True,
                                 env=env, check=True).stdout for i in (1, 2)]
        assert copies[0] == copies[1]
        return dict(grubsim.env_parse(copies[0]))

    def luks_dump(self, tmp):
        img = tmp / "persistent.img"
        img.write_bytes(self.read("BALLAST_PERSISTENT", 32 * MiB))
        return img, json.loads(run_ok(["cryptsetup", "luksDump", "--dump-json-metadata", str(img)]).stdout)


def opens(header_img, key, tmp):
    kf = tmp / "key"
    kf.write_text(key)
    return subprocess.run(["cryptsetup", "open", "--test-passphrase", "--key-file", str(kf), str(header_img)],
                          capture_output=True).returncode == 0


def install(bins, pki, images, tmp, cfg_text="#cloud-config\nhostname: edge-1\n", tpm=None):
    need_tool("sfdisk", "fdisk")
    b = bundle(bins, pki, images["v1"], tmp / "v1.tar")
    disk = new_disk(tmp / "disk.img", 512)
    cfg = tmp / "node.yaml"
    cfg.write_text(cfg_text)
    extra = ["--tpm2-device", tpm.tcti] if tpm else []
    r = ctl(bins, None, "--json", "install", "--device", str(disk), "--bundle", str(b), "--keyring", pki["ca"],
            "--config", str(cfg), "--slot-size", "64", "--persistent-size", "64", *extra)
    assert r.returncode == 0, r.stderr
    return Disk(disk), json.loads(r.stdout)


def reset(bins, disk, *args, env=None):
    return ctl(bins, None, "--json", "reset", "--device", str(disk.path), *args, env=env)


def test_reset_of_a_plain_persistent_partition(bins, signing_pki, images, tmp_path):
    d, _ = install(bins, signing_pki, images, tmp_path)
    (tmp_path / "data").write_text("old data\n")
    d.debugfs("BALLAST_PERSISTENT", f"write {tmp_path / 'data'} data.txt", write=True)
    slot_a, before_vars = d.read("BALLAST_A"), d.boot_vars()

    # Dry run: the plan, nothing written.
    whole = d.path.read_bytes()
    r = reset(bins, d, "--dry-run")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["dry_run"] and plan["persistent_before"] == "ext4" and not plan["oem_wiped"]
    assert d.path.read_bytes() == whole

    # Stages around it, from --config.
    marks = tmp_path / "marks"
    cfg = tmp_path / "reset.yaml"
    cfg.write_text("#cloud-config\nstages:\n"
                   f"  before-reset:\n    - commands: ['echo before >> {marks}']\n"
                   f"  after-reset:\n    - commands: ['echo after >> {marks}']\n")
    r = reset(bins, d, "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["erased"] in ("discard", "reformat (the device cannot discard)") and "encryption" not in rep
    assert marks.read_text() == "before\nafter\n"
    # Persistent is a new, clean ext4 without the old file; OEM, slot A and the boot state stay.
    assert "File not found" in d.debugfs("BALLAST_PERSISTENT", "stat /data.txt").stderr
    assert "hostname: edge-1" in d.debugfs("BALLAST_OEM", "cat /10_node.yaml").stdout
    assert d.read("BALLAST_A") == slot_a
    assert d.boot_vars() == before_vars and before_vars["ballast_reset"] == "0"
    fs = run_ok(["dumpe2fs", "-h", d.at("BALLAST_PERSISTENT")]).stdout
    assert "volume name:   BALLAST_PERSISTE\n" in fs

    # A failing after-reset stage fails the command, after the reset and its report.
    cfg.write_text("#cloud-config\nstages:\n  after-reset:\n    - commands: ['exit 3']\n")
    r = ctl(bins, None, "reset", "--device", str(d.path), "--config", str(cfg))
    assert r.returncode == 1 and "after-reset stage" in r.stderr and "made anew as ext4" in r.stdout, r.stderr
    assert d.boot_vars()["ballast_reset"] == "0"

    # --reset-oem: OEM's cloud-config goes too.
    r = reset(bins, d, "--reset-oem")
    assert r.returncode == 0 and json.loads(r.stdout)["oem_wiped"], r.stderr
    assert "File not found" in d.debugfs("BALLAST_OEM", "stat /10_node.yaml").stderr
    assert "volume name:   BALLAST_OEM\n" in run_ok(["dumpe2fs", "-h", d.at("BALLAST_OEM")]).stdout


def test_reset_keys_of_the_cloud_config(bins, signing_pki, images, tmp_path):
    """Kairos' reset: block in --config: reset-oem and reset-persistent as defaults the command line
    overrides; OEM-only resets keep persistent's data, survive a kill and finish as asked; bad
    blocks and contradictions are refused before anything is written."""
    d, _ = install(bins, signing_pki, images, tmp_path)
    (tmp_path / "data").write_text("kept data\n")
    d.debugfs("BALLAST_PERSISTENT", f"write {tmp_path / 'data'} data.txt", write=True)
    cfg = tmp_path / "reset.yaml"

    def refused(text, *args, why):
        cfg.write_text(text)
        whole = d.path.read_bytes()
        r = reset(bins, d, "--config", str(cfg), *args)
        assert r.returncode == 1 and why in r.stderr, r.stderr
        assert d.path.read_bytes() == whole

    refused("#cloud-config\nreset:\n  reset-persistent: maybe\n", why=f"{cfg}:3")
    refused("#cloud-config\nreset:\n  reset-persistent: false\n",
            why="reset-persistent and reset-oem are both false")
    refused("#cloud-config\nreset:\n  reset-persistent: false\n  reset-oem: true\n", "--encrypt",
            why="--encrypt remakes persistent, which this reset keeps")
    refused("#cloud-config\nhostname: x\n", "--poweroff", why="--poweroff is for this node's reset")
    refused("#cloud-config\nhostname: x\n", "--no-reboot", why="--reboot/--no-reboot is for this node's reset")
    # The command line wins over the block: nothing to reset.
    refused("#cloud-config\nreset:\n  reset-oem: true\n", "--reset-oem=false", "--reset-persistent=false",
            why="nothing to reset")

    # OEM only, killed once its request is stored: a plain run (no config) finishes it as asked.
    cfg.write_text("#cloud-config\nreset:\n  reset-persistent: false\n  reset-oem: true\n")
    r = reset(bins, d, "--config", str(cfg), env={"BALLAST_FAILPOINT": "reset.requested"})
    assert r.returncode == -9, r.stdout + r.stderr
    assert d.boot_vars()["ballast_reset"] == "a"  # 1 + oem + 8 * persistent kept
    r = reset(bins, d)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["resumed"] and rep["oem_wiped"] and not rep["persistent_wiped"] and rep["erased"] == ""
    assert "File not found" in d.debugfs("BALLAST_OEM", "stat /10_node.yaml").stderr
    assert "kept data" in d.debugfs("BALLAST_PERSISTENT", "cat /data.txt").stdout
    assert d.boot_vars()["ballast_reset"] == "0"
    r = ctl(bins, None, "reset", "--device", str(d.path), "--config", str(cfg), "--dry-run")
    assert r.returncode == 0 and "BALLAST_PERSISTENT kept (reset-persistent: false)" in r.stdout, r.stdout

    # reset-oem: true in the block; --reset-oem=false keeps OEM for one run.
    run_ok(["debugfs", "-w", "-R", f"write {tmp_path / 'data'} mine.yaml", d.at("BALLAST_OEM")])
    cfg.write_text("#cloud-config\nreset:\n  reset-oem: true\n  source: oci:quay.io/x/y\n")
    r = reset(bins, d, "--config", str(cfg), "--reset-oem=false")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["persistent_wiped"] and not rep["oem_wiped"]
    assert "File not found" in d.debugfs("BALLAST_PERSISTENT", "stat /data.txt").stderr
    assert "kept data" in d.debugfs("BALLAST_OEM", "cat /mine.yaml").stdout
    r = reset(bins, d, "--config", str(cfg))
    assert r.returncode == 0 and json.loads(r.stdout)["oem_wiped"], r.stderr
    assert "File not found" in d.debugfs("BALLAST_OEM", "stat /mine.yaml").stderr


def test_reset_refusals_write_nothing(bins, signing_pki, images, tmp_path):
    # Not a Ballast disk.
    blank = new_disk(tmp_path / "blank.img", 64)
    r = ctl(bins, None, "reset", "--device", str(blank))
    assert r.returncode == 1 and "no BALLAST_OEM partition: not a Ballast disk" in r.stderr, r.stderr
    assert blank.read_bytes() == b"\0" * (64 * MiB)
    # Without --device the daemon is asked (tests/integration/test_upgrade.py): what only a
    # disk reset takes is refused before any bus call.
    r = ctl(bins, None, "reset", "--dry-run")
    assert r.returncode == 1 and "--dry-run needs --device" in r.stderr, r.stderr
    d, _ = install(bins, signing_pki, images, tmp_path)
    whole = d.path.read_bytes()
    # Encryption asked for, no TPM: refused before anything is written.
    r = reset(bins, d, "--encrypt", "--tpm2-device", "swtpm:host=127.0.0.1,port=1")
    assert r.returncode == 3 and "reset of an encrypted BALLAST_PERSISTENT needs a TPM2" in r.stderr, r.stderr
    assert d.path.read_bytes() == whole
    # A damaged boot state: not a disk this can reset safely.
    esp = f"{d.path}@@{d.parts['BALLAST_EFI'][0]}"
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    for i in (1, 2):
        subprocess.run(["mdel", "-i", esp, f"::/grub/env{i}/grubenv"], env=env, check=True)
    whole = d.path.read_bytes()
    r = reset(bins, d)
    assert r.returncode != 0 and "boot state" in r.stderr, r.stderr
    assert d.path.read_bytes() == whole


def test_reset_mounted_disk_is_refused(bins, signing_pki, images, tmp_path):
    need_tool("losetup", "mount")
    d, _ = install(bins, signing_pki, images, tmp_path)
    mnt = tmp_path / "mnt"
    mnt.mkdir()

    def mounted(label, fstype="ext4"):
        start, size = d.parts[label]
        run_ok(["mount", "-t", fstype, "-o", f"loop,ro,offset={start},sizelimit={size}", str(d.path), str(mnt)])

    # OEM counts only when it is to be wiped.
    for label, args in (("BALLAST_OEM", ["--reset-oem"]), ("BALLAST_PERSISTENT", [])):
        mounted(label)
        try:
            whole = d.path.read_bytes()
            r = reset(bins, d, *args)
            assert r.returncode == 1 and f"is in use: its {label} is mounted at {mnt}" in r.stderr, r.stderr
            assert d.path.read_bytes() == whole
        finally:
            subprocess.run(["umount", str(mnt)], check=True)
    # The running slot mounted (as in the initramfs) does not stop it, nor a kept OEM.
    mounted("BALLAST_OEM")
    try:
        assert reset(bins, d).returncode == 0
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    mounted("BALLAST_A", "squashfs")
    try:
        r = reset(bins, d)
        assert r.returncode == 0, r.stderr
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_reset_crypto_erases_an_encrypted_partition_and_survives_a_kill_at_each_step(
        bins, signing_pki, images, tmp_path):
    from test_crypt import Swtpm
    need_tool("cryptsetup", "cryptsetup-bin")
    tpm = Swtpm(tmp_path / "swtpm")
    try:
        d, rep = install(bins, signing_pki, images, tmp_path,
                         "#cloud-config\ninstall:\n  encrypted_partitions: [COS_PERSISTENT]\n", tpm)
        key = rep["encryption"]["recovery_key"]
        header, dump = d.luks_dump(tmp_path)
        old_uuid = run_ok(["cryptsetup", "luksUUID", str(header)]).stdout.strip()
        assert opens(header, key, tmp_path)
        slot_a = d.read("BALLAST_A")

        def check_new(rep, old_keys):
            enc = rep["encryption"]
            header, dump = d.luks_dump(tmp_path)
            assert sorted(t["type"] for t in dump["tokens"].values()) == ["systemd-recovery", "systemd-tpm2"]
            assert enc["luks_uuid"] == run_ok(["cryptsetup", "luksUUID", str(header)]).stdout.strip() != old_uuid
            assert opens(header, enc["recovery_key"], tmp_path)
            for k in old_keys:
                assert not opens(header, k, tmp_path)
            # The TPM opens it, as at boot.
            u = subprocess.run([bins["agent"], "unlock", "--device", str(header), "--tpm2-device", tpm.tcti,
                                "--json"], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                               env={k: v for k, v in os.environ.items()
                                    if k not in ("PASSWORD", "PIN", "INVOCATION_ID")})
            assert u.returncode == 0, u.stderr
            assert d.boot_vars()["ballast_reset"] == "0" and d.read("BALLAST_A") == slot_a
            return enc["recovery_key"]

        args = ("--tpm2-device", tpm.tcti)
        old_keys = [key]
        # Killed at each step: the request is in the boot state from the first one on, the old
        # key is useless from the keyslot wipe on, and a plain run finishes with its settings
        # (OEM wiped as first asked, encrypted again).
        for point in ("reset.requested", "reset.keyslots-erased", "reset.erased", "reset.oem-wiped",
                      "reset.formatted"):
            r = reset(bins, d, "--reset-oem", *args, env={"BALLAST_FAILPOINT": point})
            assert r.returncode == -9, (point, r.stdout + r.stderr)
            assert d.boot_vars()["ballast_reset"] == "4", point  # 1 + oem + 2 * encrypted
            if point != "reset.requested":
                h = tmp_path / "cut.img"
                h.write_bytes(d.read("BALLAST_PERSISTENT", 32 * MiB))
                assert not any(opens(h, k, tmp_path) for k in old_keys), point
            r = reset(bins, d, *args)
            assert r.returncode == 0, (point, r.stderr)
            rep = json.loads(r.stdout)
            assert rep["resumed"] and rep["oem_wiped"], point
            old_keys.append(check_new(rep, old_keys))
            assert "File not found" in d.debugfs("BALLAST_OEM", "stat /10_node.yaml").stderr
        # Killed after the request is cleared: done, nothing to resume.
        r = reset(bins, d, *args, env={"BALLAST_FAILPOINT": "reset.done"})
        assert r.returncode == -9 and d.boot_vars()["ballast_reset"] == "0"
        # A straight reset, OEM kept this time; the recovery key is shown once.
        r = reset(bins, d, *args)
        assert r.returncode == 0, r.stderr
        rep = json.loads(r.stdout)
        assert not rep["resumed"] and rep["erased"].startswith("crypto-erase")
        assert rep["persistent_before"] == "crypto_LUKS" and not rep["oem_wiped"]
        old_keys.append(check_new(rep, old_keys))
        # Without --json: progress on stderr, the key on stdout only (and once).
        r = ctl(bins, None, "reset", "--device", str(d.path), *args)
        assert r.returncode == 0 and "destroying every keyslot" in r.stderr, r.stderr
        key = [k for k in r.stdout.split() if len(k) == 71 and k.count("-") == 7]
        assert len(key) == 1 and key[0] not in r.stderr, r.stdout
        uuid = re.search(r"BALLAST_PERSISTENT is LUKS2 (\S+),", r.stdout)[1]
        check_new({"encryption": {"recovery_key": key[0], "luks_uuid": uuid}}, old_keys)
    finally:
        tpm.stop()
