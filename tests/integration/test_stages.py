"""Cloud-config stages applied for real into a temporary --root: every module, idempotency,
malformed input, conditions, the daemon path, and the live mode in a throw-away root."""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ctl, need_tool, wait_for

TOP = Path(__file__).resolve().parents[2]
EXAMPLES = TOP / "tests" / "data" / "examples"
MACHINE_ID = "0123456789abcdef0123456789abcdef"
KEY_A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHb9yJ3s0kq4r2vQ3oXgYgUe8yJmS1Qe9P0dNnq6vX3W ops@example"
KEY_ROOT = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKr0ot0000000000000000000000000000000000000000 root@example"


def make_root(path: Path) -> Path:
    """A minimal node root: account databases, skel, hosts, busybox as /bin/sh, a few units."""
    need_tool("busybox", "busybox-static")
    etc = path / "etc"
    (etc / "default").mkdir(parents=True)
    for f in ["passwd", "group", "shadow", "gshadow", "login.defs"]:
        shutil.copy2(f"/etc/{f}", etc / f)
    shutil.copy2("/etc/default/useradd", etc / "default" / "useradd")
    (etc / "skel").mkdir()
    (etc / "skel" / ".profile").write_text("# from skel\n")
    (etc / "hosts").write_text("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n")
    (etc / "machine-id").write_text(MACHINE_ID + "\n")
    (etc / "os-release").write_text('ID=debian\nVERSION_ID="12"\n')
    (path / "bin").mkdir()
    shutil.copy2(shutil.which("busybox"), path / "bin" / "busybox")
    for applet in ("sh", "sleep", "cat", "id", "true", "false"):
        os.symlink("busybox", path / "bin" / applet)
    units = path / "lib" / "systemd" / "system"
    units.mkdir(parents=True)
    for u in ("x", "z"):
        (units / f"{u}.service").write_text(f"[Unit]\nDescription={u}\n[Service]\nExecStart=/bin/true\n"
                                             "[Install]\nWantedBy=multi-user.target\n")
    (units / "y.service").write_text("[Service]\nExecStart=/bin/true\n")
    wants = etc / "systemd" / "system" / "multi-user.target.wants"
    wants.mkdir(parents=True)
    os.symlink("/lib/systemd/system/z.service", wants / "z.service")
    zi = path / "usr" / "share" / "zoneinfo" / "Europe"
    zi.mkdir(parents=True)
    shutil.copy2("/usr/share/zoneinfo/Europe/Berlin", zi / "Berlin")
    return path


def run_stage(bins, root, stage, *configs, env=None, extra=()):
    cmd = [bins["agent"], "stage", stage, "--root", str(root), "--json", *extra]
    for c in configs:
        cmd += ["--config", str(c)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=dict(os.environ, **(env or {})))
    report = json.loads(r.stdout) if r.stdout.strip().startswith("{") else None
    return r, report


def snapshot(path: Path):
    """Every entry under path with its type, mode, owner and content hash."""
    out = {}
    for p in sorted(path.rglob("*")):
        st = p.lstat()
        h = ""
        if p.is_file() and not p.is_symlink():
            h = hashlib.sha256(p.read_bytes()).hexdigest()
        elif p.is_symlink():
            h = os.readlink(p)
        out[str(p.relative_to(path))] = (st.st_mode, st.st_uid, st.st_gid, h)
    return out


def steps(report):
    return {s["name"]: s for s in report["steps"]}


@pytest.fixture
def node(tmp_path):
    return make_root(tmp_path / "root")


@pytest.fixture
def cidata(tmp_path):
    """A NoCloud volume (vfat, label cidata) as an image file, built with mtools."""
    need_tool("mkfs.vfat", "dosfstools")
    need_tool("mcopy", "mtools")
    img = tmp_path / "cidata.img"
    subprocess.run(["truncate", "-s", "2M", str(img)], check=True)
    subprocess.run(["mkfs.vfat", "-n", "CIDATA", str(img)], check=True, capture_output=True)
    (tmp_path / "user-data").write_text("#cloud-config\nstages:\n  boot:\n    - name: from cidata\n      commands: [true]\n")
    # The same name the test's config sets: fetched config applies at once, as a later source,
    # and a different name would flip back and forth between the two runs of the test.
    (tmp_path / "meta-data").write_text("instance-id: i-1\nlocal-hostname: node-0123\n")
    for f in ("user-data", "meta-data"):
        subprocess.run(["mcopy", "-i", str(img), str(tmp_path / f), "::" + f], check=True)
    return img


def test_every_module_then_nothing_changes(bins, node, tmp_path, nginx, test_pki, cidata):
    payload = os.urandom(100000)
    (nginx.docroot / "tool.bin").write_bytes(payload)
    (nginx.docroot / "remote.yaml").write_text("#cloud-config\nstages:\n  boot:\n    - name: from url\n      commands: [true]\n")
    (node / "etc" / "ballast").mkdir()
    (node / "etc" / "ballast" / "agent.yaml").write_text(f"http:\n  ca_file: {test_pki}/ca.pem\n")
    # A group to delete, present before the run.
    with open(node / "etc" / "group", "a") as f:
        f.write("oldgroup:x:2999:\n")
    cfg = tmp_path / "all.yaml"
    cfg.write_text(f"""#cloud-config
stages:
  boot:
    - name: everything
      dns:
        nameservers: [10.20.0.2, 9.9.9.9]
        search: [edge.example]
        options: [ndots:2]
      downloads:
        - path: /opt/tools/tool.bin
          url: {nginx.url}/tool.bin
          sha256: {hashlib.sha256(payload).hexdigest()}
          permissions: 0750
      ensure_entities:
        - entity: |
            kind: group
            group_name: appgroup
            password: x
            gid: 2500
            users: ops
      directories:
        - path: /var/lib/app/data
          permissions: 0700
      files:
        - path: /etc/app/app.conf
          permissions: 0640
          owner: root
          group: appgroup
          content: |
            node={{{{ trunc 8 .MachineID }}}}
        - path: /etc/app/b64.txt
          encoding: b64
          content: aGVsbG8gYjY0
        - path: /etc/app/gz.txt
          encoding: gz+b64
          content: {subprocess.run("printf 'hello gzip' | gzip | base64 -w0", shell=True, capture_output=True, text=True).stdout}
        - path: /etc/app/append.txt
          append: true
          content: "added line"
      commands:
        - echo "ran $GREETING" >> /ran.txt
      env:
        GREETING: hi
      hostname: node-{{{{ trunc 4 .MachineID }}}}
      sysctl:
        vm.swappiness: "10"
      users:
        ops:
          groups: [sudo, appgroup]
          shell: /bin/sh
          passwd: secret
          ssh_authorized_keys: ["{KEY_A}"]
        svc:
          system: true
          no_create_home: true
          lock_passwd: true
      authorized_keys:
        root: ["{KEY_ROOT}"]
      modules: [br_netfilter]
      timesyncd:
        NTP: 0.pool.ntp.org
      systemctl:
        enable: [x]
        disable: [z.service]
        mask: [y.service]
        overrides:
          - service: x
            content: |
              [Service]
              Nice=5
      environment:
        HTTP_PROXY: http://proxy.example:3128
      systemd_firstboot:
        keymap: us
        timezone: Europe/Berlin
      delete_entities:
        - entity: |
            kind: group
            group_name: oldgroup
    - name: nocloud
      datasource:
        providers: [nocloud]
    - name: url
      datasource:
        providers: [config_url]
        config_url: {nginx.url}/remote.yaml
""")
    (node / "etc" / "app").mkdir(parents=True)
    (node / "etc" / "app" / "append.txt").write_text("first line\n")
    env = {"BALLAST_DATASOURCE_DEVICES": str(cidata)}
    r, rep = run_stage(bins, node, "boot", cfg, env=env)
    assert rep is not None, r.stderr
    s = steps(rep)
    assert s["everything"]["status"] == "changed", json.dumps(s["everything"], indent=1)
    assert s["nocloud"]["status"] == "changed", s["nocloud"]
    assert s["url"]["status"] == "changed", s["url"]
    assert r.returncode == 0, r.stderr

    etc = node / "etc"
    assert (etc / "resolv.conf").read_text().splitlines()[1:] == [
        "search edge.example", "nameserver 10.20.0.2", "nameserver 9.9.9.9", "options ndots:2"]
    tool = node / "opt/tools/tool.bin"
    assert tool.read_bytes() == payload and oct(tool.stat().st_mode & 0o7777) == "0o750"
    assert oct((node / "var/lib/app/data").stat().st_mode & 0o7777) == "0o700"
    conf = etc / "app/app.conf"
    assert conf.read_text() == "node=01234567\n"
    assert oct(conf.stat().st_mode & 0o7777) == "0o640" and conf.stat().st_gid == 2500
    assert (etc / "app/b64.txt").read_text() == "hello b64"
    assert (etc / "app/gz.txt").read_text() == "hello gzip"
    assert (etc / "app/append.txt").read_text() == "first line\nadded line"
    assert (node / "ran.txt").read_text() == "ran hi\n"
    assert (etc / "hostname").read_text() == "node-0123\n"
    assert "127.0.1.1\tnode-0123" in (etc / "hosts").read_text()
    assert "vm.swappiness = 10" in (etc / "sysctl.d/90-ballast.conf").read_text()
    passwd = {l.split(":")[0]: l.split(":") for l in (etc / "passwd").read_text().splitlines()}
    assert passwd["ops"][6] == "/bin/sh" and passwd["ops"][5] == "/home/ops"
    assert int(passwd["svc"][2]) < 1000  # system user
    shadow = {l.split(":")[0]: l.split(":") for l in (etc / "shadow").read_text().splitlines()}
    assert shadow["ops"][1].startswith("$") and "secret" not in shadow["ops"][1]
    assert shadow["svc"][1].startswith("!")
    groups = {l.split(":")[0]: l.split(":") for l in (etc / "group").read_text().splitlines()}
    assert "ops" in groups["sudo"][3].split(",") and "ops" in groups["appgroup"][3].split(",")
    assert "oldgroup" not in groups
    assert (etc / "passwd-").exists()  # backup, as shadow's tools keep
    ops_home = node / "home/ops"
    # As useradd: HOME_MODE from login.defs, else 0777 & ~UMASK (0755 on this Debian).
    defs = dict(l.split()[:2] for l in (etc / "login.defs").read_text().splitlines() if l.strip() and not l.startswith("#") and len(l.split()) >= 2)
    want = int(defs["HOME_MODE"], 8) if "HOME_MODE" in defs else 0o777 & ~int(defs.get("UMASK", "022"), 8)
    assert ops_home.stat().st_mode & 0o777 == want and ops_home.stat().st_uid == int(passwd["ops"][2])
    assert (ops_home / ".profile").read_text() == "# from skel\n"
    keys = ops_home / ".ssh/authorized_keys"
    assert keys.read_text() == KEY_A + "\n" and oct(keys.stat().st_mode & 0o777) == "0o600"
    assert keys.stat().st_uid == int(passwd["ops"][2])
    assert (node / "root/.ssh/authorized_keys").read_text() == KEY_ROOT + "\n"
    assert any("modules: not loaded" in n for n in s["everything"]["notes"])
    assert "NTP=0.pool.ntp.org" in (etc / "systemd/timesyncd.conf.d/10-ballast.conf").read_text()
    assert (etc / "systemd/system/x.service.d/override-ballast.conf").read_text() == "[Service]\nNice=5\n"
    assert 'HTTP_PROXY="http://proxy.example:3128"' in (etc / "environment").read_text()
    assert (etc / "vconsole.conf").read_text().strip() == "KEYMAP=us"
    assert os.readlink(etc / "localtime").endswith("zoneinfo/Europe/Berlin")
    assert "from cidata" in (node / "run/ballast/config.d/40-nocloud.yaml").read_text()
    assert "hostname: node-0123" in (node / "run/ballast/config.d/41-nocloud-meta.yaml").read_text()
    assert "from url" in (node / "run/ballast/config.d/50-config-url.yaml").read_text()
    assert json.loads((node / "run/ballast/stages/boot.json").read_text())["stage"] == "boot"

    # The unit symlinks are the ones `systemctl --root` makes from the same starting point.
    ref = make_root(tmp_path / "ref")
    for verb, unit in (("enable", "x.service"), ("disable", "z.service"), ("mask", "y.service")):
        subprocess.run(["systemctl", f"--root={ref}", verb, unit], check=True, capture_output=True)
    links = lambda root: {str(p.relative_to(root)): os.readlink(p) for p in (root / "etc/systemd/system").rglob("*") if p.is_symlink()}
    assert links(node) == links(ref)

    # Second run: every step unchanged, nothing on disk modified apart from the run record.
    before = snapshot(node)
    r2, rep2 = run_stage(bins, node, "boot", cfg, env=env)
    assert r2.returncode == 0, r2.stderr
    assert {st["status"] for st in rep2["steps"]} == {"unchanged"}, json.dumps(rep2["steps"], indent=1)
    after = snapshot(node)
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    # The commands step appends on every run (commands are not idempotent by nature) and the
    # run record is rewritten.
    assert changed <= {"ran.txt", "run/ballast/stages/boot.json"}, changed


def test_nocloud_seed_folder_and_cidata_iso(bins, node, tmp_path):
    need_tool("genisoimage", "genisoimage")
    seed = tmp_path / "iso"
    seed.mkdir()
    (seed / "user-data").write_text("#cloud-config\nhostname: from-iso\n")
    (seed / "meta-data").write_text("instance-id: x\n")
    iso = tmp_path / "seed.iso"
    subprocess.run(["genisoimage", "-quiet", "-o", str(iso), "-V", "cidata", "-r", "-J", str(seed)], check=True)
    cfg = tmp_path / "ds.yaml"
    cfg.write_text("#cloud-config\nstages:\n  network:\n    - datasource: {providers: [nocloud]}\n")
    r, rep = run_stage(bins, node, "network", cfg, env={"BALLAST_DATASOURCE_DEVICES": str(iso)})
    assert r.returncode == 0, r.stderr
    assert "hostname: from-iso" in (node / "run/ballast/config.d/40-nocloud.yaml").read_text()
    # The fetched config is a source for the next stage.
    r, rep = run_stage(bins, node, "initramfs")
    assert (node / "etc/hostname").read_text() == "from-iso\n"


MALFORMED = {
    "bad-yaml": ("#cloud-config\nstages:\n  boot:\n    - files: [\n", ":5:1: "),
    "wrong-type": ("#cloud-config\nstages:\n  boot:\n    - users: 5\n", "bad.yaml:4:14: stages.boot[0].users: expected a list or a mapping of users"),
    "bad-base64": ("#cloud-config\nwrite_files:\n  - path: /etc/x\n    encoding: b64\n    content: '@@@'\n",
                   "bad.yaml:4:15: write_files[0].encoding: invalid base64 character '@'"),
    "unknown-template-fn": ("#cloud-config\nhostname: x-{{ truncate 4 .MachineID }}\n",
                            "bad.yaml:2:11: template: unknown function 'truncate'"),
    "dotdot-escape": ("#cloud-config\nwrite_files:\n  - path: /etc/../../../tmp/ballast-escape\n    content: x\n",
                      "climbs above the root"),
    # Found by the fuzzer: numbers too long for their type used to throw and abort the agent.
    "template-number-too-long": ("#cloud-config\nhostname: x{{ trunc 99999999999999999999 .MachineID }}\n",
                                 "bad.yaml:2:11: template: number 99999999999999999999 is out of range"),
    "uid-too-long": ("#cloud-config\nusers:\n  - name: ops\n    uid: 99999999999999999999\n",
                     "bad.yaml:4:10: users[0].uid: '99999999999999999999' is not a user id (0-4294967294)"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_input_fails_cleanly_and_writes_nothing(bins, node, tmp_path, case):
    text, message = MALFORMED[case]
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    before = snapshot(node)
    for stage in ("initramfs", "boot"):
        r, rep = run_stage(bins, node, stage, cfg)
        assert r.returncode == 1, r.stdout + r.stderr
        assert message in r.stderr, r.stderr
        assert str(cfg) in r.stderr and "not applied because of the errors above" in r.stderr
    after = snapshot(node)
    assert {k for k in after if before.get(k) != after.get(k)} <= {"run", "run/ballast", "run/ballast/stages",
                                                                   "run/ballast/stages/boot.json",
                                                                   "run/ballast/stages/initramfs.json"}
    assert not Path("/tmp/ballast-escape").exists()
    # validate says the same, offline.
    v = ctl(bins, None, "config", "validate", str(cfg))
    assert v.returncode == 1 and message in v.stdout


def test_corrupt_passwd_line_is_an_error_not_a_crash(bins, node, tmp_path):
    passwd = node / "etc/passwd"
    passwd.write_text(passwd.read_text() + "ops:x:12ab:1000::/home/ops:/bin/sh\n")
    before = passwd.read_bytes()
    cfg = tmp_path / "u.yaml"
    cfg.write_text("#cloud-config\nusers:\n  - name: ops\n    shell: /bin/sh\n"
                   "write_files:\n  - path: /etc/owned\n    owner: ops\n    content: x\n")
    r, rep = run_stage(bins, node, "boot", cfg)
    assert r.returncode == 1, r.stdout + r.stderr
    errs = [e for st in rep["steps"] for e in st.get("errors", [])]
    assert "user ops: /etc/passwd has a bad uid '12ab'" in errs, errs
    assert any("no user 'ops' on the node" in e for e in errs), errs
    assert passwd.read_bytes() == before
    assert not (node / "etc/owned").exists()

    # A damaged primary gid: the user module and the file owner both say so; nothing written.
    passwd.write_text(before.decode().replace("ops:x:12ab:1000:", "ops:x:1600:9x:"))
    before = passwd.read_bytes()
    r, rep = run_stage(bins, node, "boot", cfg)
    assert r.returncode == 1, r.stdout + r.stderr
    errs = [e for st in rep["steps"] for e in st.get("errors", [])]
    assert "user ops: /etc/passwd has a bad gid '9x'" in errs, errs
    assert any("user 'ops': /etc/passwd has no valid primary group id" in e for e in errs), errs
    assert passwd.read_bytes() == before
    assert not (node / "etc/owned").exists()


def test_recovery_access_applies_users_and_keys_only(bins, node, tmp_path):
    """A recovery boot's way in (ballast-agent stage recovery --access-only): the host name,
    users and SSH keys of every boot stage, and none of the config's commands or files."""
    cfg = tmp_path / "oem.yaml"
    cfg.write_text(f"""#cloud-config
hostname: edge-rescue
users:
  - name: ops
    ssh_authorized_keys: ["{KEY_ROOT}"]
write_files:
  - path: /etc/not-in-recovery
    content: x
runcmd: ["touch /ran"]
stages:
  network:
    - authorized_keys:
        root: ["{KEY_ROOT}"]
      commands: ["touch /ran-too"]
""")
    r, rep = run_stage(bins, node, "recovery", cfg, extra=("--access-only",))
    assert r.returncode == 0, r.stdout + r.stderr
    assert rep["stage"] == "recovery"
    assert (node / "etc/hostname").read_text().strip() == "edge-rescue"
    assert "ops:" in (node / "etc/passwd").read_text()
    assert KEY_ROOT in (node / "home/ops/.ssh/authorized_keys").read_text()
    assert KEY_ROOT in (node / "root/.ssh/authorized_keys").read_text()
    for path in ("etc/not-in-recovery", "ran", "ran-too"):
        assert not (node / path).exists(), path


def test_uids_compare_as_numbers(bins, node, tmp_path):
    passwd = node / "etc/passwd"
    passwd.write_text(passwd.read_text() + "ops:x:1500:1500::/home/ops:/bin/sh\n")
    cfg = tmp_path / "u.yaml"
    cfg.write_text("#cloud-config\nusers:\n  - name: ops\n    uid: '01500'\n    shell: /bin/sh\n")
    r, rep = run_stage(bins, node, "boot", cfg)
    assert r.returncode == 0, r.stdout + r.stderr
    cfg.write_text("#cloud-config\nusers:\n  - name: dup\n    uid: '1500'\n")
    r, rep = run_stage(bins, node, "boot", cfg)
    assert r.returncode == 1
    errs = [e for st in rep["steps"] for e in st.get("errors", [])]
    assert "user dup: uid 1500 is taken by ops" in errs, errs


def test_bytes_that_are_not_utf8_never_abort(bins, node, tmp_path):
    """Found by an audit: JSON output threw on raw bytes from a YAML file and aborted the stage
    job and agentctl; they now come out as U+FFFD."""
    cfg = tmp_path / "bytes.yaml"
    cfg.write_bytes(b"#cloud-config\nstages:\n  boot:\n    - name: caf\xe9\n      commands: [true]\n"
                    b"hostnam\xff: x\n")
    r = subprocess.run([bins["agent"], "stage", "boot", "--root", str(node), "--json", "--config", str(cfg)],
                       capture_output=True, text=True, errors="replace", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "caf\ufffd" in steps(json.loads(r.stdout))
    assert json.loads((node / "run/ballast/stages/boot.json").read_text())["stage"] == "boot"
    v = subprocess.run([bins["ctl"], "--json", "config", "validate", str(cfg)],
                       capture_output=True, text=True, errors="replace", timeout=60)
    assert v.returncode == 0, v.stdout + v.stderr
    assert any("hostnam\ufffd" in d["message"] for d in json.loads(v.stdout)["diagnostics"]), v.stdout


def test_symlinks_cannot_lead_outside_the_root(bins, node, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(str(outside), node / "etc" / "evil")          # absolute: means ROOT/<outside> inside
    os.symlink("../../../../../../../../" + str(outside), node / "etc" / "climb")
    cfg = tmp_path / "sym.yaml"
    cfg.write_text("#cloud-config\nwrite_files:\n  - path: /etc/evil/pwned\n    content: x\n"
                   "  - path: /etc/climb/pwned\n    content: x\n")
    r, rep = run_stage(bins, node, "boot", cfg)
    assert r.returncode == 1
    assert list(outside.iterdir()) == []
    errs = steps(rep)["write_files"]["errors"]
    assert len(errs) == 2 and all("not a directory" in e for e in errs), errs


def test_failing_step_continues_strict_step_stops(bins, node, tmp_path):
    cfg = tmp_path / "s.yaml"
    cfg.write_text("""#cloud-config
stages:
  boot:
    - name: fails
      commands: ["exit 3"]
    - name: runs anyway
      files: [{path: /etc/one, content: "1"}]
    - name: strict fail
      strict: true
      commands: ["echo oops >&2; false"]
    - name: never
      files: [{path: /etc/two, content: "2"}]
""")
    r, rep = run_stage(bins, node, "boot", cfg)
    assert r.returncode == 1
    s = steps(rep)
    assert s["fails"]["status"] == "failed" and "'exit 3' exited with status 3" in s["fails"]["errors"][0]
    assert s["runs anyway"]["status"] == "changed"
    assert s["strict fail"]["status"] == "failed" and "oops" in s["strict fail"]["errors"][0]
    assert s["never"]["status"] == "not-run"
    assert not (node / "etc" / "two").exists()


def test_conditions(bins, node, tmp_path):
    (node / "etc" / "present").write_text("")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("""#cloud-config
stages:
  boot:
    - name: if false
      if: '[ -e /etc/absent ]'
      files: [{path: /etc/a1, content: x}]
    - name: if true
      if: '[ -e /etc/present ]'
      files: [{path: /etc/a2, content: x}]
    - name: node mismatch
      node: '^other-'
      files: [{path: /etc/a3, content: x}]
    - name: os match
      only_os: debian
      only_arch: '^(amd64|arm64)$'
      files: [{path: /etc/a4, content: x}]
    - name: os mismatch
      only_os: alpine
      files: [{path: /etc/a5, content: x}]
    - name: if_files
      if_files: {all: [/etc/present], none: [/etc/absent]}
      files: [{path: /etc/a6, content: x}]
    - name: cycle-a
      after: [{name: cycle-b}]
    - name: cycle-b
""")
    r, rep = run_stage(bins, node, "boot", cfg)
    assert r.returncode == 1, r.stderr  # the cycle
    s = steps(rep)
    assert s["if false"]["status"] == "skipped" and not (node / "etc/a1").exists()
    assert s["if true"]["status"] == "changed"
    assert s["node mismatch"]["status"] == "skipped" and "does not match /^other-/" in s["node mismatch"]["reason"]
    assert s["os match"]["status"] == "changed"
    assert s["os mismatch"]["status"] == "skipped"
    assert s["if_files"]["status"] == "changed"
    # cycle-b follows cycle-a in the file (yip: it waits for it) and cycle-a waits for cycle-b.
    cycle = [st for st in rep["steps"] if st["id"] == "(plan)"]
    assert len(cycle) == 2 and "form a cycle" in cycle[0]["errors"][0]


def test_github_keys_offline_is_a_clear_error(bins, node, tmp_path):
    cfg = tmp_path / "g.yaml"
    cfg.write_text("#cloud-config\nssh_authorized_keys: [github:ballast-test-user]\n")
    r, rep = run_stage(bins, node, "network", cfg, env={"https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"})
    assert r.returncode == 1
    err = steps(rep)["ssh_authorized_keys"]["errors"][0]
    assert "cannot fetch keys for github:ballast-test-user (is the network up?)" in err
    assert "https://github.com/ballast-test-user.keys" in err


def test_download_checksum_mismatch_and_http_errors(bins, node, tmp_path, nginx, test_pki):
    (nginx.docroot / "f.bin").write_bytes(b"payload")
    (node / "etc" / "ballast").mkdir()
    (node / "etc" / "ballast" / "agent.yaml").write_text(f"http:\n  ca_file: {test_pki}/ca.pem\n")
    cfg = tmp_path / "d.yaml"
    cfg.write_text(f"""#cloud-config
stages:
  boot:
    - downloads:
        - {{path: /opt/a, url: {nginx.url}/f.bin, sha256: {"0" * 64}}}
        - {{path: /opt/b, url: {nginx.url}/missing.bin}}
""")
    r, rep = run_stage(bins, node, "boot", cfg)
    errs = rep["steps"][0]["errors"]
    assert "does not match the expected" in errs[0] and "HTTP status 404" in errs[1], errs
    assert not (node / "opt/a").exists() and not (node / "opt/b").exists()
    assert not any(p.name.startswith(".") for p in (node / "opt").iterdir())  # no temporaries left
    # Wrong CA: TLS verification refuses the server.
    (node / "etc" / "ballast" / "agent.yaml").write_text(f"http:\n  ca_file: {test_pki}/otherca.pem\n")
    cfg.write_text(f"#cloud-config\nstages:\n  boot:\n    - downloads: [{{path: /opt/c, url: {nginx.url}/f.bin}}]\n")
    r, rep = run_stage(bins, node, "boot", cfg)
    assert r.returncode == 1 and "certificate" in rep["steps"][0]["errors"][0].lower()


def test_dry_run_prints_the_plan_and_changes_nothing(bins, node, tmp_path):
    before = snapshot(node)
    r = subprocess.run([bins["agent"], "stage", "boot", "--root", str(node), "--dry-run", "--config",
                        str(EXAMPLES / "single-server.yaml")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "write /etc/motd (0644)" in r.stdout and "user ops" in r.stdout
    assert snapshot(node) == before


def test_k3os_file_applies(bins, node, tmp_path):
    k3os = node / "var/lib/rancher/k3os"
    k3os.mkdir(parents=True)
    shutil.copy(EXAMPLES / "k3os-config.yaml", k3os / "config.yaml")
    # Its k3s keys need a k3s binary in the image (the test stand-in).
    (node / "usr/local/bin").mkdir(parents=True, exist_ok=True)
    shutil.copy(TOP / "tests/k3s-standin/k3s", node / "usr/local/bin/k3s")
    r, rep = run_stage(bins, node, "initramfs")
    assert r.returncode == 0, r.stderr
    assert (node / "etc/hostname").read_text() == "k3os-node-1\n"
    assert "export NO_PROXY" in (node / "etc/profile.d/proxy.sh").read_text()
    r, rep = run_stage(bins, node, "boot")
    assert r.returncode == 0, r.stderr
    assert "rancher:" in (node / "etc/passwd").read_text()
    assert "nameserver 1.1.1.1" in (node / "etc/resolv.conf").read_text()
    assert "NTP=0.pool.ntp.org" in (node / "etc/systemd/timesyncd.conf.d/10-ballast.conf").read_text()


def test_config_show_lists_sources(bins, node, tmp_path):
    (node / "oem").mkdir()
    shutil.copy(EXAMPLES / "single-server.yaml", node / "oem" / "10-server.yaml")
    (node / "oem" / "20-nohdr.yaml").write_text("hostname: ignored\n")
    r = ctl(bins, None, "config", "show", "--root", str(node))
    assert r.returncode == 0, r.stderr
    assert "#   /oem/10-server.yaml" in r.stdout and "(ignored: no header)" in r.stdout
    assert "/oem/20-nohdr.yaml:1:1: warning: no #cloud-config header" in r.stderr
    assert "hostname: edge-{{ trunc 6 .MachineID }}    # /oem/10-server.yaml:3:11" in r.stdout
    j = json.loads(ctl(bins, None, "config", "show", "--root", str(node), "--json").stdout)
    assert j["config"]["k3s"]["enabled"] == {"value": "true", "source": "/oem/10-server.yaml:20:12"}


def test_validate_strict_and_examples(bins, tmp_path):
    for f in sorted(EXAMPLES.glob("*.yaml")):
        r = ctl(bins, None, "config", "validate", "--strict", str(f))
        assert r.returncode == 0, f"{f.name}: {r.stdout}{r.stderr}"
    typo = tmp_path / "t.yaml"
    typo.write_text("#cloud-config\nstages:\n  boot:\n    - systctl: {a: b}\n")
    assert ctl(bins, None, "config", "validate", str(typo)).returncode == 0
    r = ctl(bins, None, "config", "validate", "--strict", str(typo))
    assert r.returncode == 1 and "did you mean 'sysctl'?" in r.stdout


def test_stage_through_the_daemon(bins, start_agent, tmp_path, nobody_ctl):
    root = make_root(tmp_path / "droot")
    agent = start_agent(root=root)
    cfg = tmp_path / "d.yaml"
    cfg.write_text("#cloud-config\nstages:\n  boot:\n    - name: slow\n      commands: ['sleep 2']\n"
                   "      files: [{path: /etc/via-daemon, content: yes}]\n")
    addr = agent.bus.address
    proc = subprocess.Popen([bins["ctl"], "--bus-address", addr, "stage", "run", "boot", "--config", str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: json.loads(ctl(bins, addr, "status", "--json").stdout)["Operation"] == "stage boot", "job start")
    except BaseException:
        print(agent.output(), proc.communicate())
        raise
    busy = ctl(bins, addr, "stage", "run", "boot")
    assert busy.returncode == 1 and "busy: 'stage boot' is running" in busy.stderr
    denied = ctl(bins, addr, "stage", "run", "boot", nobody=True, ctl_path=nobody_ctl)
    assert denied.returncode == 4
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "boot: 1 steps, 1 changed" in out
    assert (root / "etc/via-daemon").read_text() == "yes"
    assert "via-daemon" in agent.output() or "wrote /etc/via-daemon" in agent.output()
    st = json.loads(ctl(bins, addr, "status", "--json").stdout)
    assert st["Operation"] == "idle"
    assert st["Stages"][0]["Stage"] == "boot" and st["Stages"][0]["Changed"] == 1
    human = ctl(bins, addr, "status").stdout
    assert "boot" in human and "1 changed" in human


def test_live_mode_in_a_throwaway_root(bins, tmp_path):
    """As the running system (--root /): hostname and a per-namespace sysctl applied live."""
    need_tool("unshare", "util-linux")
    keep = tmp_path / "upper"
    cfg = tmp_path / "live.yaml"
    cfg.write_text("#cloud-config\nstages:\n  boot:\n    - hostname: live-node\n      sysctl: {net.ipv4.ip_forward: '1'}\n"
                   "      users: {liveuser: {shell: /bin/sh}}\n")
    r = subprocess.run([str(TOP / "tests/integration/helpers/testroot.sh"), "--keep", str(keep), "--",
                        bins["agent"], "stage", "boot", "--config", str(cfg), "--json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    rep = json.loads(r.stdout)
    changes = rep["steps"][0]["changes"]
    assert "set the running hostname to live-node" in changes and "set net.ipv4.ip_forward = 1" in changes
    assert (keep / ".uts-hostname").read_text().strip() == "live-node"
    assert (keep / ".ip_forward").read_text().strip() == "1"
    assert "liveuser:" in (keep / "etc/passwd").read_text()
    # The host is untouched.
    assert "liveuser" not in Path("/etc/passwd").read_text()


def test_reconcile_runs_on_the_daemon_timer(bins, start_agent, tmp_path):
    root = make_root(tmp_path / "rroot")
    (root / "etc" / "ballast").mkdir()
    (root / "etc" / "ballast" / "agent.yaml").write_text("reconcile:\n  delay: 1s\n  interval: 1h\n")
    (root / "etc" / "ballast" / "config.d").mkdir()
    (root / "etc" / "ballast" / "config.d" / "r.yaml").write_text(
        "#cloud-config\nstages:\n  reconcile:\n    - files: [{path: /etc/reconciled, content: yes}]\n")
    agent = start_agent(root=root)
    wait_for(lambda: (root / "run/ballast/stages/reconcile.json").exists(), "the reconcile run", timeout=30)
    wait_for(lambda: json.loads(ctl(bins, agent.bus.address, "status", "--json").stdout)["Operation"] == "idle", "idle")
    assert (root / "etc/reconciled").read_text() == "yes"
    st = json.loads(ctl(bins, agent.bus.address, "status", "--json").stdout)
    assert [s["Stage"] for s in st["Stages"]] == ["reconcile"] and st["Stages"][0]["Changed"] == 1


def test_commands_of_a_step_stay_independent(bins, node, tmp_path):
    """Several commands share one shell but not its state: exit, cd and failures stay local."""
    cfg = tmp_path / "b.yaml"
    cfg.write_text("""#cloud-config
stages:
  boot:
    - name: batch
      commands:
        - "cd /etc; echo in-etc"
        - "pwd > /pwd.txt"
        - "echo bad >&2; printf partial; exit 7"
        - "set -e; false; echo never"
        - "echo after > /after.txt"
        - ["sh", "-c", "echo argv ok > /argv.txt"]
""")
    r, rep = run_stage(bins, node, "boot", cfg)
    assert r.returncode == 1
    s = steps(rep)["batch"]
    assert s["errors"] == ["'echo bad >&2; printf partial; exit 7' exited with status 7: bad",
                           "'set -e; false; echo never' exited with status 1"], s
    assert s["notes"] == ["4 of 6 commands ran successfully"]
    assert (node / "pwd.txt").read_text() == "/\n"
    assert (node / "after.txt").read_text() == "after\n"
    assert (node / "argv.txt").read_text() == "argv ok\n"
    assert "in-etc" in r.stderr and "__ballast_rc" not in r.stderr + r.stdout
