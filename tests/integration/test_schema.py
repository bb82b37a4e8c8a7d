"""`agentctl config schema`: the JSON Schema generated from the decoders' field tables.

A real JSON Schema validator (python3-jsonschema) checks that the schema is well formed, that
every example config Ballast ships validates, and that the schema refuses a misspelt key exactly
where the decoder warns about it, so editors and the node agree on what a file means.
"""
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from conftest import ctl

TOP = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((TOP / "tests/data/examples").glob("*.yaml")) + [
    TOP / "packaging/image/oem/demo.yaml"]


def schema(bins, *flags):
    r = ctl(bins, None, "config", "schema", *flags)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    jsonschema.Draft202012Validator.check_schema(s)
    return jsonschema.Draft202012Validator(s)


def test_examples_validate(bins):
    v = schema(bins)
    for f in EXAMPLES:
        errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in v.iter_errors(yaml.safe_load(f.read_text()))]
        assert not errors, f"{f.name}: {errors}"


# A typo at each level of nesting: the decoder warns (did you mean) and the schema refuses it.
TYPOS = {
    "top": ("hostnme: a\n", "hostname"),
    "step": ("stages:\n  boot:\n    - systctl: {a: b}\n", "sysctl"),
    "file": ("write_files:\n  - path: /etc/a\n    contnet: x\n", "content"),
    "user": ("users:\n  - name: u\n    shel: /bin/sh\n", "shell"),
    "install": ("install:\n  devcie: /dev/vda\n", "device"),
    "partition": ("install:\n  partitions:\n    oem:\n      siz: 64\n", "size"),
    "k3s": ("k3s:\n  enabeld: true\n", "enabled"),
    "systemctl": ("stages:\n  boot:\n    - systemctl: {enabel: [a]}\n", "enable"),
    "k3os": ("k3os:\n  dns_nameserver: [1.1.1.1]\n", "dns_nameservers"),
}


@pytest.mark.parametrize("name", sorted(TYPOS))
def test_typos_refused_by_both(bins, tmp_path, name):
    body, meant = TYPOS[name]
    text = "#cloud-config\n" + body
    assert list(schema(bins).iter_errors(yaml.safe_load(text))), f"{name}: schema accepted it"
    f = tmp_path / "c.yaml"
    f.write_text(text)
    r = ctl(bins, None, "config", "validate", str(f))
    assert f"did you mean '{meant}'?" in r.stdout, r.stdout


AGENT = """\
log_level: debug
disk: /dev/vda
reconcile: {interval: 30m, delay: 1m}
http: {ca_file: /etc/ssl/ca.pem, proxy: "http://proxy:3128"}
update: {compatible: ballast-os-amd64, keyring: /etc/ballast/keyring.pem, tries: 3}
health: {units: [k3s.service], commands: ["test -e /run/ok"], deadline: 5m, interval: 5s}
k3s:
  binary_url: https://example.invalid/k3s
  binary_sha256: 0000000000000000000000000000000000000000000000000000000000000000
  readiness_deadline: 10s
tpm: {device: "swtpm:host=localhost,port=2321", pcrs: "7", pcr_bank: sha256}
mount: {etc: tmpfs, persistent_paths: [/var/lib/rancher], device_timeout: 30s}
"""


def test_agent_settings_schema(bins):
    v = schema(bins, "--agent-settings")
    assert not list(v.iter_errors(yaml.safe_load(AGENT)))
    assert list(v.iter_errors({"tpm": {"pcr": "7"}}))
