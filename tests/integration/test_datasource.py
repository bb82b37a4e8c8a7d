"""Cloud datasources: each provider against a stand-in of its platform's metadata service
(helpers/metadata_standin.py, following the platform's published API), served on the platform's
own link-local address inside a network namespace of the test's own, with the real agent run in
that namespace. User-data variants (plain, gzip, base64, multipart with a script), missing
user-data, absent and slow services, a bad document."""
import base64
import gzip
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import need_tool, wait_for
from test_stages import make_root
import tls

HELPER = Path(__file__).parent / "helpers" / "metadata_standin.py"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIClouDKeyForTests cloud@test"

# The firmware's name for each platform (cloud-init's ds-identify), under /sys/class/dmi/id.
DMI = {
    "aws": {"sys_vendor": "Amazon EC2", "product_uuid": "ec2a1b2c-0000-0000-0000-000000000000"},
    "gcp": {"product_name": "Google Compute Engine", "sys_vendor": "Google"},
    "azure": {"chassis_asset_tag": "7783-7084-3265-9085-8269-3286-77",
              "product_uuid": "5f0a6a1e-7a43-4c2a-9d3c-0123456789ab"},
    "openstack": {"product_name": "OpenStack Nova"},
    "digitalocean": {"sys_vendor": "DigitalOcean"},
    "hetzner": {"sys_vendor": "Hetzner"},
    "vultr": {"sys_vendor": "Vultr"},
    "scaleway": {"sys_vendor": "Scaleway"},
    "equinix": {"product_name": "Equinix Metal"},
}
IDS = {"digitalocean": "3164444"}  # a droplet id is a number


class Netns:
    """A network namespace holding only loopback, with the metadata addresses on it; the
    stand-in and the agent run inside, so nothing leaves this machine."""

    def __init__(self, name: str):
        self.name, self.procs = name, []
        subprocess.run(["ip", "netns", "add", name], check=True)
        for cmd in (["ip", "link", "set", "lo", "up"],
                    ["ip", "addr", "add", "169.254.169.254/32", "dev", "lo"],
                    ["ip", "addr", "add", "169.254.42.42/32", "dev", "lo"],
                    ["ip", "addr", "add", "168.63.129.16/32", "dev", "lo"]):
            subprocess.run(["ip", "netns", "exec", name, *cmd], check=True)
        # `ip netns exec` bind-mounts /etc/netns/NAME/hosts over /etc/hosts.
        self.etc = Path("/etc/netns") / name
        self.etc.mkdir(parents=True, exist_ok=True)
        (self.etc / "hosts").write_text("127.0.0.1 localhost\n169.254.169.254 metadata.platformequinix.com\n")

    def exec(self, *argv, **kw):
        return subprocess.run(["ip", "netns", "exec", self.name, *argv], **kw)

    def serve(self, tmp: Path, platform: str, user_data=None, **extra):
        """Starts the platform's stand-in; returns its request log."""
        log = tmp / f"{platform}.log"
        log.unlink(missing_ok=True)
        cfg = {"platform": platform, "instance_id": IDS.get(platform, f"i-{platform}-1"),
               "hostname": f"{platform}-node", "keys": [KEY], "log": str(log),
               "user_data": base64.b64encode(user_data).decode() if user_data is not None else None, **extra}
        (tmp / f"{platform}.json").write_text(json.dumps(cfg))
        p = subprocess.Popen(["ip", "netns", "exec", self.name, sys.executable, str(HELPER), str(tmp / f"{platform}.json")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        assert p.stdout.readline().strip() == "listening", p.stderr.read()
        return log

    def stop_servers(self):
        for p in self.procs:
            p.terminate()
            p.wait(timeout=10)
        self.procs = []

    def close(self):
        self.stop_servers()
        shutil.rmtree(self.etc, ignore_errors=True)
        subprocess.run(["ip", "netns", "del", self.name], check=False)


@pytest.fixture
def netns():
    need_tool("ip", "iproute2")
    ns = Netns(f"ballast-ds-{os.getpid()}")
    yield ns
    ns.close()


def node_on(tmp: Path, platform: str | None) -> Path:
    root = make_root(tmp / "root")
    dmi = root / "sys/class/dmi/id"
    dmi.mkdir(parents=True)
    for f, v in (DMI.get(platform, {}) if platform else {}).items():
        (dmi / f).write_text(v + "\n")
    return root


def run_datasource(bins, netns, root: Path, providers, extra: str = "", settings: str = "", devices=None):
    cfg = root.parent / "ds.yaml"
    cfg.write_text("#cloud-config\nstages:\n  network:\n    - name: ds\n      datasource:\n"
                   f"        providers: {json.dumps(providers)}\n{extra}")
    args = [bins["agent"], "--root", str(root), "stage", "network", "--json", "--config", str(cfg)]
    if settings:
        (root.parent / "agent.yaml").write_text(settings)
        args[1:1] = ["--config", str(root.parent / "agent.yaml")]
    t0 = time.monotonic()
    env = dict(os.environ)
    if devices:
        env["BALLAST_DATASOURCE_DEVICES"] = ":".join(str(d) for d in devices)
    r = netns.exec(*args, capture_output=True, text=True, timeout=120, env=env)
    took = time.monotonic() - t0
    rep = json.loads(r.stdout) if r.stdout.startswith("{") else None
    step = rep["steps"][0] if rep else None
    return r, step, took


def requests(log: Path):
    return [json.loads(l) for l in log.read_text().splitlines()] if log.exists() else []


USER_CONFIG = b"#cloud-config\nwrite_files:\n  - path: /etc/from-cloud\n    content: hi\n"


@pytest.mark.parametrize("platform", sorted(DMI))
def test_each_cloud_gives_user_data_host_name_and_keys(bins, netns, tmp_path, test_pki, platform):
    settings = ""
    extra = {}
    if platform == "equinix":  # https, by name: the test CA signs metadata.platformequinix.com
        pki = tls.make_pki(tmp_path, names=("metadata.platformequinix.com",))
        extra["tls"] = {"cert": str(pki / "server.pem"), "key": str(pki / "server.key")}
        settings = f"http:\n  ca_file: {pki / 'ca.pem'}\n"
    log = netns.serve(tmp_path, platform, USER_CONFIG, **extra)
    root = node_on(tmp_path, platform)
    r, step, _ = run_datasource(bins, netns, root, [platform], settings=settings)
    assert r.returncode == 0 and step["status"] == "changed", (r.stdout, r.stderr)
    stored = root / f"run/ballast/config.d/40-{platform}-01.yaml"
    assert stored.read_bytes() == USER_CONFIG
    # The user-data applies at this boot: its boot-stage file was written by the catch-up.
    assert (root / "etc/from-cloud").read_text() == "hi"
    assert (root / "etc/hostname").read_text() == f"{platform}-node\n"
    assert KEY in (root / "root/.ssh/authorized_keys").read_text()
    # The platform's own rules were followed on the wire.
    reqs = requests(log)
    if platform == "aws":
        assert reqs[0]["method"] == "PUT" and reqs[0]["path"] == "/latest/api/token"
        assert all(q["headers"].get("x-aws-ec2-metadata-token") for q in reqs[1:])
    if platform == "gcp":
        assert all(q["headers"].get("metadata-flavor") == "Google" for q in reqs)
        assert "ssh-ed25519 AAAAproject project" in (root / "root/.ssh/authorized_keys").read_text()
    if platform == "azure":
        assert reqs[0]["headers"]["metadata"] == "true" and "api-version=" in reqs[0]["path"]
        # Provisioning finished: the wireserver took the health report (it refuses wrong ids).
        health = [q for q in reqs if q["path"] == "/machine?comp=health"]
        assert len(health) == 1 and "<State>Ready</State>" in health[0]["body"], reqs
        assert any("reported ready" in n for n in step["notes"]), step
    if platform == "scaleway":
        ud = [q for q in reqs if q["path"] == "/user_data/cloud-init"]
        assert ud and all(q["port"] < 1024 for q in ud), reqs
    # Again: nothing changes.
    r, step, _ = run_datasource(bins, netns, root, [platform], settings=settings)
    assert r.returncode == 0 and step["status"] == "unchanged", step


def test_user_data_variants_and_scripts_once_per_instance(bins, netns, tmp_path):
    root = node_on(tmp_path, "aws")
    # gzip
    netns.serve(tmp_path, "aws", gzip.compress(USER_CONFIG))
    r, step, _ = run_datasource(bins, netns, root, ["aws"])
    assert r.returncode == 0 and (root / "run/ballast/config.d/40-aws-01.yaml").read_bytes() == USER_CONFIG
    netns.stop_servers()
    # base64 (EC2 consoles pass it on encoded; cloud-init decodes what is strictly base64)
    netns.serve(tmp_path, "aws", base64.b64encode(USER_CONFIG))
    r, step, _ = run_datasource(bins, netns, root, ["aws"])
    assert r.returncode == 0 and (root / "run/ballast/config.d/40-aws-01.yaml").read_bytes() == USER_CONFIG
    netns.stop_servers()
    # MIME multipart: two cloud-configs (one base64-encoded, one sets the host name), a script,
    # a boothook Ballast does not run.
    second = b"#cloud-config\nhostname: from-user-data\n"
    multipart = (
        b'Content-Type: multipart/mixed; boundary="===b=="\nMIME-Version: 1.0\n\n'
        b'--===b==\nContent-Type: text/cloud-config; charset="us-ascii"\n\n' + USER_CONFIG +
        b'\n--===b==\nContent-Type: text/cloud-config\nContent-Transfer-Encoding: base64\n\n' +
        base64.b64encode(second) +
        b'\n--===b==\nContent-Type: text/x-shellscript\n\n#!/bin/sh\necho ran >> /script-runs\n'
        b'\n--===b==\nContent-Type: text/cloud-boothook\n\n#cloud-boothook\necho no\n'
        b'\n--===b==--\n')
    netns.serve(tmp_path, "aws", multipart)
    (root / "etc/hostname").write_text("before\n")
    r, step, _ = run_datasource(bins, netns, root, ["aws"])
    assert r.returncode == 0, (r.stdout, r.stderr)
    d = root / "run/ballast/config.d"
    assert (d / "40-aws-01.yaml").read_bytes() == USER_CONFIG
    assert (d / "40-aws-02.yaml").read_bytes() == second
    assert (root / "script-runs").read_text() == "ran\n"
    assert any("text/cloud-boothook" in n for n in step["notes"]), step
    # The user-data's host name outranks the metadata's (as cloud-init): the metadata's is set
    # first, then the fetched config's initramfs-stage step sets its own, at this boot.
    assert (root / "etc/hostname").read_text() == "from-user-data\n"
    # The script ran once for this instance: not again.
    r, step, _ = run_datasource(bins, netns, root, ["aws"])
    assert (root / "script-runs").read_text() == "ran\n"
    assert any("already ran for instance i-aws-1" in n for n in step["notes"]), step
    # At the next boot the user-data's host name still stands: the platform's is not set over it.
    assert (root / "etc/hostname").read_text() == "from-user-data\n"
    assert any("the user-data sets the host name; the platform's (aws-node" in n for n in step["notes"]), step
    netns.stop_servers()
    # Fewer parts: the second goes. Then no user-data: the first goes too; the host name and
    # keys still come.
    netns.serve(tmp_path, "aws", USER_CONFIG)
    r, step, _ = run_datasource(bins, netns, root, ["aws"])
    assert r.returncode == 0 and sorted(p.name for p in d.glob("40-aws*")) == ["40-aws-01.yaml"], step
    netns.stop_servers()
    netns.serve(tmp_path, "aws", None)
    r, step, _ = run_datasource(bins, netns, root, ["aws"])
    assert r.returncode == 0 and not list(d.glob("40-aws*")), list(d.iterdir())
    assert any("no user-data" in n for n in step["notes"])
    assert (root / "etc/hostname").read_text() == "aws-node\n"


def test_absent_slow_and_named_services(bins, netns, tmp_path):
    root = node_on(tmp_path, None)
    # Nothing answers and the firmware names no cloud: each provider costs at most its bounds,
    # says so, and the step does not fail.
    r, step, took = run_datasource(bins, netns, root, ["aws", "gcp", "openstack", "hetzner"])
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert sum("no metadata service answered" in n for n in step["notes"]) == 4, step
    assert took < 10, took
    # A slow service (answers after 5 s): given up after the 3 s request bound.
    netns.serve(tmp_path, "digitalocean", USER_CONFIG, delay=5)
    r, step, took = run_datasource(bins, netns, root, ["digitalocean"])
    assert r.returncode == 0 and "no metadata service answered" in step["notes"][0], step
    assert took < 8, took
    netns.stop_servers()
    # Detection order: the one the firmware names first, whatever the list says.
    root = node_on(tmp_path / "h", "hetzner")
    netns.serve(tmp_path, "hetzner", USER_CONFIG)
    log_do = netns.serve(tmp_path, "scaleway", USER_CONFIG)  # answers too, but is not asked
    r, step, _ = run_datasource(bins, netns, root, ["scaleway", "hetzner"])
    assert r.returncode == 0 and (root / "run/ballast/config.d/40-hetzner-01.yaml").exists(), step
    assert requests(log_do) == []
    netns.stop_servers()
    # IMDS turned off (403 on the token): not this cloud when the firmware does not say so
    # (a note; the next cloud is asked), an error when it does.
    netns.serve(tmp_path, "aws", USER_CONFIG, token_status=403)
    r, step, _ = run_datasource(bins, netns, node_on(tmp_path / "n", None), ["aws", "gcp"])
    assert r.returncode == 0 and "aws: not this platform" in step["notes"][0] and "HTTP 403" in step["notes"][0], step
    r, step, _ = run_datasource(bins, netns, node_on(tmp_path / "a", "aws"), ["aws"], extra="        timeout: 1s\n")
    assert r.returncode == 1 and "turned off" in step["errors"][0], step
    netns.stop_servers()
    # Named by the firmware, but its service never answers: waited for (timeout), then an error.
    r, step, took = run_datasource(bins, netns, root, ["hetzner"], extra="        timeout: 2s\n")
    assert r.returncode == 1 and "the firmware names this machine as hetzner" in step["errors"][0], step
    assert 2 <= took < 12, took


def test_openstack_config_drive(bins, netns, tmp_path):
    """A config-2 volume (vfat, as Nova writes it) is read in user space, before any network."""
    need_tool("mkfs.vfat", "dosfstools")
    need_tool("mcopy", "mtools")
    img = tmp_path / "config-2.img"
    subprocess.run(["truncate", "-s", "4M", str(img)], check=True)
    subprocess.run(["mkfs.vfat", "-n", "config-2", str(img)], check=True, capture_output=True)
    src = tmp_path / "cd"
    (src / "openstack/latest").mkdir(parents=True)
    (src / "openstack/latest/meta_data.json").write_text(json.dumps(
        {"uuid": "83679162-1378-4288-a2d4-70e13ec132aa", "hostname": "drive-node.novalocal",
         "public_keys": {"mykey": KEY}}))
    (src / "openstack/latest/user_data").write_bytes(USER_CONFIG)
    subprocess.run(["mcopy", "-s", "-i", str(img), str(src / "openstack"), "::"], check=True)
    root = node_on(tmp_path, "openstack")
    cfg = root.parent / "ds.yaml"
    cfg.write_text("#cloud-config\nstages:\n  boot:\n    - name: ds\n      datasource: {providers: [openstack]}\n")
    r = netns.exec(bins["agent"], "--root", str(root), "stage", "boot", "--json", "--config", str(cfg),
                   capture_output=True, text=True, env=dict(os.environ, BALLAST_DATASOURCE_DEVICES=str(img)))
    assert r.returncode == 0, r.stdout + r.stderr
    assert (root / "etc/hostname").read_text() == "drive-node\n"
    assert (root / "run/ballast/config.d/40-openstack-01.yaml").read_bytes() == USER_CONFIG
    assert (root / "etc/from-cloud").read_text() == "hi"


OVF = Path(__file__).parents[1] / "data/azure/ovf-env.xml"


def udf_dvd(tmp: Path, name: str, files: dict, label: str = "CDROM") -> Path:
    """A UDF disc as genisoimage writes Azure's provisioning DVD (UDF 1.02, blkid says udf)."""
    need_tool("genisoimage", "genisoimage")
    src = tmp / f"{name}.d"
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    img = tmp / f"{name}.iso"
    subprocess.run(["genisoimage", "-quiet", "-input-charset", "utf-8", "-udf", "-V", label, "-o", str(img), str(src)],
                   check=True)
    return img


def test_azure_provisioning_dvd(bins, netns, tmp_path):
    """Azure's ovf-env.xml on a UDF DVD, read in user space: its custom data is the user-data
    (over IMDS's userData), IMDS's host name and keys win; the password is never kept or shown;
    once the DVD is gone, the copy kept from it still gives the same."""
    dvd = udf_dvd(tmp_path, "ovf", {"ovf-env.xml": OVF.read_bytes()})
    custom = base64.b64decode("".join(OVF.read_text().split("<ns1:CustomData>")[1].split("<")[0].split()))
    other = tmp_path / "blank.img"  # an unrelated disk on the machine: passed over
    other.write_bytes(b"\0" * 65536)
    root = node_on(tmp_path, "azure")
    log = netns.serve(tmp_path, "azure", USER_CONFIG)
    r, step, _ = run_datasource(bins, netns, root, ["azure"], devices=[other, dvd])
    assert r.returncode == 0 and step["status"] == "changed", (r.stdout, r.stderr)
    stored = root / "run/ballast/config.d/40-azure-01.yaml"
    assert stored.read_bytes() == custom
    assert (root / "etc/azure-custom").read_text() == "from the DVD"
    assert not (root / "etc/from-cloud").exists()  # IMDS's userData is not used
    # The custom data sets the host name: IMDS's is not written over it (as cloud-init).
    assert (root / "etc/hostname").read_text() == "from-custom-data\n"
    keys = (root / "root/.ssh/authorized_keys").read_text()
    assert KEY in keys and "azure-ovf-key" not in keys  # IMDS's keys over the DVD's
    assert any("reported ready" in n for n in step["notes"]), step
    assert [q["path"] for q in requests(log)][0].startswith("/metadata/instance?api-version=")
    kept = root / "var/lib/ballast/datasource/azure-ovf-env.xml"
    assert kept.stat().st_mode & 0o777 == 0o600
    secret = "Secret-Do-Not-Keep"
    assert secret not in r.stdout + r.stderr and secret not in kept.read_text()
    for f in root.rglob("*"):
        if f.is_file() and not f.is_symlink():
            assert secret.encode() not in f.read_bytes(), f
    netns.stop_servers()
    # The DVD ejected and IMDS not answering (the wireserver does): waited for up to the step's
    # timeout, then the kept copy gives the same.
    netns.serve(tmp_path, "azure", None, imds=False)
    r, step, took = run_datasource(bins, netns, root, ["azure"], extra="        timeout: 2s\n")
    assert took >= 2 and any("IMDS did not answer" in n for n in step["notes"]), step
    assert r.returncode == 0 and step["status"] == "unchanged", (r.stdout, r.stderr, step)
    assert stored.read_bytes() == custom
    assert (root / "root/.ssh/authorized_keys").read_text() == keys  # as IMDS gave them
    netns.stop_servers()
    # The DVD alone, without IMDS, on a new node: host name and keys from the DVD.
    root = node_on(tmp_path / "dvd-only", "azure")
    netns.serve(tmp_path, "azure", None, imds=False)
    r, step, _ = run_datasource(bins, netns, root, ["azure"], extra="        timeout: 1s\n", devices=[dvd])
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert (root / "run/ballast/config.d/40-azure-01.yaml").read_bytes() == custom
    assert "azure-ovf-key" in (root / "root/.ssh/authorized_keys").read_text()
    netns.stop_servers()
    # A DVD whose CustomData is empty (Azure's "none"): IMDS's userData applies.
    text = OVF.read_text()
    blank = text[:text.index("<ns1:CustomData>") + 16] + "\n" + text[text.index("</ns1:CustomData>"):]
    nocd = udf_dvd(tmp_path, "nocd", {"ovf-env.xml": blank.encode()})
    root = node_on(tmp_path / "no-custom-data", "azure")
    netns.serve(tmp_path, "azure", USER_CONFIG)
    r, step, _ = run_datasource(bins, netns, root, ["azure"], devices=[nocd])
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert (root / "run/ballast/config.d/40-azure-01.yaml").read_bytes() == USER_CONFIG
    assert (root / "etc/hostname").read_text() == "azure-node\n"
    netns.stop_servers()


def test_azure_bad_provisioning_dvd(bins, netns, tmp_path):
    """A malformed ovf-env.xml is an error naming the file and line; nothing is applied or kept.
    A DVD that is not Azure's (no ProvisioningSection) is passed over."""
    netns.serve(tmp_path, "azure", USER_CONFIG)
    text = OVF.read_text().replace("</ns1:HostName>", "</ns1:Host>")
    bad = udf_dvd(tmp_path, "bad", {"ovf-env.xml": text.encode()})
    root = node_on(tmp_path, "azure")
    r, step, _ = run_datasource(bins, netns, root, ["azure"], extra="        timeout: 1s\n", devices=[bad])
    assert r.returncode == 1 and f"{bad}: ovf-env.xml:10: mismatched tag" in step["errors"][0], step
    assert "Secret" not in r.stdout + r.stderr
    assert not (root / "run/ballast/config.d/40-azure-01.yaml").exists()
    assert not (root / "var/lib/ballast/datasource/azure-ovf-env.xml").exists()
    assert not (root / "etc/hostname").exists() or "azure" not in (root / "etc/hostname").read_text()
    # Not Azure's: IMDS's data as if there were no DVD.
    other = udf_dvd(tmp_path, "other", {"ovf-env.xml": b"<Environment xmlns='x'><a/></Environment>"})
    r, step, _ = run_datasource(bins, netns, root, ["azure"], devices=[other])
    assert r.returncode == 0 and (root / "run/ballast/config.d/40-azure-01.yaml").read_bytes() == USER_CONFIG, step
    # A kept copy gone bad (a disk error, an older agent's): passed over with a note, IMDS used.
    kept = root / "var/lib/ballast/datasource/azure-ovf-env.xml"
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_text("<Environment")
    r, step, _ = run_datasource(bins, netns, root, ["azure"])
    assert r.returncode == 0 and any("azure-ovf-env.xml" in n and "(not used)" in n for n in step["notes"]), step


def test_nocloud_on_a_udf_volume(bins, tmp_path):
    """A NoCloud seed written with `genisoimage -udf` (blkid: udf) is read by the UDF reader."""
    img = udf_dvd(tmp_path, "cidata", {"user-data": USER_CONFIG, "meta-data": b"instance-id: udf-1\nlocal-hostname: udf-node\n"},
                  label="cidata")
    root = node_on(tmp_path, None)
    cfg = root.parent / "ds.yaml"
    cfg.write_text("#cloud-config\nstages:\n  boot:\n    - name: ds\n      datasource: {providers: [nocloud]}\n")
    r = subprocess.run([bins["agent"], "--root", str(root), "stage", "boot", "--json", "--config", str(cfg)],
                       capture_output=True, text=True, env=dict(os.environ, BALLAST_DATASOURCE_DEVICES=str(img)))
    assert r.returncode == 0, r.stdout + r.stderr
    assert (root / "etc/from-cloud").read_text() == "hi"


def test_bad_documents_are_errors_naming_what(bins, netns, tmp_path):
    root = node_on(tmp_path, "vultr")
    netns.serve(tmp_path, "vultr", b"password: hunter2\n")
    r, step, _ = run_datasource(bins, netns, root, ["vultr"])
    assert r.returncode == 1 and "neither a cloud-config (#cloud-config) nor a script" in step["errors"][0], step
    assert "hunter2" not in r.stdout + r.stderr  # never echoed: user-data may hold secrets
    assert not list((root / "run/ballast/config.d").glob("40-vultr*"))
    # The host name and keys still applied: a bad user-data does not lock the operator out.
    assert KEY in (root / "root/.ssh/authorized_keys").read_text()
    netns.stop_servers()
    bad = b'Content-Type: multipart/mixed; boundary="x"\n\n--x\nContent-Type: text/cloud-config\n\n#cloud-config\n'
    netns.serve(tmp_path, "vultr", bad)
    r, step, _ = run_datasource(bins, netns, root, ["vultr"])
    assert r.returncode == 1 and "no closing boundary" in step["errors"][0], step
    netns.stop_servers()
    # Azure without its wireserver: the data applies, and the step fails saying provisioning
    # could not be reported.
    root = node_on(tmp_path / "az", "azure")
    netns.serve(tmp_path, "azure", USER_CONFIG, wire=False)
    r, step, took = run_datasource(bins, netns, root, ["azure"])
    assert r.returncode == 1 and "reporting ready" in step["errors"][0] and "168.63.129.16" in step["errors"][0], step
    assert (root / "run/ballast/config.d/40-azure-01.yaml").exists() and took < 10
    # A provider name nobody knows is a load error naming the line; Kairos' vmware a warning.
    cfg = tmp_path / "x.yaml"
    cfg.write_text("#cloud-config\nstages:\n  network:\n    - datasource:\n        providers: [vmware, awz]\n")
    r = subprocess.run([bins["ctl"], "config", "validate", str(cfg)], capture_output=True, text=True)
    assert r.returncode == 1 and "x.yaml:5:20: warning" in r.stdout + r.stderr, r.stdout + r.stderr
    assert "unknown provider 'awz'" in r.stdout + r.stderr


# The platforms' own network descriptions, each for the node's one NIC (ens3, fa:16:3e:00:00:01).
PLATFORM_NET = {
    "openstack": {
        "links": [{"id": "tap1", "type": "phy", "ethernet_mac_address": "FA:16:3E:00:00:01", "mtu": 1450}],
        "networks": [{"id": "n0", "link": "tap1", "type": "ipv4", "ip_address": "192.168.90.5",
                      "netmask": "255.255.255.0",
                      "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "192.168.90.1"}]}],
        "services": [{"type": "dns", "address": "192.168.90.2"}]},
    "hetzner": {
        "network-config": {"version": 1, "config": [
            {"type": "physical", "name": "eth0", "mac_address": "FA:16:3E:00:00:01",
             "subnets": [{"type": "dhcp", "ipv4": True},
                         {"type": "static", "address": "2a01:4f8::1/64", "gateway": "fe80::1", "ipv6": True}]}]},
        "private-networks": []},
    "digitalocean": {
        "interfaces": {"public": [{"mac": "fa:16:3e:00:00:01", "type": "public",
                                   "ipv4": {"ip_address": "192.168.90.5", "netmask": "255.255.255.0",
                                            "gateway": "192.168.90.1"}}]},
        "dns": {"nameservers": ["192.168.90.2"]}},
    "vultr": {
        "interfaces": [{"mac": "fa:16:3e:00:00:01", "network-type": "public",
                        "ipv4": {"address": "192.168.90.5", "netmask": "255.255.255.0",
                                 "additional": [{"address": "192.168.91.7", "netmask": "255.255.255.0"}]},
                        "ipv6": {"additional": []}}]},
}
RENDERED = {"openstack": ["Address=192.168.90.5/24", "Gateway=192.168.90.1", "MTUBytes=1450", "DNS=192.168.90.2"],
            "hetzner": ["DHCP=ipv4", "Address=2a01:4f8::1/64", "Gateway=fe80::1"],
            "digitalocean": ["Address=192.168.90.5/24", "Gateway=192.168.90.1", "DNS=192.168.90.2"],
            "vultr": ["DHCP=ipv4", "Address=192.168.91.7/24", "DNS=108.61.10.10"]}


def node_with_nic(tmp: Path, platform: str) -> Path:
    """A node root with netplan's generator and one NIC in its /sys (as the agent reads it)."""
    from test_network import with_netplan
    root = with_netplan(node_on(tmp, platform))
    nic = root / "sys/class/net/ens3"
    (nic / "device").mkdir(parents=True)
    (nic / "address").write_text("fa:16:3e:00:00:01\n")
    return root


def rendered(root: Path) -> str:
    net = root / "run/systemd/network"
    return "".join(p.read_text() for p in sorted(net.glob("*"))) if net.exists() else ""


@pytest.mark.parametrize("platform", sorted(PLATFORM_NET))
def test_platform_network_config(bins, netns, tmp_path, platform):
    """The platform's own network description, converted as cloud-init converts it, stored as a
    config file of its own and rendered by netplan at the boot that fetched it (the catch-up of
    the stages before the step's own)."""
    netns.serve(tmp_path, platform, USER_CONFIG, network=PLATFORM_NET[platform])
    root = node_with_nic(tmp_path, platform)
    r, step, _ = run_datasource(bins, netns, root, [platform])
    assert r.returncode == 0, (r.stdout, r.stderr)
    stored = root / f"run/ballast/config.d/39-{platform}-platform-network.yaml"
    assert stored.read_text().startswith("#cloud-config\nnetwork:"), stored.read_text()
    assert any("network (initramfs stage, fetched): rendered" in c for c in step["changes"]), step
    out = rendered(root)
    for want in RENDERED[platform]:
        assert want in out, (want, out)
    # Again: nothing changes.
    r, step, _ = run_datasource(bins, netns, root, [platform])
    assert r.returncode == 0 and step["status"] == "unchanged", step


def test_platform_network_yields_to_the_nodes_own_and_survives_the_next_boot(bins, netns, tmp_path):
    netns.serve(tmp_path, "openstack", USER_CONFIG, network=PLATFORM_NET["openstack"])
    root = node_with_nic(tmp_path, "openstack")
    r, step, _ = run_datasource(bins, netns, root, ["openstack"])
    assert r.returncode == 0 and "Address=192.168.90.5/24" in rendered(root)
    # The next boot: /run is empty again, and the boot stage runs before the network stage's
    # datasource step has fetched anything. The document of the last boot stays (taking it away
    # until the step stores it again would drop the node's address at every boot).
    shutil.rmtree(root / "run/ballast/config.d")
    shutil.rmtree(root / "run/systemd/network")
    args = [bins["agent"], "--root", str(root), "stage", "boot", "--json", "--config", str(root.parent / "ds.yaml")]
    r = netns.exec(*args, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "192.168.90.5/24" in (root / "etc/netplan/50-ballast-01.yaml").read_text()
    # The node's own network config wins; the platform's (fetched again) is not used, and says so.
    r, step, _ = run_datasource(bins, netns, root, ["openstack"])
    assert r.returncode == 0, r.stdout
    (root / "oem").mkdir(exist_ok=True)
    (root / "oem/10-net.yaml").write_text(
        "#cloud-config\nnetwork:\n  version: 2\n  ethernets:\n    ens3:\n      addresses: [10.77.0.9/24]\n")
    r = netns.exec(*args[:4], "reconcile", "--json", capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    net = next(s for s in json.loads(r.stdout)["steps"] if s["id"] == "network")
    assert any("the platform's network config) is not used" in n for n in net["notes"]), net
    assert [p.name for p in (root / "etc/netplan").iterdir()] == ["50-ballast-01.yaml"]
    assert "10.77.0.9/24" in (root / "etc/netplan/50-ballast-01.yaml").read_text()


def reconcile(bins, netns, root: Path):
    r = netns.exec(bins["agent"], "--root", str(root), "stage", "reconcile", "--json",
                   capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)


def test_unusable_platform_network_keeps_the_last_good_one(bins, netns, tmp_path):
    """A platform answer that cannot be used, or no answer at all, at a later boot: an error (or
    a note) naming why, the platform network config of the last boot stays in use (the node keeps
    its addresses, through the boot and reconcile stages), and the user-data and keys still
    apply."""
    netns.serve(tmp_path, "openstack", USER_CONFIG, network=PLATFORM_NET["openstack"])
    root = node_with_nic(tmp_path, "openstack")
    r, step, _ = run_datasource(bins, netns, root, ["openstack"])
    assert r.returncode == 0, r.stdout
    doc = (root / "etc/netplan/50-ballast-01.yaml").read_text()
    assert "192.168.90.5/24" in doc

    def next_boot(network, expect_error):
        netns.stop_servers()
        shutil.rmtree(root / "run/ballast/config.d")  # /run is empty at every boot
        (root / "etc/from-cloud").unlink(missing_ok=True)
        if network is not None:
            netns.serve(tmp_path, "openstack", USER_CONFIG, network=network)
        r, step, _ = run_datasource(bins, netns, root, ["openstack"], extra="        timeout: 1s\n")
        assert r.returncode == 1, r.stdout
        assert any(expect_error in e for e in step["errors"]), step
        assert any("the platform network config of the last boot is used" in n for n in step["notes"]), step
        assert (root / "etc/netplan/50-ballast-01.yaml").read_text() == doc
        reconcile(bins, netns, root)
        assert (root / "etc/netplan/50-ballast-01.yaml").read_text() == doc
        return step

    # A NIC this machine does not have.
    next_boot({"links": [{"id": "tap9", "type": "phy", "ethernet_mac_address": "fa:16:3e:00:00:99"}]},
              "network config: network_data.json: links[0]: no network interface of this machine has "
              "MAC address fa:16:3e:00:00:99 (not used)")
    assert (root / "run/ballast/config.d/40-openstack-01.yaml").read_bytes() == USER_CONFIG
    assert (root / "etc/from-cloud").read_text() == "hi"
    # A document that converts but that the network step would refuse: refused before it is stored.
    bad = json.loads(json.dumps(PLATFORM_NET["openstack"]))
    bad["networks"][0]["ip_address"] = "192.168.90.300"
    next_boot(bad, "'192.168.90.300/24' is not an address")
    # No metadata service at all (the firmware still names OpenStack).
    next_boot(None, "did not answer")
    # Not this machine's any more: a disk moved to a machine without that NIC, or another
    # instance answering badly. The old addresses do not come along.
    nic = root / "sys/class/net/ens3"
    shutil.move(nic, root.parent / "ens3.away")
    netns.stop_servers()
    shutil.rmtree(root / "run/ballast/config.d")
    r, step, _ = run_datasource(bins, netns, root, ["openstack"], extra="        timeout: 1s\n")
    assert any("names a NIC this machine does not have; not used" in n for n in step["notes"]), step
    assert not (root / "run/ballast/config.d/39-openstack-platform-network.yaml").exists()
    shutil.move(root.parent / "ens3.away", nic)
    netns.serve(tmp_path, "openstack", USER_CONFIG, instance_id="i-openstack-2",
                network={"links": [{"id": "t", "type": "phy", "ethernet_mac_address": "fa:16:3e:00:00:99"}]})
    r, step, _ = run_datasource(bins, netns, root, ["openstack"])
    assert any("was another instance's; not used" in n for n in step["notes"]), step
    assert not (root / "run/ballast/config.d/39-openstack-platform-network.yaml").exists()
    # The platform stops describing the network: its config goes, at the next reconcile.
    netns.stop_servers()
    netns.serve(tmp_path, "openstack", USER_CONFIG)
    assert (root / "var/lib/ballast/datasource/platform-network.json").exists()
    r, step, _ = run_datasource(bins, netns, root, ["openstack"])
    assert r.returncode == 0 and not (root / "var/lib/ballast/datasource/platform-network.json").exists()
    reconcile(bins, netns, root)
    assert not (root / "etc/netplan/50-ballast-01.yaml").exists()
