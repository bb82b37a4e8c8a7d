"""ballast-agent on a private bus with agentctl: status, authorization, sd_notify, signals."""
import json
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import ctl, wait_for, name_owned


def agent_version(bins):
    out = subprocess.run([bins["agent"], "--version"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_status_json_shows_version(bins, agent):
    r = ctl(bins, agent.bus.address, "status", "--json")
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert st["Version"] == agent_version(bins)
    assert re.fullmatch(r"\d+\.\d+\.\d+", st["Version"])
    assert st["BootedSlot"] == "A"
    assert st["Operation"] == "idle"
    assert st["LastError"] == ""
    assert st["Root"] == str(agent.root)


def test_status_human_table(bins, agent):
    r = ctl(bins, agent.bus.address, "status")
    assert r.returncode == 0, r.stderr
    assert "Ballast agent " + agent_version(bins) in r.stdout
    assert re.search(r"Booted slot\s+A", r.stdout)
    assert re.search(r"Operation\s+idle", r.stdout)


def test_global_options_before_the_command_and_env_address(bins, agent):
    r = ctl(bins, None, "--json", "status", env={"BALLAST_BUS_ADDRESS": agent.bus.address})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["BootedSlot"] == "A"


def test_booted_slot_b_and_unknown(bins, start_agent):
    a = start_agent(args=("--booted-slot", "b"))
    st = json.loads(ctl(bins, a.bus.address, "status", "--json").stdout)
    assert st["BootedSlot"] == "B"


def test_properties_over_plain_dbus(bins, agent):
    r = subprocess.run(["busctl", f"--address={agent.bus.address}", "get-property",
                        "org.ballast.Agent1", "/org/ballast/Agent1", "org.ballast.Agent1",
                        "Version", "BootedSlot", "Operation", "LastError"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:4] == [f's "{agent_version(bins)}"', 's "A"', 's "idle"', 's ""']
    intro = subprocess.run(["busctl", f"--address={agent.bus.address}", "introspect",
                            "org.ballast.Agent1", "/org/ballast/Agent1"], capture_output=True, text=True)
    assert ".GetStatus" in intro.stdout and ".Reload" in intro.stdout


def test_unprivileged_reader_allowed(bins, agent, nobody_ctl):
    r = ctl(bins, agent.bus.address, "status", "--json", nobody=True, ctl_path=nobody_ctl)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["BootedSlot"] == "A"


def test_unprivileged_mutation_denied(bins, agent, nobody_ctl):
    r = ctl(bins, agent.bus.address, "log-level", "debug", nobody=True, ctl_path=nobody_ctl)
    assert r.returncode == 4
    assert "setting LogLevel needs root (caller uid 65534)" in r.stderr
    r = ctl(bins, agent.bus.address, "reload", nobody=True, ctl_path=nobody_ctl)
    assert r.returncode == 4, r.stderr
    # Straight through D-Bus, bypassing agentctl: the daemon itself refuses.
    raw = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
                          "busctl", f"--address={agent.bus.address}", "call", "org.ballast.Agent1",
                          "/org/ballast/Agent1", "org.ballast.Agent1", "Reload"],
                         capture_output=True, text=True)
    assert raw.returncode != 0
    assert "Access denied" in raw.stderr
    # The bus allows everything here: each refusal came from the daemon.
    out = agent.output()
    assert "denied setting LogLevel to uid 65534" in out
    assert out.count("denied Reload to uid 65534") == 2
    # Nothing changed.
    assert json.loads(ctl(bins, agent.bus.address, "status", "--json").stdout)["LogLevel"] == "info"


def test_root_may_mutate_and_properties_changed_is_emitted(bins, agent, world_tmp):
    mon_out = world_tmp / "monitor.txt"
    with open(mon_out, "w") as f:
        mon = subprocess.Popen(["dbus-monitor", "--address", agent.bus.address,
                                "type='signal',interface='org.freedesktop.DBus.Properties',"
                                "path='/org/ballast/Agent1'"], stdout=f, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: "NameAcquired" in mon_out.read_text() or mon_out.stat().st_size > 0,
                     "dbus-monitor start")
            time.sleep(0.2)
            r = ctl(bins, agent.bus.address, "log-level", "debug")
            assert r.returncode == 0, r.stderr
            assert r.stdout.strip() == "debug"
            wait_for(lambda: "PropertiesChanged" in mon_out.read_text(), "PropertiesChanged")
        finally:
            mon.terminate()
            mon.wait()
    text = mon_out.read_text()
    assert 'string "LogLevel"' in text and 'string "debug"' in text


def test_ready_status_and_watchdog_on_notify_socket(bins, start_agent, notify_socket):
    start_agent(env={"NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": "200000"},
                wait=False)
    assert notify_socket.receive_until(lambda ms: any("READY=1" in m for m in ms)), notify_socket.messages
    assert any(m.startswith("STATUS=Idle") for m in notify_socket.messages)
    # sd-event pings at half the interval: several pings arrive within a couple of seconds.
    assert notify_socket.receive_until(
        lambda ms: sum("WATCHDOG=1" in m for m in ms) >= 3), notify_socket.messages


def test_sigterm_and_sigint_exit_zero_promptly(bins, start_agent):
    for sig in (signal.SIGTERM, signal.SIGINT):
        a = start_agent()
        a.proc.send_signal(sig)
        # Generous bound for a loaded CI machine; the requirement (1 s) is measured in the bench.
        assert a.proc.wait(timeout=10) == 0
        assert "stopping" in a.output()
        assert not name_owned(a.bus.address)


def test_second_instance_fails_clearly(bins, start_agent, agent):
    # Same root: the lock file names the first instance.
    second = start_agent(root=agent.root, wait=False)
    assert second.proc.wait(timeout=20) == 1
    assert f"another ballast-agent (pid {agent.proc.pid}) is already running" in second.output()
    # Different root, same bus: the bus name is taken.
    third = start_agent(wait=False)
    assert third.proc.wait(timeout=20) == 1
    assert "org.ballast.Agent1 is already owned on this bus" in third.output()
    # The first one is untouched.
    assert ctl(bins, agent.bus.address, "status").returncode == 0


def test_agentctl_without_daemon_exits_3(bins, bus, world_tmp):
    r = ctl(bins, bus.address, "status")
    assert r.returncode == 3
    assert r.stderr.count("\n") == 1 and "not running" in r.stderr
    r = ctl(bins, f"unix:path={world_tmp}/no-such-bus", "status")
    assert r.returncode == 3
    assert r.stderr.count("\n") == 1 and "cannot reach the bus" in r.stderr
    # `version` still answers for agentctl itself.
    r = ctl(bins, bus.address, "version")
    assert r.returncode == 0 and "(not reachable)" in r.stdout


def test_usage_errors_exit_2(bins, bus):
    assert ctl(bins, bus.address, "no-such-command").returncode == 2
    assert ctl(bins, bus.address, "status", "--no-such-option").returncode == 2
    assert ctl(bins, bus.address).returncode == 2
    assert ctl(bins, bus.address, "--help").returncode == 0
    r = subprocess.run([bins["agent"], "--booted-slot", "C"], capture_output=True, text=True)
    assert r.returncode == 2
    r = subprocess.run([bins["agent"], "--log-level", "loud"], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown log level" in r.stderr


def test_bad_settings_refuse_to_start_with_position(bins, start_agent, world_tmp):
    cfg = world_tmp / "agent.yaml"
    cfg.write_text("log_level: debug\nlog_levl: info\n")
    a = start_agent(args=("--config", str(cfg)), wait=False)
    assert a.proc.wait(timeout=20) == 1
    assert f"{cfg}:2:1: unknown key 'log_levl' (did you mean 'log_level'?)" in a.output()
    missing = start_agent(args=("--config", str(world_tmp / "missing.yaml")), wait=False)
    assert missing.proc.wait(timeout=20) == 1
    assert "agent settings: " in missing.output() and "No such file" in missing.output()


def test_settings_from_root_and_reload(bins, start_agent, world_tmp):
    root = world_tmp / "node"
    (root / "etc/ballast").mkdir(parents=True)
    settings = root / "etc/ballast/agent.yaml"
    settings.write_text("log_level: warning\n")
    a = start_agent(root=root)
    addr = a.bus.address
    assert json.loads(ctl(bins, addr, "status", "--json").stdout)["LogLevel"] == "warning"
    settings.write_text("log_level: error\n")
    assert ctl(bins, addr, "reload").returncode == 0
    assert json.loads(ctl(bins, addr, "status", "--json").stdout)["LogLevel"] == "error"
    # A broken file is reported with its position and the running settings are kept.
    settings.write_text("log_level: error\ndisk: [\n")
    r = ctl(bins, addr, "reload")
    assert r.returncode == 1
    assert f"reload: {settings}:" in r.stderr
    assert json.loads(ctl(bins, addr, "status", "--json").stdout)["LogLevel"] == "error"
    # SIGHUP reloads as well.
    settings.write_text("log_level: debug\n")
    a.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: json.loads(ctl(bins, addr, "status", "--json").stdout)["LogLevel"] == "debug",
             "reload on SIGHUP")


def test_damaged_files_never_take_the_daemon_down(bins, start_agent, world_tmp, nobody_ctl):
    """Found by an audit: a stage report of the wrong shape made every GetStatus (allowed to any
    user) abort the daemon, and an alias that contains itself in agent.yaml overflowed its stack
    at the next reload."""
    root = world_tmp / "damaged"
    (root / "etc/ballast").mkdir(parents=True)
    (root / "run/ballast/stages").mkdir(parents=True)
    (root / "run/ballast/stages/boot.json").write_text('{"stage": 1, "changed": "many", "failed": [2]}')
    (root / "run/ballast/stages/fs.json").write_bytes(b'{"stage": "fs\xff", "changed": 3}')
    a = start_agent(root=root)
    addr = a.bus.address
    r = ctl(bins, addr, "status", "--json", nobody=True, ctl_path=nobody_ctl)
    assert r.returncode == 0, r.stderr + a.output()
    stages = json.loads(r.stdout)["Stages"]
    assert {"Stage": "", "Changed": 0, "Failed": 0} == {k: stages[0][k] for k in ("Stage", "Changed", "Failed")}
    settings = root / "etc/ballast/agent.yaml"
    settings.write_text("log_level: &a [*a]\n")
    r = ctl(bins, addr, "reload")
    assert r.returncode == 1
    assert f"{settings}:1:" in r.stderr and "nested more than 100 levels deep" in r.stderr, r.stderr
    a.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert a.proc.poll() is None, a.output()
    assert ctl(bins, addr, "status", "--json").returncode == 0


def test_disk_option_is_reported(bins, start_agent, world_tmp):
    img = world_tmp / "disk.img"
    img.write_bytes(b"")
    a = start_agent(args=("--booted-slot", "A", "--disk", str(img)))
    assert json.loads(ctl(bins, a.bus.address, "status", "--json").stdout)["Disk"] == str(img)


def test_journal_records_have_fields(bins, bus, world_tmp):
    """Under systemd (JOURNAL_STREAM names stderr) records go to the journal socket."""
    helper = os.path.join(os.path.dirname(__file__), "helpers", "journal_capture.py")
    r = subprocess.run(["/usr/bin/python3", helper, bins["agent"], bus.address, str(world_tmp / "jroot")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    records = json.loads(r.stdout)
    ready = [rec for rec in records if "ready on" in rec.get("MESSAGE", "")]
    assert ready, records
    rec = ready[0]
    assert rec["SYSLOG_IDENTIFIER"] == "ballast-agent"
    assert rec["PRIORITY"] == "6"
    assert any(rec.get("MESSAGE", "").startswith("received SIGTERM") for rec in records)
