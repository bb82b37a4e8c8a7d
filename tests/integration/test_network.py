"""Network config (`network:`, cloud-init version 1 and 2) rendered by the real netplan (Debian's
netplan.io, run chrooted in the test root as on a node) for systemd-networkd: what it renders,
version 1 converted, errors naming the user's file:line:col with nothing half-applied, and
`config: disabled`. Applying it to real links is the VM's part (tests/e2e)."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import need_tool
from test_stages import make_root

GENERATE = "/usr/libexec/netplan/generate"

V2 = """#cloud-config
hostname: net-node
network:
  version: 2
  ethernets:
    nic0:
      match:
        macaddress: "52:54:00:12:34:56"
      set-name: nic0
      dhcp4: true
    eth1:
      addresses: [192.168.77.10/24]
      routes:
        - to: 10.9.0.0/16
          via: 192.168.77.1
      nameservers:
        addresses: [192.168.77.1]
  vlans:
    vlan42:
      id: 42
      link: eth1
      addresses: [10.42.0.5/24]
"""

V1 = """#cloud-config
network:
  version: 1
  config:
    - type: physical
      name: eth0
      mac_address: "52:54:00:AB:CD:EF"
      subnets:
        - type: static
          address: 10.0.0.5
          netmask: 255.255.255.0
          gateway: 10.0.0.1
    - type: vlan
      name: eth0.7
      vlan_link: eth0
      vlan_id: 7
      subnets: [{type: dhcp}]
    - type: nameserver
      address: [10.0.0.2]
      search: [edge.example]
    - type: route
      destination: 172.16.0.0/12
      gateway: 10.0.0.254
"""


def with_netplan(root: Path) -> Path:
    """The node root gets netplan's generator and its libraries, so it runs chrooted there."""
    need_tool("/usr/libexec/netplan/generate", "netplan.io")
    files = {GENERATE}
    out = subprocess.run(["ldd", GENERATE], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        parts = line.split()
        path = parts[2] if "=>" in parts and len(parts) > 2 else parts[0]
        if path.startswith("/"):
            files.add(path)
    for f in files:
        dst = root / f.lstrip("/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.realpath(f), dst)
    return root


@pytest.fixture
def netroot(tmp_path):
    return with_netplan(make_root(tmp_path / "root"))


def run(bins, root, text, stage="boot"):
    (root / "oem").mkdir(exist_ok=True)
    (root / "oem/50-net.yaml").write_text(text)
    r = subprocess.run([bins["agent"], "--root", str(root), "stage", stage, "--json"],
                       capture_output=True, text=True, timeout=120)
    rep = json.loads(r.stdout) if r.stdout.startswith("{") else None
    step = next((s for s in rep["steps"] if s["id"] == "network"), None) if rep else None
    return r, rep, step


def test_version_2_rendered_for_networkd(bins, netroot):
    r, rep, step = run(bins, netroot, V2)
    assert r.returncode == 0 and step and step["status"] == "changed", (r.stdout, r.stderr)
    doc = (netroot / "etc/netplan/50-ballast-01.yaml").read_text()
    # The user's lines where they are (netplan's errors then name the user's file:line).
    assert doc.splitlines()[3] == "  version: 2" and doc.splitlines()[1] == ""
    assert oct((netroot / "etc/netplan/50-ballast-01.yaml").stat().st_mode & 0o777) == "0o600"
    net = netroot / "run/systemd/network"
    eth1 = (net / "10-netplan-eth1.network").read_text()
    assert "Address=192.168.77.10/24" in eth1 and "VLAN=vlan42" in eth1 and "Destination=10.9.0.0/16" in eth1
    assert "Id=42" in (net / "10-netplan-vlan42.netdev").read_text()
    assert "DHCP=ipv4" in (net / "10-netplan-nic0.network").read_text()
    assert "PermanentMACAddress=52:54:00:12:34:56" in (net / "10-netplan-nic0.link").read_text()
    assert not (netroot / "run/ballast/netplan-check").exists()
    # Idempotent: nothing to write the second time, and netplan is not even run (the stages run
    # the step at every boot; its check costs about a second under TCG): a root whose generator is
    # gone still passes.
    (netroot / GENERATE.lstrip("/")).rename(netroot / "generate.away")
    r, rep, step = run(bins, netroot, V2)
    assert r.returncode == 0 and step["status"] == "unchanged", step
    (netroot / "generate.away").rename(netroot / GENERATE.lstrip("/"))


def test_version_1_converted_as_cloud_init_does(bins, netroot):
    r, rep, step = run(bins, netroot, V1)
    assert r.returncode == 0 and step["status"] == "changed", (r.stdout, r.stderr)
    net = netroot / "run/systemd/network"
    eth0 = (net / "10-netplan-eth0.network").read_text()
    assert "Address=10.0.0.5/24" in eth0 and "Gateway=10.0.0.1" in eth0, eth0
    assert "DNS=10.0.0.2" in eth0 and "Domains=edge.example" in eth0
    assert "Destination=172.16.0.0/12" in eth0 and "Gateway=10.0.0.254" in eth0
    assert "Id=7" in (net / "10-netplan-eth0.7.netdev").read_text()
    assert "PermanentMACAddress=52:54:00:ab:cd:ef" in (net / "10-netplan-eth0.link").read_text()


def test_bad_network_config_names_the_line_and_changes_nothing(bins, netroot):
    r, rep, step = run(bins, netroot, V2)
    assert r.returncode == 0
    before = (netroot / "etc/netplan/50-ballast-01.yaml").read_text()
    rendered = sorted(p.name for p in (netroot / "run/systemd/network").iterdir())
    # netplan refuses it (a VLAN on a link nobody defined): its error, with the user's file:line.
    bad = V2.replace("link: eth1", "link: eth9")
    r, rep, step = run(bins, netroot, bad)
    assert r.returncode == 1 and step["status"] == "failed", step
    line = bad.splitlines().index("      link: eth9") + 1
    assert step["errors"][0].startswith(f"/oem/50-net.yaml:{line}:"), step["errors"]
    assert "eth9" in step["errors"][0] and "left as it was" in step["errors"][0]
    assert (netroot / "etc/netplan/50-ballast-01.yaml").read_text() == before
    assert sorted(p.name for p in (netroot / "run/systemd/network").iterdir()) == rendered
    # netplan's warnings come before its error: the error is what is reported; on success the
    # warnings become notes.
    warned = V2.replace("      addresses: [192.168.77.10/24]", "      addresses: [192.168.77.10/24]\n      gateway4: 192.168.77.1")
    r, rep, step = run(bins, netroot, warned.replace("link: eth1", "link: eth9"))
    assert r.returncode == 1 and step["errors"][0].startswith("/oem/50-net.yaml:"), step["errors"]
    assert "eth9" in step["errors"][0]
    r, rep, step = run(bins, netroot, warned)
    assert r.returncode == 0 and any("gateway4" in n and "deprecated" in n for n in step["notes"]), step
    r, rep, step = run(bins, netroot, V2)
    assert r.returncode == 0
    # Ballast's own checks: the file is not applied at all; its error names the line.
    for text, want in (
            (V2.replace("version: 2", "version: 3"), "50-net.yaml:4:12: network.version: 1 or 2, not '3'"),
            (V2.replace("  vlans:", "  vlanz:"), "50-net.yaml:18:3: network: unknown key 'vlanz' (did you mean 'vlans'?)"),
            (V2.replace("  version: 2", "  version: 2\n  renderer: NetworkManager"), "network.renderer: the image renders with systemd-networkd"),
            (V1.replace("type: vlan", "type: vlna"), "50-net.yaml:13:13: network.config[1].type: 'vlna'"),
            (V1.replace("netmask: 255.255.255.0", "netmask: 255.0.255.0"), "network.config[0].subnets[0].netmask: '255.0.255.0' is not a netmask")):
        r, rep, step = run(bins, netroot, text)
        assert r.returncode == 1 and want in r.stderr + r.stdout, (want, r.stderr)
        assert (netroot / "etc/netplan/50-ballast-01.yaml").read_text() == before
        assert "the network config in place is kept" in step["notes"][0], step


def test_disabled_or_dropped_removes_ballasts_documents(bins, netroot):
    assert run(bins, netroot, V2)[0].returncode == 0
    r, rep, step = run(bins, netroot, "#cloud-config\nnetwork:\n  config: disabled\n")
    assert r.returncode == 0 and "removed /etc/netplan/50-ballast-01.yaml" in step["changes"], step
    assert not (netroot / "etc/netplan/50-ballast-01.yaml").exists()
    # The block taken out of the config: Ballast's documents go too, but not in the initramfs
    # stage (the config a datasource fetched at the last boot is not there yet).
    assert run(bins, netroot, V2)[0].returncode == 0
    r, rep, step = run(bins, netroot, "#cloud-config\nhostname: x\n", stage="initramfs")
    assert r.returncode == 0 and (netroot / "etc/netplan/50-ballast-01.yaml").exists(), step
    r, rep, step = run(bins, netroot, "#cloud-config\nhostname: x\n")
    assert r.returncode == 0 and "removed /etc/netplan/50-ballast-01.yaml" in step["changes"], step
    assert not (netroot / "run/systemd/network/10-netplan-eth1.network").exists()
    # Nothing left: no network step at all.
    r, rep, step = run(bins, netroot, "#cloud-config\nhostname: x\n")
    assert step is None


def test_no_netplan_in_the_image_is_an_error(bins, tmp_path):
    root = make_root(tmp_path / "bare")
    r, rep, step = run(bins, root, V2)
    assert r.returncode == 1 and "netplan is not in the image" in step["errors"][0], step
    assert not (root / "etc/netplan").exists()


def test_nocloud_network_config_applies_at_this_boot(bins, netroot):
    """A NoCloud seed's network-config (cloud-init's format, without the `network:` key) is
    rendered at the boot that read it, by the datasource step's catch-up."""
    seed = netroot / "var/lib/cloud/seed/nocloud"
    seed.mkdir(parents=True)
    (seed / "user-data").write_text("#cloud-config\nhostname: seeded\n")
    # A document marker first, as YAML writers put it; only the network config is taken.
    (seed / "network-config").write_text(
        "---\nversion: 2\nethernets:\n  eth1:\n    addresses: [192.168.88.2/24]\n")
    r, rep, step = run(bins, netroot, "#cloud-config\nstages:\n  boot:\n    - datasource: {providers: [nocloud]}\n")
    assert r.returncode == 0, (r.stdout, r.stderr)
    ds = rep["steps"][0]
    assert any("network (initramfs stage, fetched): rendered" in c for c in ds["changes"]), ds
    assert "Address=192.168.88.2/24" in (netroot / "run/systemd/network/10-netplan-eth1.network").read_text()
    assert (netroot / "etc/hostname").read_text() == "seeded\n"


def test_the_images_own_netplan_files_take_part_in_the_check(bins, netroot):
    """netplan merges every file: a device the image defines may be used, and a conflict with
    the image's files is refused before anything is written."""
    (netroot / "etc/netplan").mkdir(parents=True, exist_ok=True)
    image = netroot / "etc/netplan/01-image.yaml"
    image.write_text("network:\n  version: 2\n  ethernets:\n    eth0: {dhcp4: true}\n")
    image.chmod(0o600)
    ok = "#cloud-config\nnetwork:\n  version: 2\n  bridges:\n    br0:\n      interfaces: [eth0]\n"
    r, rep, step = run(bins, netroot, ok)
    assert r.returncode == 0 and step["status"] == "changed", step
    assert (netroot / "run/systemd/network/10-netplan-br0.netdev").exists()
    image.write_text("network:\n  version: 2\n  ethernets:\n    eth0: {}\n  bonds:\n    bond0:\n"
                     "      interfaces: [eth0]\n")
    before = (netroot / "etc/netplan/50-ballast-01.yaml").read_text()
    clash = ok.replace("br0", "br1")
    r, rep, step = run(bins, netroot, clash)
    assert r.returncode == 1 and "left as it was" in step["errors"][0], step
    assert (netroot / "etc/netplan/50-ballast-01.yaml").read_text() == before


def test_block_ends_where_the_next_top_level_key_starts(bins, netroot):
    """Flow lists over several lines and a folded scalar as the block's last value stay whole."""
    text = ("#cloud-config\nnetwork:\n  version: 2\n  ethernets:\n    eth1:\n      addresses: [\n"
            "        192.168.5.5/24\n      ]\n      match: {macaddress: '52:54:00:00:00:07'}\n"
            "      set-name: >-\n        lan0\n# a comment\nhostname: after-block\n")
    r, rep, step = run(bins, netroot, text)
    assert r.returncode == 0, (step, r.stderr)
    net = netroot / "run/systemd/network"
    assert "Name=lan0" in (net / "10-netplan-eth1.link").read_text()
    assert "Address=192.168.5.5/24" in (net / "10-netplan-eth1.network").read_text()


def test_version_1_details_as_cloud_init_reads_them(bins, netroot):
    text = """#cloud-config
network:
  version: 1
  config:
    - type: physical
      name: eth0
      accept-ra: false
      subnets:
        - type: static
          address: 10.1.0.5/24
          mtu: 9000
        - type: static6
          address: fd00::5/64
    - type: physical
      name: eth1
      subnets: [{type: dhcp}]
    - type: route
      network: 10.50.0.0
      gateway: 10.1.0.1
    - type: route
      destination: fd10::/48
      gateway: fd00::1
    - type: route
      destination: 172.20.0.0/16
      gateway: 192.0.2.1
      interface: eth1
    - type: nameserver
      interface: eth1
      address: [192.0.2.53]
"""
    r, rep, step = run(bins, netroot, text)
    assert r.returncode == 0, (r.stderr, step)
    net = netroot / "run/systemd/network"
    eth0 = (net / "10-netplan-eth0.network").read_text()
    eth1 = (net / "10-netplan-eth1.network").read_text()
    assert "Destination=10.50.0.0/24" in eth0  # no prefix: /24, as cloud-init, not a host route
    assert "Destination=fd10::/48" in eth0 and "IPv6AcceptRA=no" in eth0
    assert "MTUBytes=9000" in eth0 or "MTUBytes=9000" in (net / "10-netplan-eth0.link").read_text()
    assert "Destination=172.20.0.0/16" in eth1 and "DNS=192.0.2.53" in eth1 and "DNS=" not in eth0


def test_nocloud_seed_with_only_network_config(bins, netroot):
    seed = netroot / "var/lib/cloud/seed/nocloud"
    seed.mkdir(parents=True)
    (seed / "network-config").write_text(
        "network:\n  version: 2\n  ethernets:\n    eth2: {dhcp4: true}\nruncmd: [\"touch /pwned\"]\n")
    r, rep, step = run(bins, netroot, "#cloud-config\nstages:\n  boot:\n    - datasource: {providers: [nocloud]}\n")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "DHCP=ipv4" in (netroot / "run/systemd/network/10-netplan-eth2.network").read_text()
    assert "runcmd" not in (netroot / "run/ballast/config.d/39-nocloud-network.yaml").read_text()
