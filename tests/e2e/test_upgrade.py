"""Scenarios 2 and 3 on one node whose persistent partition is encrypted to its TPM (installed by
a running node: encrypted.py) and which runs k3s (the stand-in from tests/k3s-standin, as k3s is
not packaged here): an upgrade A->B from an OCI registry, a delta from the booted slot
(docker-registry on the host side of QEMU's user networking), the real reboot through systemd, the persistent partition unlocked by the TPM in the
new slot, the boot assessment committing B once k3s is ready; then an upgrade whose new slot's
k3s never gets ready: the node goes back by itself and says why. Kairos' "after k3s is ready,
apply my manifests" (provider-kairos.bootstrap.after.k3s-ready) runs in B once k3s answers."""
import json
import re
import time

from k3s_standin import K3S, STANDIN, k3s_main_pid, wait_k3s
from encrypted import (assert_crypttab_line, assert_unlocked_by_tpm, boot_encrypted_node,
                       boot_with_recovery_key, change_pcr7, pcr7)

HEALTH = """health:
  deadline: 20s
  interval: 1s
"""

# Test-only: k3s in slot A is unready once the test has planted the flag (the stand-in reports
# unready while its `unready` file exists).
K3S_DROPIN = """[Service]
ExecStartPre=/bin/sh -c 'mkdir -p /var/lib/rancher/k3s-standin; \
  if grep -q ballast.slot=a /proc/cmdline && test -e /etc/e2e-unhealthy-a; \
  then touch /var/lib/rancher/k3s-standin/unready; else rm -f /var/lib/rancher/k3s-standin/unready; fi'
"""


# Kairos' k3s-stages example: apply a manifest once k3s is ready. The stand-in's API refuses the
# create while unready, so an apply that worked ran after readiness.
KAIROS_K3S_READY = """#cloud-config
stages:
  provider-kairos.bootstrap.after.k3s-ready:
    - name: apply manifests
      commands:
        - k3s kubectl apply -f /etc/e2e-manifest.yaml
"""
MANIFEST = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: e2e-site\ndata:\n  slot: b\n"


def test_upgrade_over_https_commits_then_failed_health_rolls_back(vm, web, image, booted):
    m, recovery_key = boot_encrypted_node(vm, image, booted)
    assert m["slot"] == "a" and m["failed"] == "none", (m, vm.tail())
    assert_crypttab_line(vm)
    web.trust(vm, HEALTH)
    vm.ssh("echo before-upgrade > /var/lib/rancher/e2e && sync")

    # k3s: the binary on persistent /usr/local, the config in /etc; the boot stage renders it and
    # has systemd start k3s.service, whose readiness is then part of every boot assessment.
    vm.ssh("cat > /usr/local/bin/k3s && chmod 755 /usr/local/bin/k3s", input=STANDIN.read_text())
    vm.ssh("cat > /etc/ballast/config.d/50-k3s.yaml", input=K3S)
    vm.ssh("mkdir -p /etc/systemd/system/k3s.service.d && cat > /etc/systemd/system/k3s.service.d/e2e.conf",
           input=K3S_DROPIN)
    vm.ssh("systemctl restart ballast-stage@boot.service")
    got = wait_k3s(vm, "site=e2e")
    assert got["role"] == "server", got
    st = json.loads(vm.ssh("agentctl k3s status --json").stdout)
    assert st["role"] == "server" and st["ready"], st
    # A changed config restarts k3s through systemd once; the same config leaves it alone.
    pid = got["pid"]
    vm.ssh("cat > /etc/ballast/config.d/50-k3s.yaml", input=K3S.replace("site=e2e", "site=e2e-2"))
    vm.ssh("systemctl restart ballast-stage@boot.service")
    got = wait_k3s(vm, "site=e2e-2")
    assert got["pid"] != pid, got
    vm.ssh("systemctl restart ballast-stage@boot.service")
    time.sleep(3)
    assert k3s_main_pid(vm) == got["pid"]
    assert vm.ssh("cat /var/lib/rancher/k3s-standin/starts.log").stdout.count("\n") == 2

    vm.ssh("cat > /etc/e2e-manifest.yaml", input=MANIFEST)
    vm.ssh("cat > /etc/ballast/config.d/60-kairos.yaml", input=KAIROS_K3S_READY)

    # 2: v2 from an OCI registry into B, a delta from the booted slot (v2 is the image with a
    # 2 MiB folder appended); the agent reboots the node; B passes its health check: committed.
    ref = web.push("2.0.0-e2e", web.changed_image("v2"))
    plan = vm.ssh(f"agentctl upgrade --dry-run {ref}").stdout
    m = re.search(r"(\d+) of (\d+) bytes to download in (\d+) range requests", plan)
    assert m and int(m[1]) < int(m[2]) // 10 and int(m[1]) >= 2 << 20, plan
    r = vm.ssh(f"agentctl upgrade {ref}", check=False, timeout=600)
    assert r.returncode in (0, 255), r.stdout + r.stderr  # 255: ssh cut by the reboot
    m = vm.wait_boot()
    vm.wait_ssh()
    assert m["slot"] == "b" and m["mount"] == "ok" and m["failed"] == "none", (m, vm.tail())
    s = vm.slots()
    assert s["B"]["Version"] == "2.0.0-e2e" and s["B"]["State"] == "good" and s["B"]["Primary"], s
    assert s["A"]["State"] == "good"
    assert vm.ssh("cat /var/lib/rancher/e2e").stdout == "before-upgrade\n"
    assert vm.ssh("stat -c %s /e2e-delta/payload").stdout.strip() == str(2 << 20)
    # The new slot opened the persistent partition by the TPM too; once committed, only the
    # keyslot for its own boot is left.
    assert len([t for t in assert_unlocked_by_tpm(vm)["tokens"] if t["type"] == "systemd-tpm2"]) == 1
    # k3s came up in B through systemd, with the config rendered there, and B was committed by an
    # assessment that asked it (the agent publishes its verdict on the node object).
    wait_k3s(vm, "site=e2e-2")
    node = json.loads(vm.ssh("cat /var/lib/rancher/k3s-standin/node.json").stdout)
    assert node["labels"]["ballast.io/slot"] == "B", node
    health = json.loads(vm.ssh("ballast-agent health --json").stdout)
    assert [c["name"] for c in health["health"]["checks"]] == ["k3s server ready"], health
    # The k3s-ready stage ran the Kairos step once k3s answered as ready: the manifest applied.
    vm.ssh("for i in $(seq 60); do test -e /run/ballast/stages/k3s-ready.json && break; sleep 1; done")
    ready = json.loads(vm.ssh("cat /run/ballast/stages/k3s-ready.json").stdout)
    assert [(x["stage"], x["errors"]) for x in ready["steps"]] == \
        [("provider-kairos.bootstrap.after.k3s-ready", [])], ready
    applied = json.loads(vm.ssh("cat /var/lib/rancher/k3s-standin/applied.json").stdout)
    assert [a["metadata"]["name"] for a in applied] == ["e2e-site"], applied

    # 3: v3 into A, where k3s never gets ready (the flag file names slot a): marked bad, back to
    # B without anyone touching it; the failure is reported and v3 refused.
    vm.ssh("touch /etc/e2e-unhealthy-a && sync")
    r = vm.ssh(f"agentctl upgrade {web.bundle('3.0.0-e2e')}", check=False, timeout=600)
    assert r.returncode in (0, 255), r.stdout + r.stderr
    m = vm.wait_boot(timeout=600)
    if m["slot"] == "a":  # the marker of the failed boot, printed before the reboot took hold
        m = vm.wait_boot(timeout=600)
    vm.wait_ssh()
    assert m["slot"] == "b", (m, vm.tail())
    assert_unlocked_by_tpm(vm)
    st = vm.status()
    assert "3.0.0-e2e" in st["LastError"] and "k3s" in st["LastError"], st
    s = {x["Slot"]: x for x in st["Slots"]}
    assert s["A"]["State"] == "bad" and s["B"]["Primary"], s
    assert [v["Version"] for v in st["RefusedVersions"]] == ["3.0.0-e2e"]
    r = vm.ssh(f"agentctl upgrade {web.bundle('3.0.0-e2e')} --no-reboot", check=False)
    assert r.returncode == 1 and "--force" in r.stderr, r.stdout + r.stderr

    # PCR 7 changes (a new Secure Boot db entry, as a firmware update brings): the TPM refuses,
    # the console says why and asks for the recovery key; typed there, it opens the persistent
    # partition and the node comes up on B with its data.
    sealed_to = pcr7(vm)
    change_pcr7(vm)
    m = boot_with_recovery_key(vm, recovery_key, "do not match the sealed policy")
    assert m["slot"] == "b", (m, vm.tail())
    assert pcr7(vm) != sealed_to
    assert vm.ssh("cat /var/lib/rancher/e2e").stdout == "before-upgrade\n"
    # The operator reseals with the recovery key: the next boot opens it by the TPM again.
    vm.ssh("cat > /run/rk", input=recovery_key + "\n")
    vm.ssh("agentctl encrypt reseal --unlock-key-file /run/rk && rm /run/rk")
    m = vm.reboot()
    assert m["slot"] == "b" and m["failed"] == "none", (m, vm.tail())
    st = assert_unlocked_by_tpm(vm)
    assert len([t for t in st["tokens"] if t["type"] == "systemd-tpm2"]) == 1, st
