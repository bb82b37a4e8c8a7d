"""A Ballast node in QEMU for the end-to-end tests: q35, OVMF, virtio disk (a sparse copy of the
built disk.img, or of a saved node: see resume()), swtpm as its TPM, user networking with ssh forwarded
to a free local port, serial console to a log file. TCG (see accel()). A booted node can be
saved whole and resumed in a few seconds (save(), resume()) instead of booted again.

Commands run over ssh as root with the image build's test key (OEM cloud-config puts it in
root's authorized_keys). A reboot is the guest's own, through systemd and the kernel, up to the
reset; the reset then ends the QEMU process and a new one powers the node on again (start())."""
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

OVMF = Path("/usr/share/OVMF")
MARKER = re.compile(r"BALLAST-SMOKE (root=.*?) end")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def qmp(sock: Path, *commands, timeout: float = 30) -> list[dict]:
    """Runs QMP commands (names, or dicts with arguments) on QEMU's control socket; their returns.
    OSError when QEMU is not there or goes away (the caller knows why: its qemu.err)."""
    deadline = time.monotonic() + timeout
    while True:  # the socket appears a moment after QEMU starts
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(str(sock))
            break
        except OSError:
            s.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    def reply(f) -> dict:
        line = f.readline()
        if not line:
            raise ConnectionError("QEMU closed its QMP socket")
        return json.loads(line)

    s.settimeout(timeout)  # a wedged QEMU fails the test rather than hanging it
    with s, s.makefile("rw") as f:
        reply(f)  # the greeting
        out = []
        for c in ("qmp_capabilities", *commands):
            f.write(json.dumps({"execute": c} if isinstance(c, str) else c) + "\n")
            f.flush()
            while "event" in (r := reply(f)):
                pass
            if "error" in r:
                raise AssertionError(f"QMP {c}: {r['error']}")
            out.append(r["return"])
    return out[1:]


def accel() -> list[str]:
    # TCG by default: /dev/kvm exists on these machines but QEMU aborts on it (nested
    # virtualisation refuses an MSR); BALLAST_E2E_ACCEL=kvm where KVM really works.
    return ["-accel", os.environ.get("BALLAST_E2E_ACCEL", "tcg")]


class Vm:
    def __init__(self, image_dir: Path, work: Path, name: str = "node", tpm: bool = True):
        self.image_dir = image_dir
        self.work = work
        self.disk = work / f"{name}.img"
        self.vars = work / f"{name}-vars.fd"
        self.log = work / f"{name}-serial.log"
        self.console = work / f"{name}-console.sock"
        self.key = image_dir / "pki" / "ssh"
        self.port = free_port()
        self.proc = None
        self.swtpm = None
        # swtpm as the node's TPM 2.0; its state folder outlives power cuts, as a chip would.
        self.tpm_state = work / f"{name}-tpm" if tpm else None
        if self.tpm_state:
            self.tpm_state.mkdir()
        self.boots_seen = 0
        self.lock = threading.Lock()  # the supervisor's restarts against power_cut()
        self.off = threading.Event()  # set while the node is off (power-off, cut, QEMU failure)
        self.off.set()
        self.exit_code = None
        # Where a scenario's time goes (conftest.py keeps it with the serial log): host seconds
        # since this node was made, for each power-on, boot marker and slow command.
        self.t0 = time.monotonic()
        self.timeline = work / f"{name}-timeline.txt"
        self.extra_disks: list[Path] = []  # more virtio disks, after the boot disk
        self.qmp_sock = work / f"{name}-qmp.sock"
        self.incoming: Path | None = None  # a saved state (save()) the next launch resumes
        subprocess.run(["cp", "--sparse=always", str(image_dir / "disk.img"), str(self.disk)], check=True)
        shutil.copy(OVMF / "OVMF_VARS_4M.fd", self.vars)
        os.chmod(self.key, 0o600)

    # --- power -------------------------------------------------------------------------------
    def _start_swtpm(self) -> list[str]:
        sock = self.work / f"{self.disk.stem}-swtpm.sock"
        sock.unlink(missing_ok=True)
        self.swtpm = subprocess.Popen(
            ["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={self.tpm_state}",
             "--ctrl", f"type=unixio,path={sock}", "--terminate"],
            stdout=subprocess.DEVNULL, stderr=open(self.work / "swtpm.err", "ab"))
        deadline = time.monotonic() + 10
        while not sock.exists():
            if time.monotonic() > deadline or self.swtpm.poll() is not None:
                raise AssertionError("swtpm did not start: " + (self.work / "swtpm.err").read_text())
            time.sleep(0.05)
        return ["-chardev", f"socket,id=chrtpm,path={sock}", "-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
                "-device", "tpm-tis,tpmdev=tpm0"]

    def start(self):
        """Powers the node on. A reset by the guest (a reboot, a kernel panic) ends the QEMU
        process (-no-reboot) and the supervisor starts a new one at once: to the node that is a
        power cycle right after its reset, and QEMU 7.2 under TCG ran a guest at half speed after
        an in-process reset (66-83 s against 44 s from `systemctl reboot` to the next marker,
        docs/performance.md)."""
        assert self.proc is None
        self.off.clear()
        self.exit_code = None
        self._launch()
        threading.Thread(target=self._supervise, daemon=True).start()

    def _launch(self):
        tpm = self._start_swtpm() if self.tpm_state else []
        cmd = ["qemu-system-x86_64", "-machine", "q35", *accel(), "-cpu", "max", "-m", "1024",
               "-smp", os.environ.get("BALLAST_E2E_SMP", "2"), "-nodefaults", "-nographic", "-monitor", "none",
               "-qmp", f"unix:{self.qmp_sock},server=on,wait=off", "-no-reboot",
               "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF / 'OVMF_CODE_4M.fd'}",
               "-drive", f"if=pflash,format=raw,unit=1,file={self.vars}",
               "-drive", f"file={self.disk},format=raw,if=virtio,cache=unsafe",
               *[a for d in self.extra_disks for a in ("-drive", f"file={d},format=raw,if=virtio,cache=unsafe")],
               "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{self.port}-:22",
               "-device", "virtio-net-pci,netdev=n0,romfile=",
               # A new generation ID at every start: a resumed guest (resume()) reseeds its random
               # state instead of drawing what the saved node and its other copies draw.
               "-device", "vmgenid",
               # The console: logged (appended: one log across power cycles, so boots are
               # counted, not overwritten) whether or not anyone is connected to the socket
               # type() uses.
               "-chardev", f"socket,id=serial0,path={self.console},server=on,wait=off,"
                           f"logfile={self.log},logappend=on",
               "-serial", "chardev:serial0",
               *tpm]
        if self.incoming:
            cmd += ["-incoming", f"exec:cat {shlex.quote(str(self.incoming))}"]
            self.incoming = None
        self.log_offset = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab"):
            pass
        self.note("power on")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(self.work / "qemu.err", "ab"))

    def _supervise(self):
        """Restarts QEMU when the guest reset itself; marks the node off when it powered itself
        off (the kernel's "reboot: Power down" on the console) or QEMU failed."""
        while True:
            proc = self.proc
            rc = proc.wait()
            with self.lock:
                if self.proc is not proc:  # power_cut() took it
                    return
                if self.swtpm:
                    try:
                        self.swtpm.wait(timeout=30)  # --terminate: it ends with its QEMU
                    except subprocess.TimeoutExpired:
                        self.swtpm.kill()
                        self.swtpm.wait()
                    self.swtpm = None
                console = self.log.read_bytes()[self.log_offset:]
                if rc == 0 and b"reboot: Power down" not in console:
                    self.note("guest reset: new QEMU process")
                    try:
                        self._launch()
                        continue
                    except Exception as e:  # a waiter then fails at once, with the reason
                        self.note(f"restart failed: {e}")
                        rc = -1
                self.note("powered off" if rc == 0 else f"QEMU exited ({rc})")
                self.exit_code = rc
                self.proc = None
                self.off.set()
                return

    def power_cut(self):
        """Pulls the plug: no shutdown, no sync."""
        with self.lock:
            if self.proc:
                self.note("power cut")
                self.proc.kill()
                self.proc.wait()
                self.proc = None
            if self.swtpm:
                self.swtpm.kill()
                self.swtpm.wait()
                self.swtpm = None
            self.off.set()

    stop = power_cut

    def _wait_migration(self, timeout: float = 300):
        deadline = time.monotonic() + timeout
        while True:
            try:
                st = qmp(self.qmp_sock, "query-migrate")[0]
            except OSError:
                # Resuming, QEMU exits when the state does not fit its devices: say why.
                self.off.wait(35)
                raise AssertionError(f"QEMU exited ({self.exit_code}): "
                                     f"{(self.work / 'qemu.err').read_text()[-2000:]}") from None
            if st.get("status") == "completed":
                return
            assert st.get("status") not in ("failed", "cancelled") and time.monotonic() < deadline, \
                f"migration: {st}"
            time.sleep(0.2)

    def save(self, dest: Path):
        """Saves the running node whole into `dest` and powers it off: RAM and devices through
        QEMU's migration to a file (the TPM's volatile state travels in it: QEMU's tpm-emulator
        asks swtpm for it), the disks, firmware variables, swtpm's folder and the console log as
        they were at that instant. A scenario that needs a booted fresh node resumes it (resume())
        in seconds instead of booting one, about a minute under TCG."""
        dest.mkdir(parents=True)
        self.ssh("sync")
        qmp(self.qmp_sock, "stop")
        # QEMU reports completion before its `cat` has exited: the name appears only when the file
        # is whole.
        part, state = (shlex.quote(str(dest / n)) for n in ("state.part", "state.bin"))
        qmp(self.qmp_sock, {"execute": "migrate", "arguments": {"uri": f"exec:cat > {part} && mv {part} {state}"}})
        self._wait_migration()
        deadline = time.monotonic() + 60
        while not (dest / "state.bin").exists():
            assert time.monotonic() < deadline, "the saved state was never written whole"
            time.sleep(0.1)
        for i, d in enumerate([self.disk, *self.extra_disks]):
            subprocess.run(["cp", "--sparse=always", str(d), str(dest / f"disk{i}.img")], check=True)
        shutil.copy(self.vars, dest / "vars.fd")
        shutil.copytree(self.tpm_state, dest / "tpm")
        shutil.copy(self.log, dest / "serial.log")
        self.note(f"saved ({(dest / 'state.bin').stat().st_size >> 20} MiB of state)")
        self.power_cut()

    def resume(self, saved: Path) -> dict:
        """Makes this node the one save() left in `saved` (its own copies of the disks, variables,
        TPM and console log) and resumes it where it stood; the marker of its last boot."""
        assert self.proc is None and self.tpm_state
        disks = sorted(saved.glob("disk*.img"), key=lambda p: int(p.stem[4:]))
        assert (saved / "state.bin").exists() and disks, f"no saved node in {saved}"
        self.extra_disks = [self.work / f"{self.disk.stem}-disk{i}.img" for i in range(1, len(disks))]
        for src, dst in zip(disks, [self.disk, *self.extra_disks]):
            subprocess.run(["cp", "--sparse=always", str(src), str(dst)], check=True)
        shutil.copy(saved / "vars.fd", self.vars)
        shutil.rmtree(self.tpm_state)
        shutil.copytree(saved / "tpm", self.tpm_state)
        shutil.copy(saved / "serial.log", self.log)
        self.boots_seen = len(self.markers())
        self.incoming = saved / "state.bin"
        self.start()
        self._wait_migration()
        qmp(self.qmp_sock, "cont")  # saved while stopped: it comes back stopped
        self.wait_ssh()
        # Its clock stood still while it was saved: set it, as NTP would.
        self.ssh(f"date -s @{time.time():.3f} >/dev/null")
        self.note("resumed")
        return self.markers()[-1]

    def wait_poweroff(self, timeout: float = 300):
        """The guest powered itself off (resets on the way are power cycles, see start())."""
        if not self.off.wait(timeout):
            raise AssertionError(f"no power-off within {timeout} s; serial:\n{self.tail()}")
        assert self.exit_code == 0, f"QEMU exited ({self.exit_code}); serial:\n{self.tail()}"

    def note(self, what: str):
        with open(self.timeline, "a") as f:
            f.write(f"{time.monotonic() - self.t0:7.1f} {what}\n")

    # --- what the node says ------------------------------------------------------------------
    def serial(self) -> str:
        return self.log.read_bytes().decode("utf-8", "replace").replace("\r", "")

    def markers(self) -> list[dict]:
        """Every BALLAST-SMOKE line so far (one per boot), as dicts."""
        out = []
        for m in MARKER.finditer(self.serial()):
            out.append(dict(kv.split("=", 1) for kv in m.group(1).split()))
        return out

    def wait_boot(self, timeout: float = 300) -> dict:
        """Waits for the next boot's marker (ballast-smoke.service, after the boot assessment)."""
        want = self.boots_seen + 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ms = self.markers()
            if len(ms) >= want:
                self.boots_seen = len(ms)
                self.note(f"boot marker {want}: slot={ms[want - 1].get('slot')}")
                return ms[want - 1]
            if self.off.is_set():
                raise AssertionError(f"the node is off (QEMU exit {self.exit_code}); serial:\n{self.tail()}")
            time.sleep(0.5)
        raise AssertionError(f"no boot marker within {timeout} s; serial:\n{self.tail()}")

    def wait_serial(self, text: str, timeout: float = 300):
        """Waits for `text` on the console, in this boot's part of the log."""
        deadline = time.monotonic() + timeout
        while text not in self.log.read_bytes()[self.log_offset:].decode("utf-8", "replace"):
            if time.monotonic() > deadline or self.off.is_set():
                raise AssertionError(f"no {text!r} on the console within {timeout} s:\n{self.tail()}")
            time.sleep(0.5)

    def type(self, text: str):
        """Types on the serial console. Connects only for this: a client that stopped reading
        would stall the guest's console output."""
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.console))
            s.sendall(text.encode())
            time.sleep(0.5)

    def tail(self, n: int = 60) -> str:
        return "\n".join(self.serial().splitlines()[-n:])

    # --- commands ----------------------------------------------------------------------------
    def _ssh_cmd(self, command: str) -> list[str]:
        return ["ssh", "-q", "-i", str(self.key), "-p", str(self.port), "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3",
                "root@127.0.0.1", command]

    def ssh(self, command: str, check: bool = True, timeout: float = 120,
            input: str | None = None) -> subprocess.CompletedProcess:
        cmd = self._ssh_cmd(command)
        # Exit 255 is ssh's own failure (connection refused, dropped keep-alives on a loaded
        # host), never the command's: a command that must succeed gets two more tries.
        for attempt in range(3 if check else 1):
            try:
                t = time.monotonic()
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input)
                if time.monotonic() - t > 5:
                    self.note(f"ssh {time.monotonic() - t:.0f} s: {command[:80]}")
            except subprocess.TimeoutExpired as e:
                # A session a reboot cut can outlive the guest; report it as a failed command.
                r = subprocess.CompletedProcess(cmd, 124, str(e.stdout or ""), f"timed out after {timeout} s")
            if r.returncode != 255:
                break
            time.sleep(2)
        if check and r.returncode != 0:
            raise AssertionError(f"ssh {command!r}: exit {r.returncode}\n{r.stdout}\n{r.stderr}")
        return r

    def put(self, local: Path, remote: str):
        """Copies a file into the node (over ssh's stdin: the image has no sftp server)."""
        with open(local, "rb") as f:
            r = subprocess.run(self._ssh_cmd(f"cat > {remote}"), stdin=f, capture_output=True, timeout=600)
        assert r.returncode == 0, f"put {local} {remote}: exit {r.returncode}: {r.stderr.decode()}"

    def wait_ssh(self, timeout: float = 120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ssh("true", check=False, timeout=30).returncode == 0:
                return
            time.sleep(1)
        raise AssertionError(f"no ssh within {timeout} s; serial:\n{self.tail()}")

    def boot(self, timeout: float = 300) -> dict:
        """Starts the VM (if off), waits for its marker and ssh."""
        if self.proc is None:
            self.start()
        marker = self.wait_boot(timeout)
        self.wait_ssh()
        return marker

    def status(self) -> dict:
        return json.loads(self.ssh("agentctl status --json").stdout)

    def slots(self) -> dict:
        return {s["Slot"]: s for s in self.status()["Slots"]}

    def reboot(self, timeout: float = 300) -> dict:
        """A clean reboot from inside (systemctl reboot), then the next boot's marker."""
        self.ssh("systemctl reboot --no-block", check=False, timeout=30)
        marker = self.wait_boot(timeout)
        self.wait_ssh()
        return marker
