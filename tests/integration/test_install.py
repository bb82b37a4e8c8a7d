"""Bundles and install on image files: signing and every kind of bad bundle, the disk layout,
slot A's bytes, boot control, and the safety checks."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ctl, make_slot_image, need_tool, run_ok

TOP = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TOP / "tests" / "integration" / "helpers"))
import grubsim  # noqa: E402

MiB = 1024 * 1024


def bundle(bins, pki, image, out, version="1.0", signer="signer", compatible="ballast-test-amd64"):
    r = ctl(bins, None, "bundle", "create", "--image", str(image), "--version", version, "--compatible", compatible,
            "--key", pki[signer]["key"], "--cert", pki[signer]["cert"], "-o", str(out))
    assert r.returncode == 0, r.stderr
    return out


def new_disk(path, size_mb=1024):
    subprocess.run(["truncate", "-s", f"{size_mb}M", str(path)], check=True)
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("images")
    return {"v1": make_slot_image(d / "v1.sqfs", "1.0", extra_mb=2),
            "nokernel": make_slot_image(d / "nokernel.sqfs", "0.0", with_kernel=False)}


def test_bundle_create_verify_inspect_folder_and_tar(bins, signing_pki, images, tmp_path):
    for out in (tmp_path / "b", tmp_path / "b.tar"):
        bundle(bins, signing_pki, images["v1"], out)
        r = ctl(bins, None, "bundle", "verify", str(out), "--keyring", signing_pki["ca"])
        assert r.returncode == 0 and "valid: ballast-os 1.0 for ballast-test-amd64, signed by /CN=signer" in r.stdout, r.stderr
        j = json.loads(ctl(bins, None, "--json", "bundle", "inspect", str(out)).stdout)
        assert j["manifest"]["image"]["sha256"] == hashlib.sha256(images["v1"].read_bytes()).hexdigest()
        assert j["manifest"]["image"]["fstype"] == "squashfs" and j["signed"]
        assert "chunks indexed" in r.stdout
        idx = j["manifest"]["index"]
        assert idx["file"] == "rootfs.bcidx" and idx["size"] > 48
    # The index after the image: an https source reads the signed parts from the first 64 KiB.
    names = subprocess.run(["tar", "tf", str(tmp_path / "b.tar")], capture_output=True, text=True).stdout.split()
    assert names == ["manifest.json", "manifest.json.sig", "rootfs.img", "rootfs.bcidx"]
    folder = tmp_path / "b"
    assert hashlib.sha256((folder / "rootfs.bcidx").read_bytes()).hexdigest() == idx["sha256"]
    # Without an index, for agents that predate it.
    for out in (tmp_path / "noidx", tmp_path / "noidx.tar"):
        r = ctl(bins, None, "bundle", "create", "--image", str(images["v1"]), "--version", "1.0", "--compatible",
                "ballast-test-amd64", "--key", signing_pki["signer"]["key"], "--cert", signing_pki["signer"]["cert"],
                "-o", str(out), "--no-index")
        assert r.returncode == 0, r.stderr
        r = ctl(bins, None, "bundle", "verify", str(out), "--keyring", signing_pki["ca"])
        assert r.returncode == 0 and "chunks indexed" not in r.stdout, r.stderr
        assert "index:      none" in ctl(bins, None, "bundle", "inspect", str(out)).stdout
    assert not (tmp_path / "noidx" / "rootfs.bcidx").exists()
    names = subprocess.run(["tar", "tf", str(tmp_path / "noidx.tar")], capture_output=True, text=True).stdout.split()
    assert names == ["manifest.json", "manifest.json.sig", "rootfs.img"]
    # Without a chain to the usage checks: a signer with no EKU but digitalSignature is fine.
    bundle(bins, signing_pki, images["v1"], tmp_path / "plain", signer="plain")
    assert ctl(bins, None, "bundle", "verify", str(tmp_path / "plain"), "--keyring", signing_pki["ca"]).returncode == 0


def test_bundle_create_refuses_bad_images(bins, signing_pki, images, tmp_path):
    r = ctl(bins, None, "bundle", "create", "--image", str(images["nokernel"]), "--version", "1", "--compatible", "c",
            "--key", signing_pki["signer"]["key"], "--cert", signing_pki["signer"]["cert"], "-o", str(tmp_path / "x"))
    assert r.returncode == 1 and "has no /boot/vmlinuz" in r.stderr
    junk = tmp_path / "junk.img"
    junk.write_bytes(os.urandom(8192))
    r = ctl(bins, None, "bundle", "create", "--image", str(junk), "--version", "1", "--compatible", "c",
            "--key", signing_pki["signer"]["key"], "--cert", signing_pki["signer"]["cert"], "-o", str(tmp_path / "y"))
    assert r.returncode == 1 and "not a squashfs or erofs image" in r.stderr
    r = ctl(bins, None, "bundle", "create", "--image", str(images["v1"]), "--version", "1", "--compatible", "c",
            "--key", signing_pki["other"]["key"], "--cert", signing_pki["signer"]["cert"], "-o", str(tmp_path / "z"))
    assert r.returncode == 1 and "does the key match" in r.stderr


def bad_bundles(bins, pki, images, tmp):
    """Each bad bundle and the message that must name its fault."""
    cases = {}
    b = bundle(bins, pki, images["v1"], tmp / "unsigned")
    (b / "manifest.json.sig").unlink()
    cases["unsigned"] = (b, "unsigned bundle (no manifest.json.sig)")
    cases["wrong key"] = (bundle(bins, pki, images["v1"], tmp / "wrongkey", signer="other"),
                          "signed by '/CN=other', which does not chain to the keyring")
    cases["expired"] = (bundle(bins, pki, images["v1"], tmp / "expired", signer="expired"),
                        "the certificate '/CN=expired' expired on Jan  1 00:00:00 2021 GMT")
    cases["wrong eku"] = (bundle(bins, pki, images["v1"], tmp / "serverauth", signer="serverauth"),
                          "has an extended key usage without codeSigning")
    cases["wrong ku"] = (bundle(bins, pki, images["v1"], tmp / "nodigsig", signer="nodigsig"),
                         "lacks the digitalSignature key usage")
    b = bundle(bins, pki, images["v1"], tmp / "tampered")
    m = json.loads((b / "manifest.json").read_text())
    m["version"] = "9.9"
    (b / "manifest.json").write_text(json.dumps(m, indent=2) + "\n")
    cases["tampered manifest"] = (b, "manifest.json does not match its signature (tampered or corrupt)")
    b = bundle(bins, pki, images["v1"], tmp / "truncated")
    data = (b / "rootfs.img").read_bytes()
    (b / "rootfs.img").unlink()
    (b / "rootfs.img").write_bytes(data[:-4096])
    cases["truncated image"] = (b, f"truncated image: rootfs.img is {len(data) - 4096} bytes, the manifest says {len(data)}")
    b = bundle(bins, pki, images["v1"], tmp / "mismatch")
    data = bytearray((b / "rootfs.img").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (b / "rootfs.img").unlink()
    (b / "rootfs.img").write_bytes(bytes(data))
    cases["hash mismatch"] = (b, "does not match the manifest's")
    b = bundle(bins, pki, images["v1"], tmp / "noindex")
    (b / "rootfs.bcidx").unlink()
    cases["missing index"] = (b, "the chunk index rootfs.bcidx named by the manifest is missing")
    b = bundle(bins, pki, images["v1"], tmp / "longindex")
    size = (b / "rootfs.bcidx").stat().st_size
    with open(b / "rootfs.bcidx", "ab") as f:
        f.write(b"\0" * 36)
    cases["index size"] = (b, f"rootfs.bcidx is {size + 36} bytes, the manifest says {size}")
    b = bundle(bins, pki, images["v1"], tmp / "badindex")
    data = bytearray((b / "rootfs.bcidx").read_bytes())
    data[60] ^= 0xFF
    (b / "rootfs.bcidx").write_bytes(bytes(data))
    cases["tampered index"] = (b, "rootfs.bcidx sha256")
    b = bundle(bins, pki, images["v1"], tmp / "truncated.tar")
    with open(b, "r+b") as f:
        f.truncate(os.path.getsize(b) - 20000)
    cases["truncated tar"] = (b, "is truncated")
    return cases


def test_every_bad_bundle_fails_with_its_own_message(bins, signing_pki, images, tmp_path):
    cases = bad_bundles(bins, signing_pki, images, tmp_path)
    for name, (b, message) in cases.items():
        r = ctl(bins, None, "bundle", "verify", str(b), "--keyring", signing_pki["ca"])
        assert r.returncode == 1, name
        assert message in r.stderr, f"{name}: {r.stderr}"
    # With an index, verify also names where the image differs.
    assert "(first difference in chunk " in ctl(bins, None, "bundle", "verify", str(cases["hash mismatch"][0]),
                                                "--keyring", signing_pki["ca"]).stderr
    messages = [m for _, m in cases.values()]
    assert len(set(messages)) == len(messages)


def test_install_lays_out_the_disk(bins, signing_pki, images, tmp_path):
    need_tool("sfdisk", "fdisk")
    b = bundle(bins, signing_pki, images["v1"], tmp_path / "v1.tar")
    disk = new_disk(tmp_path / "disk.img")
    cfg = tmp_path / "node.yaml"
    marks = tmp_path / "marks"
    # Kairos' install event stages run around Ballast's own install stages.
    stages = "".join(f"  {name}:\n    - commands: ['echo {name} >> {marks}']\n"
                     for name in ("after-install", "kairos-install.after", "before-install", "kairos-install.pre"))
    cfg.write_text("#cloud-config\nhostname: edge-1\ninstall:\n  partitions:\n    oem: {size: 32}\n"
                   "stages:\n" + stages)
    r = ctl(bins, None, "install", "--device", str(disk), "--bundle", str(b), "--keyring", signing_pki["ca"],
            "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert marks.read_text().split() == ["kairos-install.pre", "before-install", "after-install",
                                         "kairos-install.after"]
    t = json.loads(subprocess.run(["sfdisk", "-J", str(disk)], capture_output=True, text=True, check=True).stdout)
    parts = t["partitiontable"]["partitions"]
    assert t["partitiontable"]["label"] == "gpt"
    assert [p["name"] for p in parts] == ["BALLAST_EFI", "BALLAST_OEM", "BALLAST_A", "BALLAST_B", "BALLAST_PERSISTENT"]
    assert parts[0]["type"] == "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
    assert parts[1]["size"] * 512 == 32 * MiB  # from the install: block
    start = {p["name"]: p["start"] * 512 for p in parts}
    # Filesystems and labels, probed where they lie.
    def probe(name):
        out = subprocess.run(["blkid", "-p", "-O", str(start[name]), "-o", "export", str(disk)],
                             capture_output=True, text=True).stdout
        return dict(l.split("=", 1) for l in out.splitlines() if "=" in l)
    assert probe("BALLAST_EFI")["TYPE"] == "vfat" and probe("BALLAST_EFI")["LABEL"] == "BALLAST_EFI"
    assert probe("BALLAST_OEM")["LABEL"] == "BALLAST_OEM" and probe("BALLAST_PERSISTENT")["TYPE"] == "ext4"
    assert probe("BALLAST_A")["TYPE"] == "squashfs"
    assert probe("BALLAST_B") == {} or "TYPE" not in probe("BALLAST_B")
    # Slot A holds exactly the image.
    img = images["v1"].read_bytes()
    with open(disk, "rb") as f:
        f.seek(start["BALLAST_A"])
        assert f.read(len(img)) == img
    # The cloud-config is in OEM.
    e2 = subprocess.run(f"dd if={disk} bs=1M skip={start['BALLAST_OEM'] // MiB} count=32 status=none > {tmp_path}/oem.img && "
                        f"debugfs -R 'cat /10_node.yaml' {tmp_path}/oem.img", shell=True, capture_output=True, text=True)
    assert "hostname: edge-1" in e2.stdout, e2.stderr
    # GRUB on the ESP: our grub.cfg, the EFI binary, the boot state (A good, primary).
    esp = f"{disk}@@{start['BALLAST_EFI']}"
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    cat = lambda p: subprocess.run(["mtype", "-i", esp, "::" + p], capture_output=True, env=env).stdout
    assert cat("/grub/grub.cfg").decode() == (TOP / "overlay/grub/grub.cfg").read_text()
    assert cat("/EFI/BOOT/BOOTX64.EFI")[:2] == b"MZ"
    env1, env2 = cat("/grub/env1/grubenv"), cat("/grub/env2/grubenv")
    assert len(env1) == 1024 and env1 == env2
    vars1 = dict(grubsim.env_parse(env1))
    assert vars1["ballast_A_ok"] == "1" and vars1["ballast_A_version"] == "1.0" and vars1["ballast_B_ok"] == "0"
    g, linux = grubsim.boot((TOP / "overlay/grub/grub.cfg").read_text(),
                            {"/grub/env1/grubenv": env1, "/grub/env2/grubenv": env2})
    assert "root=PARTLABEL=BALLAST_A ballast.slot=a" in linux


def test_install_safety(bins, signing_pki, images, tmp_path):
    b = bundle(bins, signing_pki, images["v1"], tmp_path / "v1")
    disk = new_disk(tmp_path / "disk.img")
    args = ["install", "--device", str(disk), "--bundle", str(b), "--keyring", signing_pki["ca"]]
    # Dry run: the plan, nothing written.
    r = ctl(bins, None, *args, "--dry-run")
    assert r.returncode == 0 and "plan for" in r.stdout and "BALLAST_PERSISTENT" in r.stdout
    assert open(disk, "rb").read(2 * MiB) == b"\0" * (2 * MiB)
    assert ctl(bins, None, *args).returncode == 0
    # A second install refuses the Ballast disk; --force erases it.
    r = ctl(bins, None, *args)
    assert r.returncode == 1 and "is not empty (already a Ballast disk); add --force" in r.stderr
    assert ctl(bins, None, *args, "--force").returncode == 0
    # A disk with a filesystem.
    other = new_disk(tmp_path / "ext4.img", 512)
    run_ok(["mkfs.ext4", "-q", "-F", str(other)])
    r = ctl(bins, None, "install", "--device", str(other), "--bundle", str(b), "--keyring", signing_pki["ca"])
    assert r.returncode == 1 and "is not empty (it holds ext4)" in r.stderr
    # Too small.
    tiny = new_disk(tmp_path / "tiny.img", 300)
    r = ctl(bins, None, "install", "--device", str(tiny), "--bundle", str(b), "--keyring", signing_pki["ca"])
    assert r.returncode == 1 and "too small" in r.stderr
    assert open(tiny, "rb").read(MiB) == b"\0" * MiB
    # No device at all.
    r = ctl(bins, None, "install", "--bundle", str(b), "--keyring", signing_pki["ca"])
    assert r.returncode == 1 and "no device" in r.stderr


def test_install_no_format_keeps_the_layout_oem_and_persistent_data(bins, signing_pki, images, tmp_path):
    """install.no-format (Kairos): a reinstall into the existing layout, no partitioning or
    formatting: persistent data and OEM files put there since are kept, slot A gets the new image."""
    need_tool("sfdisk", "fdisk")
    v1 = bundle(bins, signing_pki, images["v1"], tmp_path / "v1.tar")
    v2_img = make_slot_image(tmp_path / "v2.sqfs", "2.0", extra_mb=3)
    v2 = bundle(bins, signing_pki, v2_img, tmp_path / "v2.tar", version="2.0")
    disk = new_disk(tmp_path / "disk.img")
    (tmp_path / "c1").mkdir()
    (tmp_path / "c1/node.yaml").write_text("#cloud-config\nhostname: edge-1\n")
    args = lambda b, *more: ["install", "--device", str(disk), "--bundle", str(b), "--keyring", signing_pki["ca"], *more]
    assert ctl(bins, None, *args(v1, "--config", str(tmp_path / "c1/node.yaml"))).returncode == 0
    table = lambda d: subprocess.run(["sfdisk", "-J", str(d)], capture_output=True, text=True, check=True).stdout
    before = table(disk)
    start = {p["name"]: p["start"] * 512 for p in json.loads(before)["partitiontable"]["partitions"]}
    at = lambda name: f"{disk}?offset={start[name]}"
    debugfs = lambda *a: subprocess.run(["debugfs", *a], capture_output=True, text=True)
    (tmp_path / "data").write_text("keep me\n")
    run_ok(["debugfs", "-w", "-R", f"write {tmp_path / 'data'} data.txt", at("BALLAST_PERSISTENT")])
    run_ok(["debugfs", "-w", "-R", f"write {tmp_path / 'data'} 90_later.yaml", at("BALLAST_OEM")])

    # Not a Ballast disk: refused, nothing written.
    blank = new_disk(tmp_path / "blank.img", 1024)
    r = ctl(bins, None, "install", "--device", str(blank), "--bundle", str(v2), "--keyring", signing_pki["ca"],
            "--no-format")
    assert r.returncode == 1 and "no BALLAST_EFI partition (no-format installs into an existing" in r.stderr, r.stderr
    assert open(blank, "rb").read(2 * MiB) == b"\0" * (2 * MiB)
    # Encryption asked for on a plain persistent partition: refused before anything is written.
    (tmp_path / "c3").mkdir()
    (tmp_path / "c3/node.yaml").write_text("#cloud-config\ninstall:\n  no-format: true\n"
                                           "  encrypted_partitions: [COS_PERSISTENT]\n")
    r = ctl(bins, None, *args(v2, "--config", str(tmp_path / "c3/node.yaml")))
    assert r.returncode == 1 and "BALLAST_PERSISTENT on " in r.stderr and "is not encrypted, and no-format keeps it" in r.stderr
    # The dry run shows the kept layout.
    r = ctl(bins, None, *args(v2, "--no-format", "--dry-run"))
    assert r.returncode == 0 and "no-format: the partitions and filesystems are kept" in r.stdout, r.stdout + r.stderr

    # The install block asks for it; no --force needed on this disk.
    (tmp_path / "c2").mkdir()
    (tmp_path / "c2/node.yaml").write_text("#cloud-config\nhostname: edge-2\ninstall:\n  no-format: true\n")
    # Killed at each step of the slot write and at the end: the layout and the persistent data
    # are untouched, and the same command run again (below) finishes the job.
    for point in ("write.header-cleared", "write.body-written", "write.header-written", "install.done"):
        r = ctl(bins, None, *args(v2, "--config", str(tmp_path / "c2/node.yaml")), env={"BALLAST_FAILPOINT": point})
        assert r.returncode == -9, (point, r.stdout + r.stderr)
        assert table(disk) == before, point
        assert debugfs("-R", "cat /data.txt", at("BALLAST_PERSISTENT")).stdout == "keep me\n", point
    r = ctl(bins, None, *args(v2, "--config", str(tmp_path / "c2/node.yaml")))
    assert r.returncode == 0, r.stdout + r.stderr
    assert table(disk) == before
    assert debugfs("-R", "cat /data.txt", at("BALLAST_PERSISTENT")).stdout == "keep me\n"
    assert "hostname: edge-2" in debugfs("-R", "cat /10_node.yaml", at("BALLAST_OEM")).stdout
    assert debugfs("-R", "cat /90_later.yaml", at("BALLAST_OEM")).stdout == "keep me\n"
    img = v2_img.read_bytes()
    with open(disk, "rb") as f:
        f.seek(start["BALLAST_A"])
        assert f.read(len(img)) == img
    esp = f"{disk}@@{start['BALLAST_EFI']}"
    env1 = subprocess.run(["mtype", "-i", esp, "::/grub/env1/grubenv"], capture_output=True,
                          env=dict(os.environ, MTOOLS_SKIP_CHECK="1")).stdout
    vars1 = dict(grubsim.env_parse(env1))
    assert vars1["ballast_A_version"] == "2.0" and vars1["ballast_A_ok"] == "1" and vars1["ballast_B_ok"] == "0"


def test_install_block_settings_and_after_actions(bins, signing_pki, images, tmp_path):
    b = bundle(bins, signing_pki, images["v1"], tmp_path / "v1")
    disk = new_disk(tmp_path / "disk.img")
    run_ok(["mkfs.ext4", "-q", "-F", str(disk)])
    cfg = tmp_path / "node.yaml"
    cfg.write_text("#cloud-config\ninstall:\n  force: true\n  reboot: true\n")
    base = ["install", "--device", str(disk), "--bundle", str(b), "--keyring", signing_pki["ca"]]
    # install.force erases like --force; install.reboot is reported and, on an image file, not
    # acted on (it is never this machine's disk).
    r = ctl(bins, None, "--json", *base, "--config", str(cfg), "--dry-run")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["after"] == "none" and "is an image file, not this machine's disk" in plan["after_note"]
    assert "not going to reboot" in plan["after_note"]
    r = ctl(bins, None, *base, "--config", str(cfg), "--poweroff")
    assert r.returncode == 0, r.stderr
    assert "note: not going to poweroff" in r.stdout
    # The command line's --no-reboot wins over the config, silently.
    r = ctl(bins, None, "--json", *base, "--config", str(cfg), "--no-reboot", "--dry-run")
    assert json.loads(r.stdout)["after"] == "none" and json.loads(r.stdout)["after_note"] == ""
    # Contradictions are usage errors, in the command line and in the config.
    r = ctl(bins, None, *base, "--reboot", "--poweroff", "--dry-run")
    assert r.returncode == 2 and "excludes" in r.stderr
    r = ctl(bins, None, *base, "--reboot", "--no-reboot", "--dry-run")
    assert r.returncode == 2
    cfg.write_text("#cloud-config\ninstall:\n  reboot: true\n  poweroff: true\n")
    r = ctl(bins, None, *base, "--config", str(cfg), "--dry-run")
    assert r.returncode == 1 and f"{cfg}:4:" in r.stderr and "cannot both be true" in r.stderr, r.stderr


def test_install_refuses_a_mounted_device(bins, signing_pki, images, tmp_path):
    need_tool("losetup", "mount")
    b = bundle(bins, signing_pki, images["v1"], tmp_path / "v1")
    disk = new_disk(tmp_path / "mounted.img", 1024)
    run_ok(["mkfs.ext4", "-q", "-F", str(disk)])
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    run_ok(["mount", "-o", "loop", str(disk), str(mnt)])
    try:
        r = ctl(bins, None, "install", "--device", str(disk), "--bundle", str(b), "--keyring", signing_pki["ca"], "--force")
        assert r.returncode == 1 and f"is in use: mounted at {mnt}" in r.stderr, r.stderr
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_install_with_a_bad_bundle_writes_nothing(bins, signing_pki, images, tmp_path):
    for name, (b, message) in bad_bundles(bins, signing_pki, images, tmp_path).items():
        if name == "hash mismatch":
            continue  # found while streaming: checked below
        disk = new_disk(tmp_path / f"d-{name.replace(' ', '-')}.img")
        r = ctl(bins, None, "install", "--device", str(disk), "--bundle", str(b), "--keyring", signing_pki["ca"])
        assert r.returncode == 1 and message in r.stderr, f"{name}: {r.stderr}"
        with open(disk, "rb") as f:
            assert f.read(4 * MiB) == b"\0" * (4 * MiB), name
        disk.unlink()
    # A hash mismatch is found while streaming: slot A is left without a filesystem header.
    again = tmp_path / "again"
    again.mkdir()
    b = bad_bundles(bins, signing_pki, images, again)["hash mismatch"][0]
    disk = new_disk(tmp_path / "hm.img")
    r = ctl(bins, None, "install", "--device", str(disk), "--bundle", str(b), "--keyring", signing_pki["ca"])
    assert r.returncode == 1 and "left without a filesystem header" in r.stderr
    out = subprocess.run(["blkid", "-p", "-O", str(129 * MiB), str(disk)], capture_output=True, text=True)
    assert "squashfs" not in out.stdout


def test_erofs_bundles_verify_but_do_not_install(bins, signing_pki, tmp_path):
    need_tool("mkfs.erofs", "erofs-utils")
    src = tmp_path / "root"
    (src / "boot").mkdir(parents=True)
    (src / "boot" / "vmlinuz").write_text("k")
    (src / "boot" / "initrd.img").write_text("i")
    run_ok(["mkfs.erofs", str(tmp_path / "e.img"), str(src)])
    b = bundle(bins, signing_pki, tmp_path / "e.img", tmp_path / "e")
    assert ctl(bins, None, "bundle", "verify", str(b), "--keyring", signing_pki["ca"]).returncode == 0
    disk = new_disk(tmp_path / "d.img")
    r = ctl(bins, None, "install", "--device", str(disk), "--bundle", str(b), "--keyring", signing_pki["ca"])
    assert r.returncode == 1 and "GRUB 2.06 (Debian 12) reads squashfs slots" in r.stderr


def test_status_shows_the_slots(bins, start_agent, signing_pki, images, tmp_path):
    b = bundle(bins, signing_pki, images["v1"], tmp_path / "v1")
    disk = new_disk(tmp_path / "disk.img")
    assert ctl(bins, None, "install", "--device", str(disk), "--bundle", str(b), "--keyring", signing_pki["ca"]).returncode == 0
    a = start_agent(args=("--booted-slot", "A", "--disk", str(disk)))
    st = json.loads(ctl(bins, a.bus.address, "status", "--json").stdout)
    assert st["PrimarySlot"] == "A"
    slots = {s["Slot"]: s for s in st["Slots"]}
    assert slots["A"] == {"Slot": "A", "State": "good", "Version": "1.0", "TriesLeft": 0, "Primary": True,
                          "LastGood": True, "Booted": True}
    assert slots["B"]["State"] == "empty" and not slots["B"]["Booted"]
    assert st["NextBoot"] == {"Slot": "A", "Reason": "A is good", "Recovery": False}
    human = ctl(bins, a.bus.address, "status").stdout
    assert "A  good" in human and "booted primary last-good" in human and "B  empty" in human
    assert "Next boot:  A (A is good)" in human


def xts_decrypt(vk: bytes, data: bytes) -> bytes:
    """aes-xts-plain64 with 512-byte sectors, as dm-crypt reads a LUKS2 data segment."""
    import ctypes
    lib = ctypes.CDLL("libcrypto.so.3")
    lib.EVP_CIPHER_CTX_new.restype = ctypes.c_void_p
    lib.EVP_aes_256_xts.restype = ctypes.c_void_p
    lib.EVP_DecryptInit_ex.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p,
                                       ctypes.c_char_p]
    lib.EVP_DecryptUpdate.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int),
                                      ctypes.c_char_p, ctypes.c_int]
    lib.EVP_CIPHER_CTX_free.argtypes = [ctypes.c_void_p]
    ctx, cipher = lib.EVP_CIPHER_CTX_new(), lib.EVP_aes_256_xts()
    out, buf, n = bytearray(), ctypes.create_string_buffer(512), ctypes.c_int()
    try:
        for s in range(len(data) // 512):
            assert lib.EVP_DecryptInit_ex(ctx, cipher, None, vk, s.to_bytes(16, "little")) == 1
            assert lib.EVP_DecryptUpdate(ctx, buf, ctypes.byref(n), data[s * 512:(s + 1) * 512], 512) == 1
            out += buf.raw
    finally:
        lib.EVP_CIPHER_CTX_free(ctx)
    return bytes(out)


def test_install_encrypts_the_persistent_partition(bins, signing_pki, images, tmp_path):
    from test_crypt import Swtpm
    need_tool("sfdisk", "fdisk")
    need_tool("cryptsetup", "cryptsetup-bin")
    tpm = Swtpm(tmp_path / "swtpm")
    try:
        b = bundle(bins, signing_pki, images["v1"], tmp_path / "v1.tar")
        disk = new_disk(tmp_path / "disk.img", 512)
        cfg = tmp_path / "node.yaml"
        cfg.write_text("#cloud-config\ninstall:\n  encrypted_partitions: [COS_PERSISTENT]\n")
        r = ctl(bins, None, "--json", "install", "--device", str(disk), "--bundle", str(b), "--keyring",
                signing_pki["ca"], "--config", str(cfg), "--tpm2-device", tpm.tcti, "--slot-size", "64",
                "--persistent-size", "64")
        assert r.returncode == 0, r.stderr
        rep = json.loads(r.stdout)
        enc = rep["encryption"]
        assert enc["partition"] == "BALLAST_PERSISTENT" and enc["pcrs"] == "7" and enc["tpm2_device"] == tpm.tcti
        key = enc["recovery_key"]
        assert len(key) == 71 and key not in r.stderr  # shown once, in the report

        parts = json.loads(subprocess.run(["sfdisk", "-J", str(disk)], capture_output=True, text=True,
                                          check=True).stdout)["partitiontable"]["partitions"]
        p = [p for p in parts if p["name"] == "BALLAST_PERSISTENT"][0]
        with open(disk, "rb") as f:
            f.seek(p["start"] * 512)
            part = f.read(p["size"] * 512)
        img = tmp_path / "persistent.img"
        img.write_bytes(part)
        dump = json.loads(run_ok(["cryptsetup", "luksDump", "--dump-json-metadata", str(img)]).stdout)
        assert "Label:         \tBALLAST_PERSISTENT" in run_ok(["cryptsetup", "luksDump", str(img)]).stdout
        assert sorted(t["type"] for t in dump["tokens"].values()) == ["systemd-recovery", "systemd-tpm2"]
        # The TPM opens it (as at boot), and so does the recovery key.
        u = subprocess.run([bins["agent"], "unlock", "--device", str(img), "--tpm2-device", tpm.tcti, "--json"],
                           capture_output=True, text=True, stdin=subprocess.DEVNULL,
                           env={k: v for k, v in os.environ.items() if k not in ("PASSWORD", "PIN", "INVOCATION_ID")})
        assert u.returncode == 0, u.stderr
        assert json.loads(u.stdout.splitlines()[-1])["method"] == "tpm2"
        kf = tmp_path / "rk"
        kf.write_text(key)
        vkf = tmp_path / "vk"
        run_ok(["cryptsetup", "luksDump", "--dump-volume-key", "--batch-mode", "--key-file", str(kf),
                "--volume-key-file", str(vkf), str(img)])
        # Decrypted as dm-crypt would, the data segment is a clean ext4 named BALLAST_PERSISTENT.
        off = int(dump["segments"]["0"]["offset"])
        plain = tmp_path / "plain.img"
        plain.write_bytes(xts_decrypt(vkf.read_bytes(), part[off:]))
        run_ok(["e2fsck", "-fn", str(plain)])
        # (ext4 labels hold 16 bytes, as on the unencrypted layout.)
        assert "volume name:   BALLAST_PERSISTE\n" in run_ok(["dumpe2fs", "-h", str(plain)]).stdout
        # Nothing of the key on disk outside the keyslots: the plain text is not in the image.
        assert key.encode() not in disk.read_bytes()
        # A no-format reinstall keeps the LUKS2 volume as it is, with no TPM needed.
        r = ctl(bins, None, "install", "--device", str(disk), "--bundle", str(b), "--keyring", signing_pki["ca"],
                "--config", str(cfg), "--no-format", "--tpm2-device", "swtpm:host=127.0.0.1,port=1")
        assert r.returncode == 0 and "BALLAST_PERSISTENT: kept as it is (crypto_LUKS)" in r.stderr + r.stdout, r.stderr
        with open(disk, "rb") as f:
            f.seek(p["start"] * 512)
            assert f.read(p["size"] * 512) == part
    finally:
        tpm.stop()


def test_install_encryption_refusals(bins, signing_pki, images, tmp_path):
    b = bundle(bins, signing_pki, images["v1"], tmp_path / "v1.tar")
    disk = new_disk(tmp_path / "disk.img", 512)
    cfg = tmp_path / "node.yaml"
    cfg.write_text("#cloud-config\ninstall:\n  encrypted_partitions: [BALLAST_OEM]\n")
    r = ctl(bins, None, "install", "--device", str(disk), "--bundle", str(b), "--keyring", signing_pki["ca"],
            "--config", str(cfg))
    assert r.returncode == 1 and "BALLAST_OEM cannot be encrypted" in r.stderr
    cfg.write_text("#cloud-config\ninstall:\n  encrypted_partitions: [BALLAST_PERSISTENT]\n")
    r = ctl(bins, None, "install", "--device", str(disk), "--bundle", str(b), "--keyring", signing_pki["ca"],
            "--config", str(cfg), "--tpm2-device", "swtpm:host=127.0.0.1,port=1")
    assert r.returncode == 3 and "needs a TPM2" in r.stderr and "cannot connect" in r.stderr
    # Refused before anything was written.
    with open(disk, "rb") as f:
        assert f.read(1 << 20) == b"\0" * (1 << 20)


def test_install_auto(bins, signing_pki, images, tmp_path):
    """install.auto: `agentctl install --auto` (ballast-install.service at boot) takes its settings
    from the node's own cloud-config, installs only when install.auto is true and never over a
    Ballast disk, and leaves the installed node's OEM saying install.auto: false."""
    need_tool("sfdisk", "fdisk")
    b = bundle(bins, signing_pki, images["v1"], tmp_path / "v1.tar")
    disk = new_disk(tmp_path / "disk.img")
    root = tmp_path / "root"
    (root / "oem").mkdir(parents=True)
    (root / "etc/ballast/config.d").mkdir(parents=True)
    (root / "oem/10_site.yaml").write_text("#cloud-config\nhostname: edge-auto\n")
    node = root / "etc/ballast/config.d/90-install.yaml"
    auto = lambda r=root, *more: ctl(bins, None, "--root", str(r), *more, "install", "--auto",
                                     "--keyring", signing_pki["ca"])
    digest = lambda: hashlib.sha256(disk.read_bytes()).hexdigest()
    blank = digest()

    # Not asked for: nothing, exit 0, even when something else in the config is wrong (the boot
    # stage reports that).
    r = auto()
    assert r.returncode == 0 and r.stdout == "install.auto: nothing to do: install.auto is not true\n", r
    (root / "oem/20_broken.yaml").write_text("#cloud-config\nhostname: [\n")
    r = auto()
    assert r.returncode == 0 and "install.auto is not true" in r.stdout, r
    # Asked for: the broken file stops it, named.
    node.write_text(f"#cloud-config\ninstall:\n  auto: true\n  device: {disk}\n  source: {b}\n")
    r = auto()
    assert r.returncode == 1 and "20_broken.yaml:" in r.stderr, r.stderr
    (root / "oem/20_broken.yaml").unlink()
    # Asked for, but no bundle, or one Ballast cannot install: errors naming the key.
    node.write_text(f"#cloud-config\ninstall:\n  auto: true\n  device: {disk}\n")
    r = auto()
    assert r.returncode == 1 and "no bundle: give --bundle or install.source" in r.stderr, r.stderr
    node.write_text(f"#cloud-config\ninstall:\n  auto: true\n  device: {disk}\n  source: ftp://h/x.tar\n")
    r = auto()
    assert r.returncode == 1 and "install.source: ftp://h/x.tar is not the absolute path of a bundle" in r.stderr, r.stderr
    # A file that says install.auto but is broken elsewhere is dropped whole: that stops the run
    # rather than reading as "not asked for".
    node.write_text(f"#cloud-config\ninstall:\n  auto: true\n  device: {disk}\n  source: {b}\nusers: 3\n")
    r = auto()
    assert r.returncode == 1 and f"{node.relative_to(root)}:6" in r.stderr, r.stderr
    # A device holding something else is refused as by hand (install.force would erase it).
    other = new_disk(tmp_path / "other.img", 64)
    run_ok(["mkfs.ext4", "-q", "-F", str(other)])
    node.write_text(f"#cloud-config\ninstall:\n  auto: true\n  device: {other}\n  source: file:{b}\n")
    other_digest = hashlib.sha256(other.read_bytes()).hexdigest()
    r = auto()
    assert r.returncode == 1 and "is not empty" in r.stderr, r.stderr
    assert digest() == blank and hashlib.sha256(other.read_bytes()).hexdigest() == other_digest
    # An install cut short (after the partition table; after GRUB and the boot-state copies,
    # still locked, before the boot state, which comes last) is not erased unattended: it could
    # as well be a node whose ESP broke.
    node.write_text(f"#cloud-config\ninstall:\n  auto: true\n  device: {disk}\n  source: file:{b}\n")
    for point in ("install.partitioned", "install.boot-files"):
        r = ctl(bins, None, "--root", str(root), "install", "--auto", "--keyring", signing_pki["ca"],
                env={"BALLAST_FAILPOINT": point})
        assert r.returncode != 0
        for _ in range(2):  # and never later either
            r = auto()
            assert r.returncode == 1 and "holds a Ballast layout but no boot state" in r.stderr, (point, r.stderr)
        subprocess.run(["truncate", "-s", "0", str(disk)], check=True)
        new_disk(disk)

    r = auto(root, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["version"] == "1.0"
    # OEM: the node's files (not the image defaults), then the override.
    parts = json.loads(subprocess.run(["sfdisk", "-J", str(disk)], capture_output=True, text=True,
                                      check=True).stdout)["partitiontable"]["partitions"]
    oem = f"{disk}?offset={[p['start'] for p in parts if p['name'] == 'BALLAST_OEM'][0] * 512}"
    ls = subprocess.run(["debugfs", "-R", "ls -l /", oem], capture_output=True, text=True).stdout
    names = sorted(w for w in ls.split() if w.endswith(".yaml"))
    assert names == ["10_10_site.yaml", "20_90-install.yaml", "99_ballast-installed.yaml"], ls
    installed = tmp_path / "installed"
    (installed / "oem").mkdir(parents=True)
    for n in names:
        text = subprocess.run(["debugfs", "-R", f"cat /{n}", oem], capture_output=True, text=True).stdout
        (installed / "oem" / n).write_text(text)
    assert "hostname: edge-auto" in (installed / "oem/10_10_site.yaml").read_text()

    # Again (the live medium boots again): the disk is a Ballast disk now, left alone.
    installed_digest = digest()
    r = auto()
    assert r.returncode == 0 and f"nothing to do: {disk} already holds a Ballast disk" in r.stdout, r
    assert digest() == installed_digest
    # The installed node, booted with its own OEM: the marker stops it before any config is
    # read, even when a later source (a datasource, config_url) says install.auto again.
    (installed / "run/ballast/config.d").mkdir(parents=True)
    (installed / "run/ballast/config.d/50-config-url.yaml").write_text(
        node.read_text().replace(str(disk), str(tmp_path / "blank.img")))
    r = auto(installed)
    assert r.returncode == 0 and "this node was installed by install.auto (/oem/99_ballast-installed.yaml)" in r.stdout, r
    assert not (tmp_path / "blank.img").exists()
