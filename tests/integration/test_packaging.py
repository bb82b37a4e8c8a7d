"""What ships: the .deb and its contents, the systemd unit, tmpfiles.d and the D-Bus policy
enforced by a real dbus-daemon."""
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import NOBODY, Agent, Bus, build_dir, ctl, need_tool

TOP = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def deb_root(tmp_path_factory):
    """`make deb` of the build tree the tests run (dpkg-buildpackage packaging it as built: one
    compile serves the tests and the package), then the package unpacked into a folder."""
    need_tool("dpkg-buildpackage", "dpkg-dev")
    b = build_dir()
    r = subprocess.run(["make", "-C", str(TOP), "deb", f"BUILD={b}", "DEB_FROM_BUILD=1"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    debs = sorted((b / "deb").glob("ballast_*.deb"))
    assert len(debs) == 1, debs
    root = tmp_path_factory.mktemp("deb")
    subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(root)], check=True)
    listing = subprocess.run(["dpkg-deb", "-c", str(debs[0])], capture_output=True, text=True,
                             check=True).stdout
    return {"deb": debs[0], "root": root, "listing": listing}


@pytest.mark.packaging
def test_deb_contains_units_policy_man_pages(deb_root):
    # "perms owner size date time ./path [-> target]"
    files = {line.split()[5].lstrip(".") for line in deb_root["listing"].splitlines()}
    for f in ["/usr/sbin/ballast-agent", "/usr/bin/agentctl",
              "/lib/systemd/system/ballast-agent.service",
              "/usr/share/dbus-1/system.d/org.ballast.Agent1.conf",
              "/usr/share/dbus-1/system-services/org.ballast.Agent1.service",
              "/usr/lib/tmpfiles.d/ballast.conf",
              "/usr/share/man/man8/ballast-agent.8.gz", "/usr/share/man/man8/agentctl.8.gz",
              "/usr/share/bash-completion/completions/agentctl",
              "/usr/share/ballast/cloud-config.schema.json",
              "/lib/systemd/system/ballast-stage@.service",
              "/lib/systemd/system/ballast-stage@boot.service.d/10-order.conf",
              "/lib/systemd/system/sysinit.target.wants/ballast-stage@fs.service",
              "/lib/systemd/system/multi-user.target.wants/ballast-stage@network.service",
              "/lib/systemd/system/multi-user.target.wants/ballast-stage@after-reset.service",
              "/lib/systemd/system/multi-user.target.wants/ballast-stage@k3s-ready.service",
              "/lib/systemd/system/ballast-stage@k3s-ready.service.d/10-order.conf",
              "/lib/systemd/system/ballast-reset-poweroff.service",
              "/lib/systemd/system/ballast-recovery.target",
              "/lib/systemd/system/ballast-escrow.service",
              "/lib/systemd/system/multi-user.target.wants/ballast-escrow.service",
              "/lib/systemd/system/ballast-recovery-access.service",
              "/lib/systemd/system-generators/ballast-recovery-generator",
              "/lib/systemd/system/multi-user.target.wants/ballast-reset-poweroff.service",
              "/lib/systemd/system/ballast-health.service",
              "/lib/systemd/system/multi-user.target.wants/ballast-health.service",
              "/lib/systemd/system/boot-complete.target.requires/ballast-health.service",
              "/lib/systemd/system/ballast-install.service",
              "/lib/systemd/system/multi-user.target.wants/ballast-install.service",
              "/usr/lib/dracut/modules.d/90ballast/module-setup.sh",
              "/usr/lib/dracut/modules.d/90ballast/ballast-mount.service",
              "/usr/lib/dracut/dracut.conf.d/90-ballast.conf"]:
        assert f in files, f"{f} missing from the package:\n{deb_root['listing']}"
    # systemd runs only executable generators.
    assert any(l.startswith("-rwxr-xr-x") and l.endswith("/ballast-recovery-generator")
               for l in deb_root["listing"].splitlines()), deb_root["listing"]
    info = subprocess.run(["dpkg-deb", "-I", str(deb_root["deb"])], capture_output=True, text=True).stdout
    assert "libsystemd0" in info and "dbus" in info


def build_id(path: Path) -> str:
    """The GNU build-id note: kept by dh_strip, so it names the compile a packaged binary is from."""
    out = subprocess.run(["readelf", "-n", str(path)], capture_output=True, text=True, check=True).stdout
    m = re.search(r"Build ID: ([0-9a-f]+)", out)
    assert m, out
    return m.group(1)


@pytest.mark.packaging
def test_deb_holds_the_tested_binaries(deb_root, bins):
    # The package is made from the tree the unit and integration tests ran, not from a second
    # compile; stripped, but the same build.
    for packaged, built in [("usr/sbin/ballast-agent", bins["agent"]), ("usr/bin/agentctl", bins["ctl"])]:
        assert build_id(deb_root["root"] / packaged) == build_id(Path(built)), packaged
    # Debian's hardening, from the project's own flags: full RELRO, PIE, stack protector.
    agent = deb_root["root"] / "usr/sbin/ballast-agent"
    dyn = subprocess.run(["readelf", "-d", "-h", str(agent)], capture_output=True, text=True, check=True).stdout
    assert "BIND_NOW" in dyn and "DYN (Position-Independent Executable file)" in dyn, dyn
    syms = subprocess.run(["readelf", "--dyn-syms", "-W", str(agent)], capture_output=True, text=True).stdout
    assert "__stack_chk_fail" in syms, "no stack protector"


@pytest.mark.packaging
def test_packaged_agent_runs(deb_root, bus, world_tmp):
    agent = str(deb_root["root"] / "usr/sbin/ballast-agent")
    ctlbin = str(deb_root["root"] / "usr/bin/agentctl")
    a = Agent({"agent": agent, "ctl": ctlbin}, bus, world_tmp / "pkgroot", ("--booted-slot", "B"))
    try:
        r = ctl({"ctl": ctlbin}, bus.address, "status", "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["BootedSlot"] == "B"
    finally:
        a.stop()


@pytest.mark.packaging
def test_man_pages_render(deb_root):
    need_tool("man", "man-db")
    for page in ["agentctl.8.gz", "ballast-agent.8.gz"]:
        path = deb_root["root"] / "usr/share/man/man8" / page
        r = subprocess.run(["man", "-l", str(path)], capture_output=True, text=True,
                           env=dict(os.environ, MANWIDTH="80", MAN_KEEP_FORMATTING="0"))
        assert r.returncode == 0, r.stderr
        text = re.sub(r".\x08", "", r.stdout)  # drop overstrike bold/underline
        assert "EXIT STATUS" in text and "SYNOPSIS" in text


def built_unit(name, exec_start, directory):
    """The built unit `name`, copied into `directory` with ExecStart pointing at the built binary
    so that systemd-analyze verify covers the whole file. Returns (path, original text)."""
    unit = (build_dir() / "units" / name).read_text()
    lines = [f"ExecStart={exec_start}" if l.startswith("ExecStart=") else l for l in unit.splitlines()]
    path = directory / name
    path.write_text("\n".join(lines) + "\n")
    return path, unit


def test_unit_file_verifies(bins, world_tmp):
    need_tool("systemd-analyze", "systemd")
    path, unit = built_unit("ballast-agent.service", bins["agent"], world_tmp)
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(path)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout + r.stderr == "", r.stdout + r.stderr
    assert "Type=notify" in unit and "WatchdogSec=" in unit and "Restart=on-failure" in unit


def test_health_unit_verifies(bins, world_tmp):
    need_tool("systemd-analyze", "systemd")
    path, unit = built_unit("ballast-health.service", f"{bins['ctl']} health", world_tmp)
    # The agent's unit beside it, for Requires= to resolve.
    agent_path, _ = built_unit("ballast-agent.service", bins["agent"], world_tmp)
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(path), str(agent_path)],
                       capture_output=True, text=True,
                       env=dict(os.environ, SYSTEMD_UNIT_PATH=f"{world_tmp}:"))
    assert r.returncode == 0 and r.stdout + r.stderr == "", r.stdout + r.stderr
    assert "Before=boot-complete.target" in unit and "RequiredBy=boot-complete.target" in unit


def test_install_unit_verifies(bins, world_tmp):
    need_tool("systemd-analyze", "systemd")
    path, unit = built_unit("ballast-install.service", f"{bins['ctl']} install --auto", world_tmp)
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(path)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout + r.stderr == "", r.stdout + r.stderr
    # The recovery key an encrypted install prints must not reach the journal.
    assert "StandardOutput=tty" in unit and "TTYPath=/dev/console" in unit


def test_stage_units_verify(bins, world_tmp):
    """Each stage instance, with its ordering drop-in, passes systemd-analyze verify."""
    need_tool("systemd-analyze", "systemd")
    template = (build_dir() / "units" / "ballast-stage@.service").read_text()
    assert "Type=oneshot" in template and "DefaultDependencies=no" in template
    names = []
    sbindir_agent = "ExecStart=" + template.split("ExecStart=")[1].split("\n")[0].split(" ")[0]
    for stage in ("fs", "boot", "network", "after-reset", "k3s-ready"):
        unit = world_tmp / f"ballast-stage@{stage}.service"
        unit.write_text(template.replace(sbindir_agent, f"ExecStart={bins['agent']}"))
        dropins = world_tmp / f"ballast-stage@{stage}.service.d"
        dropins.mkdir()
        if stage == "k3s-ready":  # configured: its ExecStart names the agent
            text = (build_dir() / "units" / "k3s-ready-10-order.conf").read_text()
            assert sbindir_agent + " stage k3s-ready --wait-k3s-ready " in text, text
            (dropins / "10-order.conf").write_text(text.replace(sbindir_agent, f"ExecStart={bins['agent']}"))
        else:
            shutil.copy(TOP / "units" / f"stage-{stage}.d" / "10-order.conf", dropins)
        names.append(str(unit))
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", *names], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout + r.stderr == "", r.stdout + r.stderr
    order = {s: (TOP / "units" / f"stage-{s}.d" / "10-order.conf").read_text() for s in ("fs", "boot", "network")}
    assert "Before=sysinit.target" in order["fs"] and "After=local-fs.target" in order["fs"]
    assert "Before=getty.target" in order["boot"]
    assert "After=network-online.target" in order["network"]
    after_reset = (TOP / "units" / "stage-after-reset.d" / "10-order.conf").read_text()
    assert "ConditionPathExists=/run/ballast/reset-finished" in after_reset


def test_reset_poweroff_unit_verifies(bins, world_tmp):
    """The unit that powers off after a reset asking for it: verified beside the units it is
    ordered with (no ordering cycle through multi-user.target), acting only on the initramfs's
    marker, after the after-reset stage."""
    need_tool("systemd-analyze", "systemd")
    path = world_tmp / "ballast-reset-poweroff.service"
    shutil.copy(TOP / "units" / path.name, path)
    health, _ = built_unit("ballast-health.service", f"{bins['ctl']} health", world_tmp)
    agent, _ = built_unit("ballast-agent.service", bins["agent"], world_tmp)
    wants = world_tmp / "multi-user.target.wants"
    wants.mkdir()
    for unit in (path, health):
        (wants / unit.name).symlink_to(unit)
    # With the target that pulls both in: its start transaction is where a cycle shows.
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(path), str(health), str(agent),
                        "multi-user.target"],
                       capture_output=True, text=True, env=dict(os.environ, SYSTEMD_UNIT_PATH=f"{world_tmp}:"))
    assert r.returncode == 0 and r.stdout + r.stderr == "", r.stdout + r.stderr
    unit = path.read_text()
    assert "ConditionPathExists=/run/ballast/reset-poweroff" in unit
    assert "After=ballast-stage@after-reset.service" in unit


def test_recovery_units_verify(bins, world_tmp):
    """The recovery target and its access unit verify; the generator is executable and does
    nothing on a normal boot (the VM test covers a recovery boot)."""
    need_tool("systemd-analyze", "systemd")
    target = world_tmp / "ballast-recovery.target"
    shutil.copy(TOP / "units" / target.name, target)
    access, unit = built_unit("ballast-recovery-access.service",
                              f"{bins['agent']} stage recovery --access-only", world_tmp)
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(target), str(access)],
                       capture_output=True, text=True, env=dict(os.environ, SYSTEMD_UNIT_PATH=f"{world_tmp}:"))
    assert r.returncode == 0 and r.stdout + r.stderr == "", r.stdout + r.stderr
    assert "ConditionPathExists=/run/ballast/recovery.json" in unit
    assert "AllowIsolate=yes" in target.read_text()
    gen = build_dir() / "units" / "ballast-recovery-generator"
    if not Path("/run/ballast/recovery.json").exists():
        out = world_tmp / "gen"
        for d in ("normal", "early", "late"):
            (out / d).mkdir(parents=True)
        r = subprocess.run(["sh", str(gen), *(str(out / d) for d in ("normal", "early", "late"))],
                           capture_output=True, text=True)
        assert r.returncode == 0 and not any(out.rglob("*.target")), r.stderr
    template = (build_dir() / "units" / "ballast-stage@.service").read_text()
    assert "ConditionPathExists=!/run/ballast/recovery.json" in template


def test_escrow_unit_verifies(bins, world_tmp):
    """The unit that hands a recovery key made at boot to the escrow: verified; only when one
    waits; after the network; its output (never the key) to the journal."""
    need_tool("systemd-analyze", "systemd")
    path, unit = built_unit("ballast-escrow.service", f"{bins['agent']} escrow", world_tmp)
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(path)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout + r.stderr == "", r.stdout + r.stderr
    assert "ConditionPathExists=/run/ballast/escrow/recovery-key" in unit
    assert "After=network-online.target" in unit


def test_tmpfiles_create_state_dirs(world_tmp):
    need_tool("systemd-tmpfiles", "systemd")
    r = subprocess.run(["systemd-tmpfiles", f"--root={world_tmp}", "--create",
                        str(TOP / "units" / "ballast.tmpfiles")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert oct((world_tmp / "var/lib/ballast").stat().st_mode & 0o7777) == "0o700"
    assert (world_tmp / "run/ballast").is_dir()
    assert (world_tmp / "etc/ballast/config.d").is_dir()


# The default policy of Debian's /usr/share/dbus-1/system.conf, with our policy file included.
SYSTEM_LIKE_POLICY = """<policy context="default">
    <allow user="*"/>
    <deny send_type="method_call"/>
    <deny own="*"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
  </policy>
  <include>{policy}</include>"""


def test_dbus_policy_file_reads_open_writes_root(bins, world_tmp, nobody_ctl):
    b = Bus(world_tmp, SYSTEM_LIKE_POLICY.format(policy=TOP / "units" / "org.ballast.Agent1.conf"))
    try:
        a = Agent(bins, b, world_tmp / "root", ("--booted-slot", "A"))
        try:
            assert ctl(bins, b.address, "status", "--json", nobody=True, ctl_path=nobody_ctl).returncode == 0
            # The bus refuses before the daemon sees it.
            r = ctl(bins, b.address, "reload", nobody=True, ctl_path=nobody_ctl)
            assert r.returncode == 4, r.stderr
            assert "denied" not in a.output()
            r = ctl(bins, b.address, "log-level", "debug", nobody=True, ctl_path=nobody_ctl)
            assert r.returncode == 4, r.stderr
            # root may.
            assert ctl(bins, b.address, "reload").returncode == 0
            assert ctl(bins, b.address, "log-level", "debug").returncode == 0
        finally:
            a.stop()
        # Only root may own the name.
        agent_copy = world_tmp / "ballast-agent"
        shutil.copy(bins["agent"], agent_copy)
        nroot = world_tmp / "nobody-root"
        nroot.mkdir()
        os.chown(nroot, 65534, 65534)
        r = subprocess.run(NOBODY + [str(agent_copy), "--bus-address", b.address, "--root", str(nroot)],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 1
        assert "not allowed to own org.ballast.Agent1" in r.stderr
    finally:
        b.stop()


def test_deb_from_build_refuses_a_tree_it_cannot_package(tmp_path):
    # Not a meson tree, and a tree configured for /usr/local: refused before BUILD/deb is touched.
    need_tool("meson", "meson")
    cases = [(tmp_path / "empty", "is not a configured meson build tree")]
    cases[0][0].mkdir()
    local = tmp_path / "local"
    r = subprocess.run(["meson", "setup", str(local), "--prefix=/usr/local", "-Dtests=false"], cwd=TOP,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    cases.append((local, "was configured with prefix /usr/local, a package needs /usr"))
    for tree, message in cases:
        r = subprocess.run([str(TOP / "packaging/build-deb.sh"), "--from-build", str(tree)],
                           capture_output=True, text=True)
        assert r.returncode == 1 and message in r.stderr, r.stdout + r.stderr
        assert not (tree / "deb").exists()


def test_check_deps_names_a_package_make_test_would_not_install():
    # The groups `make test` installed before this check existed: QEMU and ssh (the e2e layer)
    # and dpkg-dev (the .deb) were missing from them.
    r = subprocess.run([str(TOP / "tests/check_deps.py"), "build", "test"], capture_output=True, text=True)
    assert r.returncode == 1, r.stdout + r.stderr
    for pkg in ["qemu-system-x86", "openssh-client", "dpkg-dev"]:
        assert f"check_deps: {pkg} is named by" in r.stderr, r.stderr
    # Python modules the tests import: the build group alone has none of their packages.
    r = subprocess.run([str(TOP / "tests/check_deps.py"), "build"], capture_output=True, text=True)
    assert r.returncode == 1, r.stdout + r.stderr
    for pkg in ["python3-yaml", "python3-jsonschema", "python3-pytest"]:
        assert f"check_deps: {pkg} is named by" in r.stderr, r.stderr
    r = subprocess.run([str(TOP / "tests/check_deps.py"), "no-such-group"], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown group 'no-such-group'" in r.stderr, r.stderr


def _initrd_tree(tmp_path: Path, libs: list[Path]) -> Path:
    """A stand-in unpacked initramfs: this host's loader and the given libraries, at the paths
    they have here (the check runs without an image)."""
    tree = tmp_path / "initrd"
    for src, dest in [(Path("/lib64/ld-linux-x86-64.so.2"), "lib64/ld-linux-x86-64.so.2"),
                      *[(f, str(f).lstrip("/")) for f in libs]]:
        (tree / dest).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src.resolve(), tree / dest)
    return tree


def _deps(lib: Path) -> list[Path]:
    out = subprocess.run(["ldd", str(lib)], capture_output=True, text=True, check=True).stdout
    return [Path(m) for m in re.findall(r"=> (/\S+)", out)]


def test_check_initrd_libs_names_a_missing_library_and_passes_a_complete_tree(tmp_path):
    """packaging/image/check-initrd-libs.sh (build.sh runs it on every initramfs): a library
    whose dependency is absent is named, with the exit status 1; the same tree with every
    dependency passes. The tree is left as it was."""
    lib = Path("/usr/lib/x86_64-linux-gnu/libcryptsetup.so.12")
    if not lib.exists():
        pytest.fail("libcryptsetup.so.12 is missing: packaging/deps.sh build installs libcryptsetup-dev")
    deps = _deps(lib)
    argon = [d for d in deps if d.name.startswith("libargon2")]
    assert argon, deps
    check = TOP / "packaging/image/check-initrd-libs.sh"

    tree = _initrd_tree(tmp_path, [lib, *[d for d in deps if d not in argon]])
    before = sorted(str(p.relative_to(tree)) for p in tree.rglob("*"))
    r = subprocess.run([str(check), str(tree)], capture_output=True, text=True)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "initramfs: /usr/lib/x86_64-linux-gnu/libcryptsetup.so.12" in r.stderr and "needs libargon2.so.1" in r.stderr, r.stderr
    assert sorted(str(p.relative_to(tree)) for p in tree.rglob("*")) == before

    _initrd_tree(tmp_path, argon)
    r = subprocess.run([str(check), str(tree)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == "", r.stderr

    r = subprocess.run([str(check), str(tmp_path / "none")], capture_output=True, text=True)
    assert r.returncode == 1 and "no /lib64/ld-linux-x86-64.so.2" in r.stderr, r.stderr


def test_check_initrd_mods_names_a_missing_dependency_and_passes_a_complete_tree(tmp_path):
    """packaging/image/check-initrd-mods.sh (build.sh runs it on every initramfs): a module in the
    initramfs whose dependency, by the kernel's full modules.dep, is not in the initramfs is named,
    with the exit status 1, even when the initramfs's own modules.dep (made by dracut's depmod,
    which drops what is missing) does not list it; modules not in the initramfs are not checked;
    the complete tree passes; a missing modules.dep is refused. The trees are left as they were."""
    check = TOP / "packaging/image/check-initrd-mods.sh"
    initrd = tmp_path / "initrd"
    inside = initrd / "usr/lib/modules/6.1.0-test"
    full = tmp_path / "root/usr/lib/modules/6.1.0-test"
    for mod in ["kernel/drivers/scsi/sd_mod.ko", "kernel/drivers/scsi/scsi_common.ko"]:
        (inside / mod).parent.mkdir(parents=True, exist_ok=True)
        (inside / mod).write_bytes(b"")
    (inside / "modules.dep").write_text(
        "kernel/drivers/scsi/scsi_common.ko:\nkernel/drivers/scsi/sd_mod.ko: kernel/drivers/scsi/scsi_common.ko\n")
    full.mkdir(parents=True)
    (full / "modules.dep").write_text(
        "kernel/drivers/scsi/scsi_common.ko:\n"
        "kernel/drivers/scsi/sd_mod.ko: kernel/drivers/scsi/scsi_mod.ko kernel/drivers/scsi/scsi_common.ko\n"
        "kernel/drivers/input/serio/parkbd.ko: kernel/drivers/parport/parport.ko\n")
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    r = subprocess.run([str(check), str(initrd), str(full)], capture_output=True, text=True)
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stderr == ("initramfs: kernel/drivers/scsi/sd_mod.ko needs kernel/drivers/scsi/scsi_mod.ko, "
                        "which is not there\n"), r.stderr
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before

    (inside / "kernel/drivers/scsi/scsi_mod.ko").write_bytes(b"")
    r = subprocess.run([str(check), str(initrd), str(full)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == "", r.stderr

    r = subprocess.run([str(check), str(initrd), str(tmp_path / "none")], capture_output=True, text=True)
    assert r.returncode == 1 and "none/modules.dep: no such file" in r.stderr, r.stderr


def test_check_dracut_log_refuses_a_compressor_fallback(tmp_path):
    """packaging/image/check-dracut-log.sh (build.sh runs it on dracut's log): dracut 059's own
    line for a compressor it cannot run fails the build; a log without it passes."""
    check = TOP / "packaging/image/check-dracut-log.sh"
    log = tmp_path / "dracut.log"
    clean = "dracut: *** Including module: ballast ***\ndracut: *** Creating initramfs image file '/boot/initrd.img' done ***\n"
    log.write_text(clean)
    r = subprocess.run([str(check), str(log)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    # The message as dracut 059 (Debian 12) logs it, from dracut.sh's derror.
    log.write_text(clean + "dracut[E]: Cannot execute compression command 'zstd', falling back to default\n")
    r = subprocess.run([str(check), str(log)], capture_output=True, text=True)
    assert r.returncode == 1, r.stderr
    assert "Cannot execute compression command 'zstd'" in r.stderr and "is zstd in packages.list?" in r.stderr, r.stderr
    r = subprocess.run([str(check), str(tmp_path / "missing.log")], capture_output=True, text=True)
    assert r.returncode == 1 and "cannot read" in r.stderr, r.stderr

