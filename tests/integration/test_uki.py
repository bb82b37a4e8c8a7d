"""agentctl uki build/inspect: a release's UKI made from Debian 12's systemd-stub with objcopy,
its PCR 11 predicted and signed by Ballast, checked against systemd-measure 252 and sbsigntool.
The sections are the stand-ins of tests/data/pcr-signature (not a bootable kernel: what is
proven here is the image layout and the measurement; booting one is the VM's job)."""
import json
import subprocess
from pathlib import Path

import pytest

from conftest import need_tool, run_ok

PCRSIG = Path(__file__).resolve().parents[1] / "data" / "pcr-signature"
STUB = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"
MEASURE = "/lib/systemd/systemd-measure"


def ctl(bins, *args):
    return subprocess.run([bins["ctl"], *args], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def build(bins, out: Path, *extra, key=PCRSIG / "private.pem", pub=PCRSIG / "public.pem"):
    return ctl(bins, "--json", "uki", "build", "--linux", str(PCRSIG / "linux"), "--initrd",
               str(PCRSIG / "initrd"), "--cmdline", str(PCRSIG / "cmdline"), "--os-release",
               str(PCRSIG / "osrel"), "--pcr-private-key", str(key), "--pcr-public-key",
               str(pub), "-o", str(out), *extra)


def inspect(bins, uki: Path):
    r = ctl(bins, "--json", "uki", "inspect", str(uki))
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def section(uki: Path, name: str, tmp: Path) -> bytes:
    out = tmp / ("dump" + name)
    run_ok(["objcopy", "-O", "binary", "--only-section", name, str(uki), str(out)])
    return out.read_bytes()


@pytest.fixture(autouse=True)
def tools():
    if not Path(STUB).exists():
        pytest.fail(f"{STUB} is missing: install the Debian package systemd-boot-efi "
                    "(packaging/deps.sh test does)")
    need_tool("objcopy", "binutils")


def test_build_matches_systemd_measure(bins, tmp_path):
    uki = tmp_path / "uki.efi"
    r = build(bins, uki)
    assert r.returncode == 0, r.stderr
    built = json.loads(r.stdout)
    # systemd-measure 252's own prediction for the same sections (no TPM needed to calculate).
    r = run_ok([MEASURE, "calculate", "--bank=sha256", f"--linux={PCRSIG / 'linux'}",
                f"--osrel={PCRSIG / 'osrel'}", f"--cmdline={PCRSIG / 'cmdline'}",
                f"--initrd={PCRSIG / 'initrd'}", f"--pcrpkey={PCRSIG / 'public.pem'}",
                "--phase=enter-initrd", "--json=short"])
    theirs = json.loads(r.stdout)["sha256"][0]["hash"]
    assert built["pcr11"] == [theirs]
    u = inspect(bins, uki)
    assert u["stub"].startswith("systemd-stub 252")
    assert u["pcr11_enter_initrd"] == theirs  # read back from the file, as the stub will
    assert u["signed_for_enter_initrd"] is True and u["signatures"] == 1
    assert u["cmdline"] == (PCRSIG / "cmdline").read_text()
    # .pcrsig is what systemd-measure sign wrote for the same key and value, byte for byte.
    assert section(uki, ".pcrsig", tmp_path) == (PCRSIG / "enter-initrd.sig.json").read_bytes()
    assert section(uki, ".pcrpkey", tmp_path) == (PCRSIG / "public.pem").read_bytes()
    # No section overlaps another, the kernel sits on a 2 MiB boundary.
    secs = sorted(u["sections"], key=lambda s: s["vma"])
    for a, b in zip(secs, secs[1:]):
        assert a["vma"] + a["size"] <= b["vma"], (a, b)
    linux, = [s for s in secs if s["name"] == ".linux"]
    assert linux["vma"] % 0x200000 == 0 and linux["vma"] >= 0x2000000

    # Several phase paths: one signature each, as systemd-measure's default set.
    r = build(bins, tmp_path / "all.efi", "--phase", "enter-initrd",
              "--phase", "enter-initrd:leave-initrd")
    assert r.returncode == 0, r.stderr
    all_sig = json.loads(section(tmp_path / "all.efi", ".pcrsig", tmp_path))
    fixture = json.loads((PCRSIG / "all-phases.sig.json").read_text())
    assert all_sig["sha256"] == fixture["sha256"][:2]


def test_secure_boot_signed_uki(bins, tmp_path):
    need_tool("sbsign", "sbsigntool")
    key, cert = tmp_path / "db.key", tmp_path / "db.crt"
    run_ok(["openssl", "req", "-new", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
            "-subj", "/CN=Ballast test db/", "-keyout", str(key), "-out", str(cert)])
    uki = tmp_path / "signed.efi"
    r = build(bins, uki, "--secureboot-key", str(key), "--secureboot-certificate", str(cert))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["secure_boot_signed"] is True
    run_ok(["sbverify", "--cert", str(cert), str(uki)])
    assert inspect(bins, uki)["signed_for_enter_initrd"] is True
    plain = tmp_path / "plain.efi"
    assert build(bins, plain).returncode == 0
    r = subprocess.run(["sbverify", "--cert", str(cert), str(plain)], capture_output=True)
    assert r.returncode != 0


def test_uki_errors(bins, tmp_path):
    out = tmp_path / "uki.efi"
    other = tmp_path / "other.pem"
    run_ok(["openssl", "genrsa", "-out", str(other), "2048"])
    r = build(bins, out, key=other)
    assert r.returncode != 0 and "is not the key of --pcr-public-key" in r.stderr, r.stderr
    assert not out.exists()
    r = build(bins, out, "--phase", "enter initrd")
    assert r.returncode != 0 and "--phase 'enter initrd'" in r.stderr
    r = build(bins, out, "--secureboot-key", str(other))
    assert r.returncode != 0 and "go together" in r.stderr
    assert not out.exists()
    # A UKI is not a stub to build on.
    assert build(bins, out).returncode == 0
    r = build(bins, tmp_path / "again.efi", "--stub", str(out))
    assert r.returncode != 0 and "not a bare stub" in r.stderr
    assert not (tmp_path / "again.efi").exists()
    r = build(bins, tmp_path / "again.efi", "--secureboot-key", str(tmp_path / "nokey"),
              "--secureboot-certificate", str(PCRSIG / "public.pem"))
    assert r.returncode != 0 and "--secureboot-key" in r.stderr and "nokey" in r.stderr
    assert not (tmp_path / "again.efi").exists()
    # A stub whose measurements Ballast does not predict (systemd 254+ adds .uname, .sbat).
    magic = tmp_path / "magic"
    magic.write_bytes(b"#### LoaderInfo: systemd-stub 254.26-1~bpo12+1 ####\0")
    newer = tmp_path / "newer-stub.efi"
    run_ok(["objcopy", "--update-section", f".sdmagic={magic}", STUB, str(newer)])
    r = build(bins, tmp_path / "again.efi", "--stub", str(newer))
    assert r.returncode != 0 and "systemd-stub 252 only" in r.stderr and "254.26" in r.stderr
    newer_uki = tmp_path / "newer-uki.efi"
    run_ok(["objcopy", "--update-section", f".sdmagic={magic}", str(out), str(newer_uki)])
    r = ctl(bins, "uki", "inspect", str(newer_uki))
    assert r.returncode != 0 and "systemd-stub 252 only" in r.stderr
    # inspect names what it cannot read.
    junk = tmp_path / "junk.efi"
    junk.write_bytes(b"MZ" + b"\0" * 100)
    r = ctl(bins, "uki", "inspect", str(junk))
    assert r.returncode != 0 and "junk.efi: not a PE image" in r.stderr
    cut = tmp_path / "cut.efi"
    cut.write_bytes(out.read_bytes()[:70000])
    r = ctl(bins, "uki", "inspect", str(cut))
    assert r.returncode != 0 and "outside the file" in r.stderr, r.stderr
    # A .pcrsig by another key: inspect says it does not sign the UKI's own PCR key's value.
    other_pub = tmp_path / "other.pub.pem"
    run_ok(["openssl", "rsa", "-in", str(other), "-pubout", "-out", str(other_pub)])
    mixed = tmp_path / "mixed.efi"
    run_ok(["objcopy", "--update-section", f".pcrpkey={other_pub}", str(out), str(mixed)])
    assert inspect(bins, mixed)["signed_for_enter_initrd"] is False
