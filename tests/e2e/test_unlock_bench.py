"""Issue 6's unlock benchmark in a VM (encrypted.py, unlock_benchmark): the TPM2 token that
`agentctl encrypt enroll` makes, opened by Ballast and by systemd-cryptsetup through dm-crypt and
/dev/tpmrm0. It needs a node with a TPM, not an encrypted install, so it runs on the resumed fresh
node (conftest.py, booted), beside the upgrade scenario rather than inside it. Figures in
BUILD/bench/unlock-vm.json (docs/performance.md, "In the VM")."""
import json

from conftest import build_dir
from encrypted import unlock_benchmark


def test_unlock_benchmark_in_vm(vm, booted):
    vm.resume(booted)
    bench = unlock_benchmark(vm, rounds=15)
    out = build_dir() / "bench"
    out.mkdir(exist_ok=True)
    (out / "unlock-vm.json").write_text(json.dumps(bench, indent=1) + "\n")
    print("unlock in the VM:", json.dumps(bench))
