"""Bundles as OCI artifacts: `agentctl bundle export --oci-layout` writes a layout that Debian's
skopeo pushes to a real registry (docker-registry, TLS) unchanged, and that pulled back with
ordinary OCI tools gives the bundle folder again; every bad input is refused before any blob
is named."""
import hashlib
import json
import shutil
import sys
from pathlib import Path

import pytest

from conftest import ctl, make_slot_image, need_tool, run_ok

TOP = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TOP / "tests" / "integration" / "helpers"))
from registry import Registry  # noqa: E402

ARTIFACT = "application/vnd.ballast.os.v1"


@pytest.fixture(scope="module")
def registry(tmp_path_factory, test_pki):
    need_tool("docker-registry", "docker-registry")
    try:
        r = Registry(tmp_path_factory.mktemp("registry"), test_pki)
    except RuntimeError as e:
        pytest.fail(str(e))
    yield r
    r.stop()


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    return make_slot_image(tmp_path_factory.mktemp("oci-image") / "v1.sqfs", "1.0", extra_mb=3)


def bundle(bins, pki, image, out, version="1.0", *extra):
    r = ctl(bins, None, "bundle", "create", "--image", str(image), "--version", version, "--compatible",
            "ballast-test-amd64", "--key", pki["signer"]["key"], "--cert", pki["signer"]["cert"], "-o", str(out),
            *extra)
    assert r.returncode == 0, r.stderr
    return out


def export(bins, src, layout, *extra):
    return ctl(bins, None, "--json", "bundle", "export", str(src), "--oci-layout", str(layout), *extra)


def blob(layout, digest):
    return Path(layout) / "blobs" / "sha256" / digest.removeprefix("sha256:")


def folder_from_layout(layout, tag, out):
    """The bundle folder back from an OCI layout, each layer named by its title (as `oras pull`
    names files)."""
    index = json.loads((Path(layout) / "index.json").read_text())
    (entry,) = [m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == tag]
    manifest = json.loads(blob(layout, entry["digest"]).read_bytes())
    out.mkdir()
    for layer in manifest["layers"]:
        shutil.copyfile(blob(layout, layer["digest"]), out / layer["annotations"]["org.opencontainers.image.title"])
    return manifest


def test_export_push_with_skopeo_and_pull_back(bins, signing_pki, image, registry, tmp_path):
    need_tool("skopeo", "skopeo")
    b = bundle(bins, signing_pki, image, tmp_path / "b.tar")
    layout = tmp_path / "layout"
    r = export(bins, b, layout)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["tag"] == "1.0"
    digest = out["digest"]
    raw = blob(layout, digest).read_bytes()
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest
    m = json.loads(raw)
    assert m["artifactType"] == ARTIFACT and m["config"]["mediaType"] == "application/vnd.oci.empty.v1+json"
    assert [(l["mediaType"], l["annotations"]["org.opencontainers.image.title"]) for l in m["layers"]] == [
        ("application/vnd.ballast.manifest.v1+json", "manifest.json"),
        ("application/vnd.ballast.manifest.sig.v1+cms", "manifest.json.sig"),
        ("application/vnd.ballast.chunk-index.v1", "rootfs.bcidx"),
        ("application/vnd.ballast.rootfs.squashfs.v1", "rootfs.img"),
    ]
    # The image layer's digest is the signed manifest's image digest: the registry adds nothing to trust.
    signed = json.loads(blob(layout, m["layers"][0]["digest"]).read_text())
    assert m["layers"][3]["digest"] == "sha256:" + signed["image"]["sha256"]
    assert m["layers"][2]["digest"] == "sha256:" + signed["index"]["sha256"]
    # skopeo reads the layout as we wrote it, and pushes it unchanged (same manifest digest).
    assert run_ok(["skopeo", "inspect", "--raw", f"oci:{layout}:1.0"]).stdout.encode() == raw
    ref = f"docker://{registry.host}/ballast/os:1.0"
    run_ok(["skopeo", "copy", "--dest-cert-dir", str(registry.cert_dir), f"oci:{layout}:1.0", ref])
    pushed = run_ok(["skopeo", "inspect", "--raw", "--cert-dir", str(registry.cert_dir), ref]).stdout.encode()
    assert pushed == raw
    # Pulled back with ordinary tools, the layers by title are the bundle folder: it verifies.
    pulled = tmp_path / "pulled"
    run_ok(["skopeo", "copy", "--src-cert-dir", str(registry.cert_dir), ref, f"oci:{pulled}:1.0"])
    folder_from_layout(pulled, "1.0", tmp_path / "again")
    r = ctl(bins, None, "bundle", "verify", str(tmp_path / "again"), "--keyring", signing_pki["ca"])
    assert r.returncode == 0 and "chunks indexed" in r.stdout, r.stderr
    assert (tmp_path / "again" / "rootfs.img").read_bytes() == image.read_bytes()


def test_export_keeps_other_tags_and_replaces_its_own(bins, signing_pki, image, tmp_path):
    layout = tmp_path / "layout"
    a = bundle(bins, signing_pki, image, tmp_path / "a")
    assert export(bins, a, layout).returncode == 0
    assert export(bins, a, layout, "--tag", "stable").returncode == 0
    # A new build for the same tag replaces the entry; a bundle without an index has three layers.
    b = bundle(bins, signing_pki, image, tmp_path / "b", "1.0", "--no-index")
    r = export(bins, b, layout, "--tag", "stable")
    assert r.returncode == 0, r.stderr
    index = json.loads((layout / "index.json").read_text())
    tags = {e["annotations"]["org.opencontainers.image.ref.name"]: e["digest"] for e in index["manifests"]}
    assert set(tags) == {"1.0", "stable"} and tags["stable"] == json.loads(r.stdout)["digest"]
    assert len(json.loads(blob(layout, tags["stable"]).read_bytes())["layers"]) == 3
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}


def test_export_refuses_bad_input_and_names_no_blob(bins, signing_pki, image, tmp_path):
    layout = tmp_path / "layout"
    good = bundle(bins, signing_pki, image, tmp_path / "good")
    assert export(bins, good, layout, "--tag", "keep").returncode == 0
    before = (layout / "index.json").read_bytes()
    cases = {}
    b = bundle(bins, signing_pki, image, tmp_path / "tampered")
    data = bytearray((b / "rootfs.img").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (b / "rootfs.img").unlink()
    (b / "rootfs.img").write_bytes(bytes(data))
    cases["tampered image"] = (b, (), "rootfs.img is sha256:")
    b = bundle(bins, signing_pki, image, tmp_path / "unsigned")
    (b / "manifest.json.sig").unlink()
    cases["unsigned"] = (b, (), "unsigned bundle (no manifest.json.sig)")
    b = bundle(bins, signing_pki, image, tmp_path / "noindex")
    (b / "rootfs.bcidx").unlink()
    cases["missing index"] = (b, (), "rootfs.bcidx named by the manifest is missing")
    b = bundle(bins, signing_pki, image, tmp_path / "short")
    with open(b / "rootfs.bcidx", "ab") as f:
        f.write(b"x")
    cases["index size"] = (b, (), "the manifest says")
    cases["bad tag"] = (good, ("--tag", "-x"), "tag '-x' is not valid")
    cases["bad version as tag"] = (bundle(bins, signing_pki, image, tmp_path / "plus", "1.0+b1"), (),
                                   "the version '1.0+b1' is not a valid OCI tag: name one with --tag")
    cases["no bundle"] = (tmp_path / "nothing", (), "no such bundle")
    for name, (src, extra, message) in cases.items():
        r = export(bins, src, layout, *extra)
        assert r.returncode != 0 and message in r.stderr, f"{name}: {r.stderr}"
        assert (layout / "index.json").read_bytes() == before, name
    # No half-written blob is left under a digest name.
    for p in (layout / "blobs" / "sha256").iterdir():
        assert hashlib.sha256(p.read_bytes()).hexdigest() == p.name
    # A folder that is not an OCI layout is not overwritten.
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "index.json").write_text("[1, 2]")
    r = export(bins, good, junk)
    assert r.returncode != 0 and "not an OCI image index" in r.stderr
    assert (junk / "index.json").read_text() == "[1, 2]"


@pytest.fixture(scope="module")
def private_registry(tmp_path_factory, test_pki):
    """A registry that wants htpasswd Basic auth (user edge)."""
    need_tool("docker-registry", "docker-registry")
    try:
        r = Registry(tmp_path_factory.mktemp("private-registry"), test_pki, users={"edge": "s3cret-Pw"})
    except RuntimeError as e:
        pytest.fail(str(e))
    yield r
    r.stop()


def push(bins, src, ref, *extra, env=None):
    return ctl(bins, None, "--json", "bundle", "push", str(src), ref, *extra, env=env)


def test_push_with_basic_auth_then_pull_back(bins, signing_pki, image, private_registry, test_pki, tmp_path):
    need_tool("skopeo", "skopeo")
    reg = private_registry
    b = bundle(bins, signing_pki, image, tmp_path / "b.tar")
    auth = reg.auth_file(tmp_path / "auth.json", "edge", "s3cret-Pw")
    ca = ["--ca-file", str(test_pki / "ca.pem")]
    ref = f"{reg.host}/edge/ballast-os:1.0"
    r = push(bins, b, ref, "--auth-file", str(auth), *ca)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["uploaded"] == out["bytes"] and out["skipped"] == 0
    # The same manifest bytes as the layout export: pushing is publishing the one artifact.
    exported = json.loads(export(bins, b, tmp_path / "layout").stdout)["digest"]
    assert out["digest"] == exported
    creds = ["--creds", "edge:s3cret-Pw", "--cert-dir", str(reg.cert_dir)]
    raw = run_ok(["skopeo", "inspect", "--raw", *creds, f"docker://{ref}"]).stdout.encode()
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == out["digest"]
    # Pushed again (another tag): every blob is there already, only the manifest is stored.
    r = push(bins, b, f"{reg.host}/edge/ballast-os:stable", "--auth-file", str(auth), *ca)
    assert r.returncode == 0, r.stderr
    again = json.loads(r.stdout)
    assert again["uploaded"] == 0 and again["skipped"] == out["bytes"] and again["digest"] == out["digest"]
    # Pulled back by ordinary tools, it is the bundle again.
    run_ok(["skopeo", "copy", "--src-creds", "edge:s3cret-Pw", "--src-cert-dir", str(reg.cert_dir),
            f"docker://{reg.host}/edge/ballast-os:stable", f"oci:{tmp_path / 'pulled'}:x"])
    folder_from_layout(tmp_path / "pulled", "x", tmp_path / "again")
    r = ctl(bins, None, "bundle", "verify", str(tmp_path / "again"), "--keyring", signing_pki["ca"])
    assert r.returncode == 0, r.stderr
    # The most specific credentials entry wins: a namespace entry over the host's.
    both = tmp_path / "both.json"
    entries = {reg.host: {"auth": "d3Jvbmc6d3Jvbmc="},  # wrong:wrong
               f"{reg.host}/edge": json.loads(auth.read_text())["auths"][reg.host]}
    both.write_text(json.dumps({"auths": entries}))
    assert push(bins, b, ref, "--auth-file", str(both), *ca).returncode == 0


def test_push_refusals_name_the_fault_and_never_the_secret(bins, signing_pki, image, private_registry, test_pki,
                                                           tmp_path):
    reg = private_registry
    b = bundle(bins, signing_pki, image, tmp_path / "b")
    ca = ["--ca-file", str(test_pki / "ca.pem")]
    ref = f"{reg.host}/edge/refused:1.0"
    wrong = reg.auth_file(tmp_path / "wrong.json", "edge", "not-the-Pw")
    r = push(bins, b, ref, "--auth-file", str(wrong), *ca)
    assert r.returncode == 4 and "the credentials of 'edge' were refused" in r.stderr, r.stderr
    assert "not-the-Pw" not in r.stderr + r.stdout
    # No credentials anywhere (HOME without any file, no auth file named).
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "XDG_RUNTIME_DIR": str(home), "REGISTRY_AUTH_FILE": ""}
    r = push(bins, b, ref, *ca, env=env)
    assert r.returncode == 4 and "asks for credentials and none are known" in r.stderr, r.stderr
    # ~/.docker/config.json is read when no file is named.
    (home / ".docker").mkdir()
    reg.auth_file(home / ".docker" / "config.json", "edge", "s3cret-Pw")
    r = push(bins, b, ref, *ca, env=env)
    assert r.returncode == 0, r.stderr
    # The registry's certificate is checked.
    r = push(bins, b, ref, "--auth-file", str(wrong), "--ca-file", str(test_pki / "otherca.pem"))
    assert r.returncode == 1 and "certificate" in r.stderr.lower(), r.stderr
    bad_auth = tmp_path / "bad.json"
    bad_auth.write_text('{"auths": {"x": {"auth": "%%%"}}}')
    r = push(bins, b, ref, "--auth-file", str(bad_auth), *ca)
    assert r.returncode == 1 and 'auths."x".auth is not base64 of user:password' in r.stderr, r.stderr
    for text, message in [("edge/os:1.0", "'edge' is not a registry host"),
                          ("os:1.0", "names no registry"),
                          ("registry.example/Edge/os:1.0", "repository 'Edge/os' is not valid"),
                          ("registry.example/edge/os", "names no tag or digest"),
                          (f"{reg.host}/edge/os@sha256:{'0' * 64}", "name a tag to push to, not a digest"),
                          ("registry.example/edge/os@sha256:xyz", "the digest must be sha256:")]:
        r = push(bins, b, text, *ca)
        assert r.returncode != 0 and message in r.stderr, f"{text}: {r.stderr}"


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory, test_pki):
    """A registry behind the tests' Bearer token service (user edge)."""
    need_tool("docker-registry", "docker-registry")
    from token_server import TokenServer
    d = tmp_path_factory.mktemp("token-registry")
    try:
        tokens = TokenServer(d, test_pki, {"edge": "t0ken-Pw"})
        r = Registry(d, test_pki, auth=tokens.registry_auth())
    except RuntimeError as e:
        pytest.fail(str(e))
    yield r, tokens
    r.stop()
    tokens.stop()


def test_push_through_a_bearer_token_service(bins, signing_pki, image, token_registry, test_pki, tmp_path):
    need_tool("skopeo", "skopeo")
    reg, tokens = token_registry
    b = bundle(bins, signing_pki, image, tmp_path / "b")
    ca = ["--ca-file", str(test_pki / "ca.pem")]
    ref = f"{reg.host}/edge/ballast-os:1.0"
    auth = reg.auth_file(tmp_path / "auth.json", "edge", "t0ken-Pw")
    r = push(bins, b, ref, "--auth-file", str(auth), *ca)
    assert r.returncode == 0, r.stderr
    assert "repository:edge/ballast-os:pull,push" in tokens.scopes
    # One token for the whole push: it is kept until the registry refuses it.
    assert tokens.issued == 1
    raw = run_ok(["skopeo", "inspect", "--raw", "--creds", "edge:t0ken-Pw", "--cert-dir", str(reg.cert_dir),
                  f"docker://{ref}"]).stdout.encode()
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == json.loads(r.stdout)["digest"]
    wrong = reg.auth_file(tmp_path / "wrong.json", "edge", "nope-Pw")
    r = push(bins, b, ref, "--auth-file", str(wrong), *ca)
    assert r.returncode == 4 and "the token service refused the credentials of 'edge'" in r.stderr, r.stderr
    assert "nope-Pw" not in r.stderr


@pytest.fixture(scope="module")
def big_image(tmp_path_factory):
    """An image of two upload pieces (16 MiB each)."""
    return make_slot_image(tmp_path_factory.mktemp("oci-big") / "big.sqfs", "1.0", extra_mb=20)


@pytest.mark.parametrize("auth", ["basic", "bearer"])
def test_push_resumes_after_a_401_and_starts_over_after_a_cut_piece(bins, signing_pki, big_image, private_registry,
                                                                    token_registry, test_pki, tmp_path, auth):
    need_tool("skopeo", "skopeo")
    from fault_proxy import FaultProxy
    reg, password = (private_registry, "s3cret-Pw") if auth == "basic" else (token_registry[0], "t0ken-Pw")
    proxy = FaultProxy(reg.port, test_pki)
    try:
        b = bundle(bins, signing_pki, big_image, tmp_path / "b")
        ref = f"{proxy.host}/edge/resumed-{auth}:1.0"
        auth_file = reg.auth_file(tmp_path / "auth.json", "edge", password, key=proxy.host)
        # The image's second piece is refused as if its token had expired; sent again, it is cut
        # after half its bytes reached the registry.
        proxy.faults = [("PATCH", "pass"), ("PATCH", "401"), ("PATCH", "drop-half")]
        r = push(bins, b, ref, "--auth-file", str(auth_file), "--ca-file", str(test_pki / "ca.pem"))
        assert r.returncode == 0, r.stderr
        assert not proxy.faults
        assert "asking the registry where the upload stands" in r.stderr
        out = json.loads(r.stdout)
        assert out["uploaded"] == out["bytes"]
        statuses = [(m, s) for m, _, s in proxy.log]
        refused = statuses.index(("PATCH", 401))
        assert statuses[refused - 1:refused + 8] == [
            ("PATCH", 202),  # piece 1
            ("PATCH", 401),  # piece 2, refused: the registry has piece 1 only
            ("GET", 204),    # where the upload stands: Range 0-16777215
            ("PATCH", -1),   # piece 2 again, from byte 16 MiB, cut half-way
            # distribution 2.8 cancels an upload whose signed _state no longer matches what it
            # holds, so a cut piece costs the blob: a new upload from byte 0.
            ("GET", 404),
            ("POST", 202),
            ("PATCH", 202),
            ("PATCH", 202),
            ("PUT", 201),    # the digest checked by the registry
        ], statuses
        raw = run_ok(["skopeo", "inspect", "--raw", "--creds", f"edge:{password}", "--cert-dir", str(reg.cert_dir),
                      f"docker://{reg.host}/edge/resumed-{auth}:1.0"]).stdout.encode()
        assert "sha256:" + hashlib.sha256(raw).hexdigest() == out["digest"]
        if auth == "bearer":
            assert token_registry[1].issued >= 2  # a new token after the 401
    finally:
        proxy.stop()


def test_credentials_never_go_to_a_host_the_registry_names(bins, signing_pki, image, private_registry, test_pki,
                                                           tmp_path):
    from fault_proxy import FaultProxy
    reg = private_registry
    proxy = FaultProxy(reg.port, test_pki)
    try:
        b = bundle(bins, signing_pki, image, tmp_path / "b")
        auth_file = reg.auth_file(tmp_path / "auth.json", "edge", "s3cret-Pw", key=proxy.host)
        proxy.faults = [("POST", "foreign-location")]
        r = push(bins, b, f"{proxy.host}/edge/elsewhere:1.0", "--auth-file", str(auth_file),
                 "--ca-file", str(test_pki / "ca.pem"))
        assert r.returncode == 1, r.stderr
        assert ("the registry names another host for the next request; its credentials are not sent there: "
                "https://127.0.0.2:9/v2/edge/elsewhere/blobs/uploads/") in r.stderr
        assert "s3cret-Pw" not in r.stderr
    finally:
        proxy.stop()
