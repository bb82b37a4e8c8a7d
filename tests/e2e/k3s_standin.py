"""k3s on an e2e node: the stand-in (tests/k3s-standin; k3s is not packaged here) as its binary,
a config that enables it, and waiting for systemd's k3s.service to run it."""
import json
import time
from pathlib import Path

STANDIN = Path(__file__).resolve().parents[1] / "k3s-standin" / "k3s"

K3S = """#cloud-config
k3s:
  enabled: true
  args:
    - --node-label=site=e2e
"""


def k3s_main_pid(vm) -> int:
    return int(vm.ssh("systemctl show -p MainPID --value k3s.service").stdout)


def wait_k3s(vm, label: str, timeout: float = 120) -> dict:
    """What the running k3s.service (systemd's main process, ready) received, once it has
    `label`: the boot stage asks systemd for the (re)start and does not wait for it."""
    deadline = time.monotonic() + timeout
    while True:
        r = vm.ssh("systemctl is-active -q k3s.service && "
                   "cat /var/lib/rancher/k3s-standin/received.json", check=False)
        got = json.loads(r.stdout) if r.returncode == 0 else {}
        if got.get("effective", {}).get("node-label") == [label] and got["pid"] == k3s_main_pid(vm):
            return got
        assert time.monotonic() < deadline, f"k3s: {r.stdout}{r.stderr}\n{vm.tail()}"
        time.sleep(1)
