"""k3s: rendering from the cloud-config in the boot stage, the units, restarts only on change,
and readiness (a health check) against the k3s STAND-IN (tests/k3s-standin/k3s; k3s itself is
not packaged for this machine). Everything else is real: the agent's one-shot modes on a node
root, TLS with client certificates, nginx for the binary artifact."""
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import ctl, free_port, wait_for

TOP = Path(__file__).resolve().parents[2]
EXAMPLES = TOP / "tests" / "data" / "examples"  # copies of ../shared/examples
STANDIN = TOP / "tests" / "k3s-standin" / "k3s"


def example(name):
    return (EXAMPLES / name).read_text()


class K3sNode:
    def __init__(self, bins, root: Path, cloud_config: str, agent_yaml: str = ""):
        self.bins, self.root = bins, root
        for d in ("etc/ballast", "oem", "usr/local/bin"):
            (root / d).mkdir(parents=True, exist_ok=True)
        (root / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
        (root / "etc/hostname").write_text("edge-node\n")
        # The examples add users: the node's account databases.
        (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
        (root / "etc/group").write_text("root:x:0:\nsudo:x:27:\n")
        (root / "etc/shadow").write_text("root:*:19000:0:99999:7:::\n")
        (root / "etc/gshadow").write_text("root:*::\nsudo:*::\n")
        shutil.copy(STANDIN, root / "usr/local/bin/k3s")
        (root / "oem/90_node.yaml").write_text(cloud_config)
        self.settings = root / "etc/ballast/agent.yaml"
        self.settings.write_text("health:\n  deadline: 3s\n  interval: 300ms\n" + agent_yaml)
        self.proc = None

    def agent(self, *args, timeout=60):
        return subprocess.run([self.bins["agent"], "--root", str(self.root), "--config", str(self.settings),
                               *args], capture_output=True, text=True, timeout=timeout)

    def boot_stage(self):
        r = self.agent("stage", "boot", "--json")
        rep = json.loads(r.stdout)
        steps = [s for s in rep["steps"] if s["id"] == "k3s"]
        return r, rep, (steps[0] if steps else None)

    def unit(self, name):
        return (self.root / "etc/systemd/system" / name).read_text()

    def start_k3s(self, unit):
        """Starts k3s as systemd would from the rendered unit: ExecStart, with the unit's
        environment file."""
        text = self.unit(unit).replace("\\\n", " ")
        exec_line = next(l for l in text.splitlines() if l.startswith("ExecStart="))[len("ExecStart="):]
        argv = shlex.split(exec_line)
        env = dict(os.environ)
        envfile = self.root / "etc/systemd/system" / (unit + ".env")
        for line in envfile.read_text().splitlines():
            k, _, v = line.partition("=")
            env[k] = shlex.split(v)[0] if v else ""
        self.port = free_port()
        env.update(K3S_STANDIN_ROOT=str(self.root), K3S_STANDIN_PORT=str(self.port))
        self.proc = subprocess.Popen([str(self.root / argv[0].lstrip("/"))] + argv[1:], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: self.received() is not None or self.proc.poll() is not None, "k3s stand-in", 30)
        import socket
        def up():
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0
        wait_for(lambda: up() or self.proc.poll() is not None, "k3s stand-in listening", 30)
        assert self.proc.poll() is None, self.proc.stderr.read()
        return self.received()

    def received(self):
        p = self.root / "var/lib/rancher/k3s-standin/received.json"
        return json.loads(p.read_text()) if p.exists() else None

    def set_ready(self, ready):
        f = self.root / "var/lib/rancher/k3s-standin/unready"
        if ready:
            f.unlink(missing_ok=True)
        else:
            f.touch()

    def status(self):
        r = ctl(self.bins, None, "--root", str(self.root), "k3s", "status", "--json")
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture
def make_node(bins, tmp_path):
    nodes = []

    def make(cloud_config, agent_yaml=""):
        n = K3sNode(bins, tmp_path / f"root{len(nodes)}", cloud_config, agent_yaml)
        nodes.append(n)
        return n
    yield make
    for n in nodes:
        n.stop()


def restarts(step):
    return [c for c in step["changes"] if c.startswith("restart")]


def test_server_renders_starts_is_ready_and_restarts_only_on_change(make_node):
    n = make_node(example("single-server.yaml"))
    r, rep, step = n.boot_stage()
    assert r.returncode == 0, r.stdout + r.stderr
    assert step["status"] == "changed" and len(restarts(step)) == 1, step
    cfg = (n.root / "etc/rancher/k3s/config.yaml").read_text()
    assert 'disable:\n  - "traefik"' in cfg and 'write-kubeconfig-mode: "0640"' in cfg
    assert 'write-kubeconfig: "/run/k3s/kubeconfig"' in cfg  # from K3S_KUBECONFIG_OUTPUT
    assert oct((n.root / "etc/rancher/k3s/config.yaml").stat().st_mode & 0o777) == "0o600"
    unit = n.unit("k3s.service")
    for line in ("Type=notify", "KillMode=process", "Delegate=yes", "LimitNOFILE=1048576",
                 "EnvironmentFile=-/etc/systemd/system/k3s.service.env", "ExecStart=/usr/local/bin/k3s server"):
        assert line in unit, line
    assert (n.root / "etc/systemd/system/multi-user.target.wants/k3s.service").is_symlink()
    # Nothing changed: k3s is left alone.
    r, rep, step = n.boot_stage()
    assert step["status"] == "unchanged" and not restarts(step), step

    got = n.start_k3s("k3s.service")
    assert got["role"] == "server" and got["effective"]["disable"] == ["traefik"]
    st = n.status()
    assert st["role"] == "server" and st["ready"] and st["version"].startswith("v1.28")
    r = n.agent("health", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    checks = {c["name"]: c for c in json.loads(r.stdout)["health"]["checks"]}
    assert checks["k3s server ready"]["ok"] and "readyz: ok" in checks["k3s server ready"]["detail"]
    # The node's slot is published on its Node object (with the kubelet's credentials).
    r = n.agent("--booted-slot", "A", "health", "--json")
    assert r.returncode == 0 and "publish_error" not in json.loads(r.stdout), r.stdout
    meta = json.loads((n.root / "var/lib/rancher/k3s-standin/node.json").read_text())
    assert meta["labels"] == {"ballast.io/managed": "true", "ballast.io/slot": "A"}
    assert meta["annotations"]["ballast.io/health"] == "all 1 checks passed"

    # Unready: the health check fails, in its deadline.
    n.set_ready(False)
    t0 = time.monotonic()
    r = n.agent("health", "--json")
    assert r.returncode == 1
    rep = json.loads(r.stdout)
    assert not rep["ok"] and "readyz" in rep["summary"] and rep["health"]["rounds"] >= 2
    assert time.monotonic() - t0 < 30  # bounded by the 3 s deadline, not by k3s
    assert not n.status()["ready"]
    n.set_ready(True)

    # A changed config: exactly one restart, then none.
    (n.root / "oem/91_label.yaml").write_text("#cloud-config\nk3s:\n  args: [--node-label=site=store-7]\n")
    r, rep, step = n.boot_stage()
    assert len(restarts(step)) == 1, step
    assert '"site=store-7"' in (n.root / "etc/rancher/k3s/config.yaml").read_text()
    r, rep, step = n.boot_stage()
    assert not restarts(step), step


KAIROS_BOOTSTRAP = """#cloud-config
stages:
  provider-kairos.bootstrap.before.master:
    - name: before k3s
      files:
        - path: /var/lib/marks/before-k3s
          content: before
  provider-kairos.bootstrap.after.k3s-ready:
    - name: apply manifests
      files:
        - path: /var/lib/marks/after-ready
          content: ready
"""


def test_kairos_bootstrap_steps_run_before_k3s_and_once_it_is_ready(make_node):
    """Kairos' provider-kairos.bootstrap.before.<role> steps run in the boot stage just before
    k3s is set up; .after.<role> steps in the k3s-ready stage, once k3s reports ready: not before,
    not where k3s is not set up, and not past the wait's bound."""
    bare = make_node(KAIROS_BOOTSTRAP)
    r = bare.agent("stage", "k3s-ready", "--wait-k3s-ready", "5")
    assert r.returncode == 0 and "k3s is not set up here" in r.stdout, r.stdout + r.stderr
    assert not (bare.root / "var/lib/marks/after-ready").exists()
    r = bare.agent("stage", "boot", "--json")
    assert json.loads(r.stdout)["steps"] == []  # no k3s in its config: no bootstrap either

    n = make_node(example("single-server.yaml"))
    (n.root / "oem/95_bootstrap.yaml").write_text(KAIROS_BOOTSTRAP)
    r, rep, step = n.boot_stage()
    assert r.returncode == 0, r.stdout + r.stderr
    assert [s["id"] for s in rep["steps"]][-2:] == ["/oem/95_bootstrap.yaml.before k3s", "k3s"], rep["steps"]
    assert (n.root / "var/lib/marks/before-k3s").read_text() == "before"
    n.start_k3s("k3s.service")
    mark = n.root / "var/lib/marks/after-ready"
    n.set_ready(False)
    t0 = time.monotonic()
    r = n.agent("stage", "k3s-ready", "--wait-k3s-ready", "3")
    assert r.returncode == 1 and "k3s did not report ready within 3s" in r.stderr, r.stderr
    assert "the k3s-ready stage did not run" in r.stderr and not mark.exists()
    assert time.monotonic() - t0 < 30
    # Ready a little later: the stage waits for it, then runs the step.
    threading.Timer(2, n.set_ready, args=(True,)).start()
    r = n.agent("stage", "k3s-ready", "--wait-k3s-ready", "60", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    rep = json.loads(r.stdout)
    assert [s["stage"] for s in rep["steps"]] == ["provider-kairos.bootstrap.after.k3s-ready"], rep
    assert mark.read_text() == "ready"

    # The stand-in's `k3s kubectl apply` (the VM's k3s-ready step uses it) creates through the
    # API, which refuses while unready.
    manifest = n.root / "cm.yaml"
    manifest.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: site\ndata:\n  a: b\n")
    kubectl = [str(n.root / "usr/local/bin/k3s"), "kubectl", "apply", "-f", str(manifest)]
    env = dict(os.environ, K3S_STANDIN_ROOT=str(n.root), KUBECONFIG=str(n.root / "run/k3s/kubeconfig"))
    n.set_ready(False)
    r = subprocess.run(kubectl, capture_output=True, text=True, env=env)
    assert r.returncode == 1 and "503" in r.stderr, r.stdout + r.stderr
    n.set_ready(True)
    r = subprocess.run(kubectl, capture_output=True, text=True, env=env)
    assert r.returncode == 0 and r.stdout == "configmap/site created\n", r.stdout + r.stderr
    applied = json.loads((n.root / "var/lib/rancher/k3s-standin/applied.json").read_text())
    assert [a["metadata"]["name"] for a in applied] == ["site"]


def pod(name, owner=None, ns="default", node="edge-node", **extra):
    meta = {"name": name, "namespace": ns}
    if owner:
        meta["ownerReferences"] = [{"kind": owner, "name": f"{name}-owner"}]
    return {"metadata": meta, "spec": {"nodeName": node}, **extra}


def test_leave_cordons_drains_and_deletes_the_node(make_node):
    """ballast-agent leave (a reset's first step on a k3s node) against the stand-in's API: cordon,
    evict what kubectl drain evicts (not DaemonSet or mirror pods, not finished ones; a
    PodDisruptionBudget's refusals are asked again), delete the Node (a server's etcd member goes
    with it). A drain that cannot finish, and an unreachable cluster, are errors."""
    n = make_node(example("single-server.yaml"))
    r, rep, step = n.boot_stage()
    assert r.returncode == 0, r.stdout + r.stderr
    n.start_k3s("k3s.service")
    state = n.root / "var/lib/rancher/k3s-standin"
    mirror = pod("kube-vip", ns="kube-system")
    mirror["metadata"]["annotations"] = {"kubernetes.io/config.mirror": "x"}
    guarded = pod("db-0", owner="StatefulSet")
    guarded["metadata"]["annotations"] = {"standin.ballast.io/pdb-refusals": "2"}
    stuck = pod("stuck-0", owner="StatefulSet")
    stuck["metadata"]["annotations"] = {"standin.ballast.io/pdb-refusals": "1000"}
    pods = [pod("web-1", owner="ReplicaSet"), pod("svclb", owner="DaemonSet", ns="kube-system"), mirror,
            pod("job-1", owner="Job", status={"phase": "Succeeded"}), guarded,
            pod("elsewhere", owner="ReplicaSet", node="other-node")]
    # A budget that never allows it: refused at the deadline, naming the pod; nothing deleted.
    (state / "pods.json").write_text(json.dumps(pods + [stuck]))
    r = n.agent("leave", "--timeout", "2", "--json")
    assert r.returncode == 1, r.stdout + r.stderr
    err = json.loads(r.stdout)["error"]
    assert "still running after 2 s: default/stuck-0" in err and "PodDisruptionBudget" in err, err
    assert not (state / "deleted.json").exists()
    (state / "pods.json").write_text(json.dumps(pods))
    r = n.agent("leave", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    rep = json.loads(r.stdout)
    assert rep["ok"] and rep["left"] and rep["cordoned"] and rep["deleted"] and rep["node"] == "edge-node"
    assert sorted(rep["evicted"]) == ["default/db-0", "default/web-1"], rep
    deleted = json.loads((state / "deleted.json").read_text())
    assert deleted == {"node": "edge-node", "spec": {"unschedulable": True}, "etcd_member_removed": True}
    left = {p["metadata"]["name"] for p in json.loads((state / "pods.json").read_text())}
    assert left == {"svclb", "kube-vip", "job-1", "elsewhere"}
    # Gone already: nothing to do, and said so.
    r = n.agent("leave", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["detail"] == "the Node object is gone already", r.stdout
    # Unreachable: an error naming it.
    n.stop()
    r = n.agent("leave", "--json")
    assert r.returncode == 1 and "the cluster cannot be reached" in json.loads(r.stdout)["error"], r.stdout
    # No k3s here: nothing to leave.
    m = make_node("#cloud-config\nhostname: plain\n")
    r = m.agent("leave", "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == {"ok": True, "left": False,
                                                         "detail": "k3s is not set up here"}, r.stdout


def test_agent_joins_with_server_and_token_in_config(make_node):
    n = make_node(example("agent-join.yaml"))
    r, rep, step = n.boot_stage()
    assert r.returncode == 0, r.stdout + r.stderr
    cfg = (n.root / "etc/rancher/k3s/config.yaml").read_text()
    assert 'server: "https://10.20.0.10:6443"' in cfg and "token:" in cfg
    assert 'node-label:\n  - "site=store-042"' in cfg and 'node-taint:\n  - "dedicated=edge:NoSchedule"' in cfg
    assert "K3S_TOKEN" not in (n.root / "etc/systemd/system/k3s-agent.service.env").read_text()
    unit = n.unit("k3s-agent.service")
    assert "Type=exec" in unit and "ExecStart=/usr/local/bin/k3s agent" in unit
    got = n.start_k3s("k3s-agent.service")
    assert got["role"] == "agent" and got["effective"]["server"] == "https://10.20.0.10:6443"
    st = n.status()
    assert st["role"] == "agent" and st["ready"] and "Ready=True" in st["detail"], st
    assert "<redacted>" in st["config"] and "K10c3b7f1" not in st["config"]
    n.set_ready(False)
    st = n.status()
    assert not st["ready"] and "Ready=False" in st["detail"]


def test_ha_first_server_with_kube_vip(make_node):
    n = make_node(example("ha-first-server.yaml"))
    r, rep, step = n.boot_stage()
    assert r.returncode == 0, r.stdout + r.stderr
    cfg = (n.root / "etc/rancher/k3s/config.yaml").read_text()
    assert "cluster-init: true" in cfg
    assert cfg.count('"10.20.0.100"') == 1  # the VIP as a SAN once, from the default and the args
    pod = (n.root / "var/lib/rancher/k3s/agent/pod-manifests/kube-vip.yaml").read_text()
    assert "kind: Pod" in pod and 'value: "10.20.0.100"' in pod and 'value: "eth0"' in pod


def test_k3os_keys(make_node):
    n = make_node(example("k3os-config.yaml"))
    r, rep, step = n.boot_stage()
    assert step is not None and step["status"] == "changed", rep
    cfg = (n.root / "etc/rancher/k3s/config.yaml").read_text()
    assert 'server: "https://k3s.example:6443"' in cfg and 'token: "K10abcdef::server:123456"' in cfg
    assert '"zone=a"' in cfg and '"dedicated=edge:NoSchedule"' in cfg
    assert (n.root / "etc/systemd/system/k3s-agent.service").exists()
    assert 'HTTPS_PROXY="http://proxy.example:3128"' in (n.root / "etc/systemd/system/k3s-agent.service.env").read_text()


def test_agent_without_server_is_an_error(make_node):
    n = make_node("#cloud-config\nk3s-agent:\n  enabled: true\n  env:\n    K3S_TOKEN: t\n")
    r, rep, step = n.boot_stage()
    assert r.returncode == 1
    assert step["status"] == "failed" and "/oem/90_node.yaml:3:3: k3s-agent" in step["errors"][0] and "server's URL" in step["errors"][0]
    assert not (n.root / "etc/rancher/k3s/config.yaml").exists()


def test_damaged_state_file_is_an_error_not_a_crash(make_node):
    """Found by an audit: a k3s.json field of the wrong type aborted `health`, so the boot's
    health check could never finish."""
    n = make_node("#cloud-config\nhostname: x\n")
    state = n.root / "var/lib/ballast/k3s.json"
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text('{"role": 5, "unit": ["k3s.service"]}')
    r = n.agent("health", "--json")
    assert r.returncode == 1, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert f'{state}: role: 5 is not "server" or "agent"' in out["error"], out


def test_binary_artifact_from_https(make_node, nginx, test_pki):
    body = STANDIN.read_bytes()
    (nginx.docroot / "k3s").write_bytes(body)
    sha = hashlib.sha256(body).hexdigest()
    settings = f"http:\n  ca_file: {test_pki / 'ca.pem'}\nk3s:\n  binary_url: {nginx.url}/k3s\n  binary_sha256: {'0' * 64}\n"
    n = make_node(example("single-server.yaml"), settings)
    (n.root / "usr/local/bin/k3s").unlink()
    r, rep, step = n.boot_stage()
    assert r.returncode == 1 and "does not match" in step["errors"][0], step
    assert not (n.root / "usr/local/bin/k3s").exists()
    n.settings.write_text(n.settings.read_text().replace("0" * 64, sha))
    r, rep, step = n.boot_stage()
    assert r.returncode == 0, step
    assert (n.root / "usr/local/bin/k3s").read_bytes() == body
    assert (n.root / "usr/local/bin/k3s").stat().st_mode & 0o111


def test_fleet_plan_and_rbac_are_well_formed():
    import yaml
    for name, scheme in (("plan.yaml", "https://"), ("plan-oci.yaml", "oci://")):
        plan = yaml.safe_load((TOP / "packaging/kubernetes" / name).read_text())
        assert plan["apiVersion"] == "upgrade.cattle.io/v1" and plan["kind"] == "Plan"
        spec = plan["spec"]
        assert spec["concurrency"] == 1 and spec["cordon"] is True
        assert spec["upgrade"]["command"] == ["chroot", "/host"]
        assert spec["upgrade"]["args"][:2] == ["agentctl", "upgrade"]
        source = spec["upgrade"]["args"][2]
        assert source.startswith(scheme) and "$(SYSTEM_UPGRADE_PLAN_LATEST_VERSION)" in source
    docs = list(yaml.safe_load_all((TOP / "packaging/kubernetes/rbac.yaml").read_text()))
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding"}
    assert kinds["ServiceAccount"]["metadata"]["name"] == spec["serviceAccountName"]
    assert {"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]} in kinds["ClusterRole"]["rules"]
