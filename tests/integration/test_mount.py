"""ballast-agent mount, for real: a read-only "slot" folder as the sysroot, a persistent ext4 on a
loop device, OEM on another, all inside a private mount namespace (unshare -m) so nothing leaks
to the host. A "boot" is one namespace: the mounts die with it, the persistent image stays."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import need_tool

# Runs inside `unshare -m`: the slot read-only, the devices as loop devices, the agent, then
# CHECK (a bash snippet, run with the root assembled). losetup -d detaches once unused.
BOOT = r"""
set -u
cd "$T"
# Shared, as systemd makes / in an initramfs (new peer groups, inside this namespace only).
mount --make-rshared /
mount --bind sys sys && mount -o remount,bind,ro sys
mount --make-private sys  # its own mount with no peers, like /sysroot in the initramfs
P=$(losetup -f --show p.img); O=$(losetup -f --show oem.img)
trap 'losetup -d "$P" "$O"' EXIT
sed -e "s|@OEM@|$O|" agent.yaml.in > agent.yaml
DEV=${DEV-$P}
"$AGENT" --root "$T/initrd" mount --sysroot sys --run-dir "$T/run" --device "$DEV" \
  --config agent.yaml --json $ARGS > report.json 2> agent.err
echo $? > rc
eval "$CHECK"
"""


@pytest.fixture
def node(tmp_path, bins):
    need_tool("mkfs.ext4", "e2fsprogs")
    need_tool("unshare", "util-linux")
    t = tmp_path
    sys = t / "sys"
    for d in ["etc/ballast", "var/lib/dbus", "var/log/apt", "tmp", "home", "root", "opt",
              "usr/local/bin", "usr/lib/firmware", "oem", "proc", "sys", "dev", "run", "bin"]:
        (sys / d).mkdir(parents=True)
    os.symlink("usr/lib", sys / "lib")  # as in Debian's merged /usr
    need_tool("busybox", "busybox-static")
    shutil.copy2(shutil.which("busybox"), sys / "bin" / "busybox")
    for applet in ("sh", "echo", "cat"):
        os.symlink("busybox", sys / "bin" / applet)
    (sys / "root" / ".bashrc").write_text("# from the image\n")
    os.chmod(sys / "root", 0o700)
    (sys / "etc" / "hostname").write_text("image\n")
    (sys / "var" / "log" / "apt" / "history.log").write_text("image log\n")
    (t / "initrd").mkdir()
    (t / "run").mkdir()
    subprocess.run(["truncate", "-s", "64M", str(t / "p.img")], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(t / "p.img")], check=True)
    subprocess.run(["truncate", "-s", "16M", str(t / "oem.img")], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(_oem_tree(t)), str(t / "oem.img")], check=True)
    (t / "agent.yaml.in").write_text("mount:\n  oem_device: @OEM@\n  device_timeout: 1s\n")
    return t


def _oem_tree(t: Path) -> Path:
    oem = t / "oem-tree"
    oem.mkdir()
    (oem / "90_stages.yaml").write_text("""#cloud-config
stages:
  rootfs:
    - files:
        - path: /run/rootfs-stage-ran
          content: "rootfs\\n"
  initramfs:
    - files:
        - path: /etc/motd
          content: "written in the initramfs stage\\n"
    - commands:
        - echo quiet > /dev/null && cat /proc/self/stat > /dev/null && echo ran > /etc/cmd-ran
""")
    return oem


def boot(bins, t: Path, check: str = "true", args: str = "", dev: str | None = None):
    env = dict(os.environ, T=str(t), AGENT=bins["agent"], CHECK=check, ARGS=args)
    if dev is not None:
        env["DEV"] = dev
    # The stage runner reads /proc/cmdline; the sysroot's own /proc stays empty.
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "bash", "-c", BOOT],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    text = (t / "report.json").read_text()
    rep = json.loads(text) if text.strip() else None
    return int((t / "rc").read_text()), rep, (t / "agent.err").read_text(), r.stdout


def steps_by_path(rep):
    return {s["path"]: s for s in rep["steps"]}


def test_first_boot_assembles_root_and_seeds_persistent_paths(bins, node):
    check = r"""
    touch sys/should-fail 2>/dev/null && echo ROOT_WRITABLE
    echo node-a > sys/etc/hostname
    echo data > sys/var/lib/rancher/state
    echo gone > sys/var/cache-file
    echo tmp > sys/tmp/x
    cat sys/root/.bashrc sys/var/log/apt/history.log sys/etc/cmd-ran
    findmnt -rn "$T/sys/dev" >/dev/null && echo DEV_LEFT_BOUND
    mountpoint -q /dev/pts && mountpoint -q /dev/shm && echo ORIGINALS_KEPT
    stat -c 'root-mode=%a' sys/root
    findmnt -rn -o TARGET,FSTYPE -R "$T/sys" | sed "s|$T||"
    """
    rc, rep, err, out = boot(bins, node, check)
    assert rc == 0, err
    assert rep["ok"] and rep["persistent"] and rep["stages_ok"]
    assert "ROOT_WRITABLE" not in out and "DEV_LEFT_BOUND" not in out
    # Detaching the stage's /dev, /proc, /sys, /run did not take the originals' submounts along.
    assert "ORIGINALS_KEPT" in out
    assert "# from the image" in out and "image log" in out  # seeded on first boot
    assert "root-mode=700" in out
    mounts = dict(line.split(" ", 1) for line in out.splitlines() if line.startswith("/sys"))
    assert mounts["/sys/etc"] == "overlay" and mounts["/sys/var"] == "overlay"
    assert mounts["/sys/tmp"] == "tmpfs" and mounts["/sys/oem"] == "ext4"
    for p in ["/home", "/root", "/opt", "/usr/local", "/var/log", "/var/lib/rancher", "/var/lib/ballast"]:
        assert mounts[f"/sys{p}"] == "ext4", p
    s = steps_by_path(rep)
    assert s["/root"]["detail"] == "first boot: seeded from the image"
    assert s["/var/lib/rancher"]["detail"] == "first boot: created"
    # The stages: rootfs acted on the initramfs root with the slot's config, initramfs on the
    # assembled root (its /etc write went to the persistent upper layer).
    assert (node / "initrd" / "run" / "rootfs-stage-ran").read_text() == "rootfs\n"
    # Its commands run chrooted, with /dev and /proc there.
    assert "ran" in out.splitlines()
    assert json.loads((node / "run" / "mount.json").read_text())["ok"] is True


def test_second_boot_keeps_etc_and_persistent_paths_and_drops_the_rest(bins, node):
    boot(bins, node, r"""
    echo node-a > sys/etc/hostname; echo data > sys/var/lib/rancher/state
    echo gone > sys/var/cache-file; echo tmp > sys/tmp/x; echo more >> sys/root/.bashrc""")
    check = r"""
    cat sys/etc/hostname sys/var/lib/rancher/state sys/etc/motd sys/root/.bashrc
    ls sys/var/cache-file sys/tmp/x 2>&1 | grep -c 'No such file'
    """
    rc, rep, err, out = boot(bins, node, check)
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[:3] == ["node-a", "data", "written in the initramfs stage"]
    assert "more" in lines  # not seeded again over the node's own changes
    assert lines[-1] == "2"  # /var and /tmp are RAM
    s = steps_by_path(rep)
    assert "detail" not in s["/root"] and "detail" not in s["/var/lib/rancher"]


def test_etc_on_tmpfs_forgets_changes(bins, node):
    (node / "agent.yaml.in").write_text("mount:\n  oem_device: @OEM@\n  etc: tmpfs\n")
    boot(bins, node, "echo changed > sys/etc/hostname")
    rc, rep, err, out = boot(bins, node, "cat sys/etc/hostname")
    assert rc == 0, err
    assert out.strip() == "image"
    assert "/ephemeral/etc/upper" in steps_by_path(rep)["/etc"]["upper"]


def test_missing_persistent_device_boots_on_ram_and_says_so(bins, node):
    rc, rep, err, out = boot(bins, node, "echo x > sys/var/lib/rancher/y && echo WROTE", dev="/dev/nonexistent")
    assert rc == 1
    assert not rep["ok"] and not rep["persistent"]
    first = rep["steps"][0]
    assert first["state"] == "failed" and "RAM" in first["detail"]
    assert "did not appear within 1 s" in err
    assert "WROTE" in out  # the rest of the layout still works, on RAM


def test_path_missing_from_read_only_image_fails_alone(bins, node):
    (node / "agent.yaml.in").write_text(
        "mount:\n  oem_device: @OEM@\n  persistent_paths: [/srv, /var/lib/rancher]\n")
    rc, rep, err, out = boot(bins, node)
    assert rc == 1
    s = steps_by_path(rep)
    assert s["/srv"]["state"] == "failed"
    assert "not a folder in the slot image" in s["/srv"]["detail"]
    assert s["/var/lib/rancher"]["state"] == "done"


@pytest.mark.parametrize("paths,message", [
    ("[/var/lib, /var/lib/rancher]", "'/var/lib/rancher' is inside '/var/lib'"),
    ("[/usr/bin]", "/usr belongs to the slot image"),
])
def test_bad_settings_fall_back_to_the_default_layout(bins, node, paths, message):
    # A node with a broken agent.yaml still gets a writable /etc and its persistent paths.
    (node / "agent.yaml.in").write_text(f"mount:\n  persistent_paths: {paths}\n")
    rc, rep, err, out = boot(bins, node, "echo x > sys/etc/x && echo y > sys/var/lib/rancher/y && echo OK")
    assert rc == 1
    assert "agent.yaml:2:" in err and "mount.persistent_paths" in err and message in err
    assert "using the default layout" in err
    assert message in rep["config_error"] and not rep["ok"]
    assert out.strip() == "OK"
    assert steps_by_path(rep)["/var/lib/rancher"]["state"] == "done"


def test_symlink_in_the_image_is_refused(bins, node):
    # /lib -> usr/lib: "/lib/firmware" would pin the slot's /usr/lib/firmware on persistent storage.
    (node / "agent.yaml.in").write_text(
        "mount:\n  oem_device: @OEM@\n  persistent_paths: [/lib/firmware, /home]\n")
    rc, rep, err, out = boot(bins, node, "findmnt -rn \"$T/sys/usr/lib/firmware\" || echo NOT_MOUNTED")
    assert rc == 1
    s = steps_by_path(rep)
    assert s["/lib/firmware"]["state"] == "failed"
    assert "/lib is a symlink in the slot image (to usr/lib)" in s["/lib/firmware"]["detail"]
    assert s["/home"]["state"] == "done"
    assert "NOT_MOUNTED" in out


def test_second_run_in_one_boot_is_refused(bins, node):
    check = r"""
    "$AGENT" mount --sysroot sys --run-dir "$T/run" --device "$DEV" --config agent.yaml --no-stages
    echo rc2=$?
    """
    rc, rep, err, out = boot(bins, node, check)
    assert rc == 0
    assert "rc=2" not in out and "rc2=1" in out


def test_interrupted_first_copy_is_redone(bins, node):
    # A power cut while /root was being seeded left a half copy in .ballast/seeding; the next
    # boot starts it again. A real path named like a temporary is never touched.
    check = r"""
    mkdir -p run/persistent && mount "$P" run/persistent
    mkdir -p run/persistent/.ballast/seeding/root && echo half > run/persistent/.ballast/seeding/root/junk
    mkdir -p run/persistent/.ballast/state/root.new && echo keep > run/persistent/.ballast/state/root.new/data
    umount run/persistent
    """
    boot(bins, node, check, args="--dry-run")
    rc, rep, err, out = boot(bins, node, "ls -A sys/root; ls run/persistent/.ballast/state; "
                                         "cat run/persistent/.ballast/state/root.new/data; "
                                         "ls -A run/persistent/.ballast/seeding")
    assert rc == 0, err
    # seeding/ keeps only the empty parents of finished copies (usr/, var/).
    assert out.split() == [".bashrc", "home", "opt", "root", "root.new", "usr", "var", "keep", "usr", "var"]


def test_dry_run_prints_the_plan_and_mounts_nothing(bins, node):
    rc, rep, err, out = boot(bins, node, "findmnt -rn -R \"$T/sys\" | wc -l", args="--dry-run")
    assert rc == 0
    kinds = [(s["path"], s["kind"]) for s in rep["plan"]]
    assert kinds[:6] == [(str(node / "run" / "persistent"), "device"),
                         (str(node / "run" / "ephemeral"), "tmpfs"), ("/oem", "device"),
                         ("/etc", "overlay"), ("/var", "overlay"), ("/tmp", "tmpfs")]
    assert out.strip() == "1"
