"""agentctl uki build/inspect: a release's UKI made from Debian 12's systemd-stub with objcopy,
its PCR 11 predicted and signed by Ballast, checked against systemd-measure 252 and sbsigntool.
The sections are the stand-ins of tests/data/pcr-signature (not a bootable kernel: what is
proven here is the image layout and the measurement; booting one is the VM's job)."""
import hashlib
import json
import shutil
import tarfile
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


# --- the release's UKI inside a bundle (agentctl bundle create --verity --uki) ---

COMPATIBLE = "ballast-test-amd64"


def image_with_links(tmp: Path) -> Path:
    """A slot image whose kernel and os-release are reached through symlinks, the absolute one
    resolved inside the image (as on Debian: /boot/vmlinuz -> vmlinuz-6.1...)."""
    need_tool("mksquashfs", "squashfs-tools")
    src = tmp / "root"
    (src / "boot").mkdir(parents=True)
    (src / "etc").mkdir()
    (src / "usr" / "lib").mkdir(parents=True)
    (src / "boot" / "vmlinuz-6.1.0-test").write_bytes(b"kernel 2.0\n" * 1000)
    (src / "boot" / "vmlinuz").symlink_to("vmlinuz-6.1.0-test")
    (src / "boot" / "initrd.img").write_bytes(b"initrd 2.0\n" * 3000)
    (src / "usr" / "lib" / "os-release").write_text('ID=ballast\nVERSION_ID="2.0"\n')
    (src / "etc" / "os-release").symlink_to("/usr/lib/os-release")
    img = tmp / "rootfs.sqfs"
    run_ok(["mksquashfs", str(src), str(img), "-quiet", "-noappend", "-no-progress"])
    return img


def bundle_create(bins, pki, image: Path, out: Path, *extra):
    return ctl(bins, "--json", "bundle", "create", "--image", str(image), "--version", "2.0",
               "--compatible", COMPATIBLE, "--key", pki["signer"]["key"], "--cert",
               pki["signer"]["cert"], "-o", str(out), *extra)


UKI_ARGS = ("--verity", "--uki", "--pcr-private-key", str(PCRSIG / "private.pem"),
            "--pcr-public-key", str(PCRSIG / "public.pem"))


def resign(pki, folder: Path, edit):
    """The manifest changed by `edit` and signed again with the release key: what a build
    pipeline with a bug (or a stolen key) could publish."""
    m = json.loads((folder / "manifest.json").read_text())
    edit(m)
    (folder / "manifest.json").write_text(json.dumps(m, indent=2) + "\n")
    run_ok(["openssl", "cms", "-sign", "-binary", "-in", str(folder / "manifest.json"), "-signer",
            pki["signer"]["cert"], "-inkey", pki["signer"]["key"], "-outform", "DER", "-out",
            str(folder / "manifest.json.sig")])


def test_bundle_carries_the_releases_uki_tied_to_its_root_hash(bins, signing_pki, tmp_path):
    """bundle create builds the UKI from the image's own kernel, initrd and os-release, with
    the verity root hash on its command line and its PCR 11 signed; the manifest pins it, and
    verify, the tar form and the OCI layout carry it."""
    image = image_with_links(tmp_path)
    out = tmp_path / "b"
    r = bundle_create(bins, signing_pki, image, out, *UKI_ARGS, "--uki-cmdline",
                      "quiet console=ttyS0")
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "manifest.json").read_text())
    uki = out / "uki.efi"
    data = uki.read_bytes()
    assert m["uki"] == {"file": "uki.efi", "size": len(data),
                        "sha256": hashlib.sha256(data).hexdigest()}
    v = m["verity"]
    seen = inspect(bins, uki)
    assert seen["cmdline"] == (f"ballast.roothash={v['root_hash']} "
                               f"ballast.verity_offset={v['hash_offset']} quiet console=ttyS0")
    assert seen["signed_for_enter_initrd"] is True
    # The image's own files, symlinks resolved inside the image.
    assert section(uki, ".linux", tmp_path) == b"kernel 2.0\n" * 1000
    assert section(uki, ".initrd", tmp_path) == b"initrd 2.0\n" * 3000
    assert section(uki, ".osrel", tmp_path) == b'ID=ballast\nVERSION_ID="2.0"\n'
    assert [p.name for p in out.iterdir() if p.name.startswith("ballast-")] == []  # no scratch
    # A one-block image (no hash level at all) is still one veritysetup checks.
    need_tool("veritysetup", "cryptsetup-bin")
    run_ok(["veritysetup", "verify", "--hash-offset", str(v["hash_offset"]), str(out / "rootfs.img"),
            str(out / "rootfs.img"), v["root_hash"]])
    r = ctl(bins, "--json", "bundle", "verify", str(out), "--keyring", signing_pki["ca"])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["uki"]["pcr11_enter_initrd"] == seen["pcr11_enter_initrd"]
    # The tar form: the UKI is the last member, the same bytes.
    tar = tmp_path / "b.tar"
    r = bundle_create(bins, signing_pki, image, tar, *UKI_ARGS)
    assert r.returncode == 0, r.stderr
    with tarfile.open(tar) as t:
        assert t.getnames() == ["manifest.json", "manifest.json.sig", "rootfs.img", "rootfs.bcidx",
                                "uki.efi"]
        tm = json.loads(t.extractfile("manifest.json").read())
        tuki = t.extractfile("uki.efi").read()
    assert tm["uki"]["sha256"] == hashlib.sha256(tuki).hexdigest()
    r = ctl(bins, "bundle", "verify", str(tar), "--keyring", signing_pki["ca"])
    assert r.returncode == 0 and "UKI uki.efi (systemd-stub 252" in r.stdout, r.stderr
    # The OCI layout: one more layer, its own media type, pinned by the same digest.
    layout = tmp_path / "layout"
    r = ctl(bins, "bundle", "export", str(out), "--oci-layout", str(layout), "--tag", "2.0")
    assert r.returncode == 0, r.stderr
    index = json.loads((layout / "index.json").read_text())
    digest = index["manifests"][0]["digest"].split(":")[1]
    art = json.loads((layout / "blobs" / "sha256" / digest).read_text())
    layer = art["layers"][-1]
    assert layer["mediaType"] == "application/vnd.ballast.uki.v1+efi"
    assert layer["digest"] == "sha256:" + m["uki"]["sha256"] and layer["size"] == len(data)


def test_bundle_uki_from_an_erofs_image(bins, signing_pki, tmp_path):
    """erofs-utils 1.5 extracts whole images only; the UKI still gets the image's own files."""
    need_tool("mkfs.erofs", "erofs-utils")
    image_with_links(tmp_path)
    erofs = tmp_path / "rootfs.erofs"
    run_ok(["mkfs.erofs", "--quiet", str(erofs), str(tmp_path / "root")])
    out = tmp_path / "e"
    r = bundle_create(bins, signing_pki, erofs, out, *UKI_ARGS)
    assert r.returncode == 0, r.stderr
    assert section(out / "uki.efi", ".linux", tmp_path) == b"kernel 2.0\n" * 1000
    assert section(out / "uki.efi", ".osrel", tmp_path) == b'ID=ballast\nVERSION_ID="2.0"\n'
    r = ctl(bins, "bundle", "verify", str(out), "--keyring", signing_pki["ca"])
    assert r.returncode == 0, r.stderr


def test_bundle_uki_refusals_name_the_fault(bins, signing_pki, tmp_path):
    image = image_with_links(tmp_path)
    # Ballast sets the root hash itself; systemd's own words would race the initramfs.
    for word in ("roothash=ab", "ballast.roothash=ab", "systemd.verity_root_data=/dev/x",
                 "rd.roothash=ab", "ballast.verity-offset=0", "rd.systemd.verity=1"):
        r = bundle_create(bins, signing_pki, image, tmp_path / "x", *UKI_ARGS, "--uki-cmdline",
                          f"quiet {word}")
        assert r.returncode != 0 and "is not yours to set" in r.stderr, word
    # UKI options without --uki are an error, not ignored.
    r = bundle_create(bins, signing_pki, image, tmp_path / "x", "--verity", "--linux",
                      str(PCRSIG / "linux"))
    assert r.returncode != 0 and "--uki" in r.stderr
    # No PCR key, or no verity: refused before the image is read.
    r = bundle_create(bins, signing_pki, image, tmp_path / "x", "--verity", "--uki")
    assert r.returncode != 0 and "--pcr-private-key" in r.stderr, r.stderr
    r = bundle_create(bins, signing_pki, image, tmp_path / "x", *UKI_ARGS[1:])
    assert r.returncode != 0 and "--uki requires --verity" in r.stderr, r.stderr
    # An image without a kernel where the UKI needs one.
    bare = tmp_path / "bare"
    (bare / "boot").mkdir(parents=True)
    (bare / "boot" / "vmlinuz").symlink_to("/nowhere")
    (bare / "boot" / "initrd.img").write_bytes(b"i")
    run_ok(["mksquashfs", str(bare), str(tmp_path / "bare.sqfs"), "-quiet", "-noappend",
            "-no-progress"])
    r = bundle_create(bins, signing_pki, tmp_path / "bare.sqfs", tmp_path / "x", *UKI_ARGS)
    assert r.returncode != 0 and "/boot/vmlinuz is not a file within the image's /boot" in r.stderr
    assert "give it with --linux" in r.stderr, r.stderr
    # Given with --linux, the image's own (missing) kernel is not needed.
    r = bundle_create(bins, signing_pki, tmp_path / "bare.sqfs", tmp_path / "y", *UKI_ARGS,
                      "--linux", str(PCRSIG / "linux"), "--os-release", str(PCRSIG / "osrel"))
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "x").exists() or not (tmp_path / "x" / "manifest.json").exists()

    # On the node's side (bundle verify is check_bundle): each fault is named.
    good = tmp_path / "good"
    assert bundle_create(bins, signing_pki, image, good, *UKI_ARGS).returncode == 0
    other = tmp_path / "other"  # another salt: another root hash
    assert bundle_create(bins, signing_pki, image, other, *UKI_ARGS).returncode == 0

    def verify(folder):
        return ctl(bins, "bundle", "verify", str(folder), "--keyring", signing_pki["ca"])

    def copy(name):
        dst = tmp_path / name
        shutil.copytree(good, dst)
        return dst

    flipped = copy("flipped")
    data = bytearray((flipped / "uki.efi").read_bytes())
    data[-100] ^= 1
    (flipped / "uki.efi").write_bytes(bytes(data))
    r = verify(flipped)
    assert r.returncode != 0 and "uki.efi sha256" in r.stderr and "does not match" in r.stderr
    missing = copy("missing")
    (missing / "uki.efi").unlink()
    r = verify(missing)
    assert r.returncode != 0 and "the UKI uki.efi named by the manifest is missing" in r.stderr
    # Another release's UKI, signed into the manifest: it would boot the other image.
    swapped = copy("swapped")
    shutil.copy(other / "uki.efi", swapped / "uki.efi")
    other_m = json.loads((other / "manifest.json").read_text())
    resign(signing_pki, swapped, lambda m: m.update(uki=other_m["uki"]))
    r = verify(swapped)
    assert r.returncode != 0 and "must name the image's ballast.roothash once" in r.stderr
    assert "(it differs)" in r.stderr, r.stderr
    # A UKI whose .pcrsig does not sign its own PCR 11: keys would not unseal on its first boot.
    unsigned = copy("unsigned")
    (tmp_path / "empty.json").write_text("{}")
    run_ok(["objcopy", "--update-section", f".pcrsig={tmp_path / 'empty.json'}",
            str(good / "uki.efi"), str(unsigned / "uki.efi")])
    new = (unsigned / "uki.efi").read_bytes()
    resign(signing_pki, unsigned, lambda m: m["uki"].update(
        size=len(new), sha256=hashlib.sha256(new).hexdigest()))
    r = verify(unsigned)
    assert r.returncode != 0 and "holds no valid signature" in r.stderr, r.stderr


def test_a_failed_bundle_create_leaves_the_old_bundle_whole(bins, signing_pki, tmp_path):
    """Re-creating a bundle folder that fails late (signing, a UKI too large for the ESP) leaves
    the bundle that was there as it was: the UKI moves in only with its new manifest."""
    image = image_with_links(tmp_path)
    out = tmp_path / "b"
    assert bundle_create(bins, signing_pki, image, out, *UKI_ARGS).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def still_whole():
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
        r = ctl(bins, "bundle", "verify", str(out), "--keyring", signing_pki["ca"])
        assert r.returncode == 0, r.stderr

    r = ctl(bins, "bundle", "create", "--image", str(image), "--version", "2.0", "--compatible",
            COMPATIBLE, "--key", signing_pki["other"]["key"], "--cert", signing_pki["signer"]["cert"],
            "-o", str(out), *UKI_ARGS)
    assert r.returncode != 0, r.stdout
    still_whole()
    big = tmp_path / "big-initrd"
    with open(big, "wb") as f:
        f.truncate(97 << 20)
    r = bundle_create(bins, signing_pki, image, out, *UKI_ARGS, "--initrd", str(big))
    assert r.returncode != 0 and "over the 96 MiB" in r.stderr and "--initrd" in r.stderr, r.stderr
    still_whole()


# --- the Secure Boot signer against db and dbx (agentctl uki verify) ---

def esl_of_cert(cert: Path, out: Path) -> Path:
    run_ok(["cert-to-efi-sig-list", str(cert), str(out)])
    return out


def esl_of_hash(efi: Path, out: Path) -> Path:
    run_ok(["hash-to-efi-sig-list", str(efi), str(out)])
    return out


def cert_entry(data: bytes) -> int:
    """The file offset of the certificate table's data directory entry (PE32+)."""
    pe = int.from_bytes(data[0x3c:0x40], "little")
    return pe + 24 + 112 + 4 * 8


def cert_table(data: bytes):
    entry = cert_entry(data)
    return (int.from_bytes(data[entry:entry + 4], "little"),
            int.from_bytes(data[entry + 4:entry + 8], "little"))


def first_pkcs7(signed: bytes) -> bytes:
    off, _ = cert_table(signed)
    length = int.from_bytes(signed[off:off + 4], "little")
    return signed[off + 8:off + length]


def win_cert(pkcs7: bytes, revision=0x200, kind=0x0002) -> bytes:
    if kind == 0x0ef1:  # WIN_CERT_TYPE_EFI_GUID with EFI_CERT_TYPE_PKCS7_GUID
        pkcs7 = bytes.fromhex("9dd2af4adf68ee498aa9347d375665a7") + pkcs7
    e = (8 + len(pkcs7)).to_bytes(4, "little") + revision.to_bytes(2, "little") + \
        kind.to_bytes(2, "little") + pkcs7
    return e + bytes(-len(e) % 8)


def with_table(signed: bytes, table: bytes) -> bytes:
    """`signed` with its certificate table replaced by `table` (the digest does not change)."""
    off, _ = cert_table(signed)
    out = bytearray(signed[:off] + table)
    entry = cert_entry(signed)
    out[entry:entry + 8] = off.to_bytes(4, "little") + len(table).to_bytes(4, "little")
    return bytes(out)


def uki_verify(bins, uki: Path, *dbs):
    r = ctl(bins, "--json", "uki", "verify", str(uki), *dbs)
    return r.returncode, (json.loads(r.stdout) if r.stdout else {}), r.stderr


def test_verify_judges_the_signer_as_the_firmware_will(bins, tmp_path):
    """db/dbx as EFI signature lists made by efitools; sbverify and hash-to-efi-sig-list (the
    anchors) agree with Ballast on what verifies and on the Authenticode digest."""
    need_tool("cert-to-efi-sig-list", "efitools")
    need_tool("sbsign", "sbsigntool")

    def keypair(name, *extra):
        key, crt = tmp_path / f"{name}.key", tmp_path / f"{name}.crt"
        run_ok(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                "-out", str(crt), "-subj", f"/CN=Ballast test {name}", "-days", "3650", *extra])
        return key, crt

    def sign(key, crt, src, out):
        run_ok(["sbsign", "--key", str(key), "--cert", str(crt), "--output", str(out), str(src)])
        return out

    uki = tmp_path / "uki.efi"
    assert build(bins, uki).returncode == 0
    db_key, db_crt = keypair("db")
    other_key, other_crt = keypair("other")
    signed = sign(db_key, db_crt, uki, tmp_path / "signed.efi")
    run_ok(["sbverify", "--cert", str(db_crt), str(signed)])
    db = esl_of_cert(db_crt, tmp_path / "db.esl")

    rc, v, err = uki_verify(bins, signed, "--db", str(db))
    assert rc == 0 and v["allowed"], err
    assert v["signers"] == [{"subject": "/CN=Ballast test db", "signs_image": True}]
    # The digest is the one hash-to-efi-sig-list computes (the last 32 bytes of its list).
    assert v["authenticode_sha256"] == esl_of_hash(signed, tmp_path / "h.esl").read_bytes()[-32:].hex()
    # Unsigned. efitools pads an image to 8 bytes before hashing it (as sbsign does before it
    # signs); firmware (EDK2) hashes the file as it is, and so does Ballast: they agree on an
    # aligned image.
    aligned = tmp_path / "aligned.efi"
    data = uki.read_bytes()
    aligned.write_bytes(data + bytes(-len(data) % 8))
    rc, v, _ = uki_verify(bins, aligned, "--db", str(db))
    assert rc == 1 and not v["allowed"] and "not signed" in v["reason"]
    assert v["authenticode_sha256"] == esl_of_hash(aligned, tmp_path / "u.esl").read_bytes()[-32:].hex()
    # An unsigned image whose digest db lists is allowed, as by firmware.
    rc, v, _ = uki_verify(bins, aligned, "--db", str(tmp_path / "u.esl"))
    assert rc == 0 and "is in db" in v["reason"]
    # Another key: refused, the signer named; the anchor agrees.
    wrong = sign(other_key, other_crt, uki, tmp_path / "wrong.efi")
    assert subprocess.run(["sbverify", "--cert", str(db_crt), str(wrong)],
                          capture_output=True).returncode != 0
    rc, v, _ = uki_verify(bins, wrong, "--db", str(db))
    assert rc == 1 and "/CN=Ballast test other does not chain to a certificate in db" in v["reason"]
    # dbx: the image's digest, or the signer's certificate.
    rc, v, _ = uki_verify(bins, signed, "--db", str(db), "--dbx", str(tmp_path / "h.esl"))
    assert rc == 1 and "is in dbx" in v["reason"]
    rc, v, _ = uki_verify(bins, signed, "--db", str(db), "--dbx", str(db))
    assert rc == 1 and v["reason"] == ("the signature by /CN=Ballast test db chains to "
                                       "/CN=Ballast test db, which dbx revokes")
    # A byte changed after signing: the signature signs other bytes.
    data = bytearray(signed.read_bytes())
    data[len(data) // 2] ^= 1
    (tmp_path / "tampered.efi").write_bytes(bytes(data))
    rc, v, _ = uki_verify(bins, tmp_path / "tampered.efi", "--db", str(db))
    assert rc == 1 and "signed other bytes" in v["reason"]
    # db holding the CA that issued the signer (firmware takes any db certificate as anchor).
    ca_key, ca_crt = keypair("ca", "-addext", "basicConstraints=critical,CA:TRUE")
    leaf_key, leaf_csr, leaf_crt = tmp_path / "leaf.key", tmp_path / "leaf.csr", tmp_path / "leaf.crt"
    run_ok(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(leaf_key), "-out",
            str(leaf_csr), "-subj", "/CN=Ballast test release"])
    run_ok(["openssl", "x509", "-req", "-in", str(leaf_csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
            "-CAcreateserial", "-days", "365", "-out", str(leaf_crt)])
    by_leaf = sign(leaf_key, leaf_crt, uki, tmp_path / "leaf.efi")
    ca_esl = esl_of_cert(ca_crt, tmp_path / "ca.esl")
    rc, v, err = uki_verify(bins, by_leaf, "--db", str(ca_esl))
    assert rc == 0 and v["signers"][0]["subject"] == "/CN=Ballast test release", (v, err)
    # dbx revoking an ancestor of the signer (db holding the leaf itself): refused.
    leaf_esl = esl_of_cert(leaf_crt, tmp_path / "leaf.esl")
    rc, v, _ = uki_verify(bins, by_leaf, "--db", str(leaf_esl), "--dbx", str(ca_esl))
    assert rc == 1 and "chains to /CN=Ballast test ca, which dbx revokes" in v["reason"], v
    # inspect names the signer too, and says when a signature is not over the image.
    assert inspect(bins, signed)["secure_boot"]["signers"] == [
        {"subject": "/CN=Ballast test db", "signs_image": True}]
    assert inspect(bins, tmp_path / "tampered.efi")["secure_boot"]["signers"][0]["signs_image"] is False


def test_verify_refuses_damaged_databases_and_images(bins, tmp_path):
    need_tool("cert-to-efi-sig-list", "efitools")
    uki = tmp_path / "uki.efi"
    assert build(bins, uki).returncode == 0
    key, crt = tmp_path / "db.key", tmp_path / "db.crt"
    run_ok(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
            str(crt), "-subj", "/CN=db", "-days", "30"])
    db = esl_of_cert(crt, tmp_path / "db.esl")
    cut = tmp_path / "cut.esl"
    cut.write_bytes(db.read_bytes()[:-10])
    rc, _, err = uki_verify(bins, uki, "--db", str(cut))
    assert rc == 1 and f"{cut}: signature list at byte 0: list size" in err, err
    # A certificate table entry claiming more bytes than there are: the table does not add up.
    signed = tmp_path / "signed.efi"
    run_ok(["sbsign", "--key", str(key), "--cert", str(crt), "--output", str(signed), str(uki)])
    data = bytearray(signed.read_bytes())
    table, _ = cert_table(bytes(data))
    data[table:table + 4] = (10 ** 6).to_bytes(4, "little")
    (tmp_path / "bad-table.efi").write_bytes(bytes(data))
    rc, v, err = uki_verify(bins, tmp_path / "bad-table.efi", "--db", str(db))
    assert rc == 1 and v["reason"] == "the certificate table does not end where its directory entry says"
    # inspect still inspects it.
    assert inspect(bins, tmp_path / "bad-table.efi")["secure_boot"]["signers"] == []
    # An unsigned image whose directory entry points nowhere, with size 0: just unsigned.
    data = bytearray(uki.read_bytes())
    entry = cert_entry(bytes(data))
    data[entry:entry + 8] = (0xfffffff0).to_bytes(4, "little") + bytes(4)
    (tmp_path / "stray.efi").write_bytes(bytes(data))
    rc, v, err = uki_verify(bins, tmp_path / "stray.efi", "--db", str(db))
    assert rc == 1 and "not signed" in v["reason"], err
    assert inspect(bins, tmp_path / "stray.efi")["secure_boot"]["signers"] == []
    # Headers that do not cover the section table (SizeOfHeaders at +60 of the optional
    # header): the section table would lie outside the hash. Refused, inspect says why.
    data = bytearray(signed.read_bytes())
    pe = int.from_bytes(data[0x3c:0x40], "little")
    data[pe + 24 + 60:pe + 24 + 64] = (304).to_bytes(4, "little")
    (tmp_path / "short-headers.efi").write_bytes(bytes(data))
    rc, _, err = uki_verify(bins, tmp_path / "short-headers.efi", "--db", str(db))
    assert rc == 1 and "do not cover the optional header and the section table" in err, err
    seen = inspect(bins, tmp_path / "short-headers.efi")["secure_boot"]
    assert "do not cover" in seen["error"]
    # Other headers EDK2's loader refuses before it hashes (PeCoffLoaderGetPeHeader).
    opt = pe + 24
    table_at = opt + int.from_bytes(signed.read_bytes()[pe + 20:pe + 22], "little")
    for name, at, value, message in (
            ("rva17", opt + 108, 17, "does not match its 17 data directories"),
            ("soi", opt + 56, 1024, "is not below SizeOfImage"),
            ("va0", table_at + 12, 0, "is loaded inside the PE headers")):
        data = bytearray(signed.read_bytes())
        data[at:at + 4] = value.to_bytes(4, "little")
        (tmp_path / f"{name}.efi").write_bytes(bytes(data))
        rc, _, err = uki_verify(bins, tmp_path / f"{name}.efi", "--db", str(db))
        assert rc == 1 and message in err, (name, err)
    # --dbx is a list to add to a --db, not alone.
    r = ctl(bins, "uki", "verify", str(uki), "--dbx", str(db))
    assert r.returncode != 0 and "--dbx requires --db" in r.stderr, r.stderr
    # No efivarfs here, and no --db: said so.
    if not Path("/sys/firmware/efi/efivars").is_dir():
        rc, _, err = uki_verify(bins, uki)
        assert rc == 1 and "no EFI variables" in err and "--db" in err


def test_verify_looks_at_every_signature_and_the_whole_table(bins, tmp_path):
    """As EDK2: one signature that dbx revokes refuses the image whatever the others say and in
    whichever order, whatever the entry's revision or type; a table that does not end where
    its directory entry says refuses it too."""
    need_tool("cert-to-efi-sig-list", "efitools")
    uki = tmp_path / "uki.efi"
    assert build(bins, uki).returncode == 0
    pairs = {}
    for name in ("db", "other"):
        key, crt = tmp_path / f"{name}.key", tmp_path / f"{name}.crt"
        run_ok(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                "-out", str(crt), "-subj", f"/CN={name}", "-days", "30"])
        out = tmp_path / f"{name}.efi"
        run_ok(["sbsign", "--key", str(key), "--cert", str(crt), "--output", str(out), str(uki)])
        pairs[name] = (out.read_bytes(), esl_of_cert(crt, tmp_path / f"{name}.esl"))
    signed, db = pairs["db"]
    good, bad = first_pkcs7(signed), first_pkcs7(pairs["other"][0])
    dbs = ("--db", str(db), "--dbx", str(pairs["other"][1]))

    def judge(name, table, *args):
        path = tmp_path / name
        path.write_bytes(with_table(signed, table))
        return uki_verify(bins, path, *args)

    for name, table in (("good-bad", win_cert(good) + win_cert(bad)),
                        ("bad-good", win_cert(bad) + win_cert(good)),
                        ("rev1", win_cert(good) + win_cert(bad, revision=0x100)),
                        ("guid", win_cert(good) + win_cert(bad, kind=0x0ef1))):
        rc, v, err = judge(f"{name}.efi", table, *dbs)
        assert rc == 1 and "the signature by /CN=other chains to /CN=other, which dbx revokes" \
            in v["reason"], (name, v, err)
    # Without that dbx, the good one allows it; both signers are named.
    rc, v, _ = judge("both.efi", win_cert(bad) + win_cert(good), "--db", str(db))
    assert rc == 0 and [x["subject"] for x in v["signers"]] == ["/CN=other", "/CN=db"]
    # A good signature, then a lone 8-byte header: the table does not add up.
    rc, v, _ = judge("trailing.efi", win_cert(good) + bytes.fromhex("0800000000020200"),
                     "--db", str(db))
    assert rc == 1 and "does not end where" in v["reason"], v
    # An entry of another type is skipped, not judged.
    rc, v, _ = judge("other-type.efi", win_cert(bad, kind=0x0001) + win_cert(good), *dbs)
    assert rc == 0 and [x["subject"] for x in v["signers"]] == ["/CN=db"], v
    # ... even one that is a bare header.
    rc, v, _ = judge("bare.efi", bytes.fromhex("0800000000020100") + win_cert(good), *dbs)
    assert rc == 0, v
    # dbx listing the signer's TBSCertificate hash (EFI_CERT_X509_SHA256): refused.
    from cryptography import x509
    tbs = x509.load_pem_x509_certificate((tmp_path / "db.crt").read_bytes()).tbs_certificate_bytes
    entry = bytes(16) + hashlib.sha256(tbs).digest() + bytes(16)  # owner, hash, EFI_TIME
    guid = bytes.fromhex("92a4d23bc0967940b420fcf98ef103ed")
    esl = guid + (28 + len(entry)).to_bytes(4, "little") + bytes(4) + len(entry).to_bytes(4, "little") + entry
    (tmp_path / "tbs.esl").write_bytes(esl)
    rc, v, _ = uki_verify(bins, tmp_path / "db.efi", "--db", str(db), "--dbx", str(tmp_path / "tbs.esl"))
    assert rc == 1 and "chains to /CN=db (by its TBS hash), which dbx revokes" in v["reason"], v
