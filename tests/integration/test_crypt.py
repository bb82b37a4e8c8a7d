"""TPM2-sealed LUKS2 keys against a real swtpm (TCP) and LUKS2 headers on image files.

Interop both ways with systemd 252: our tokens open through systemd's libcryptsetup token plugin
and through tpm2-tools; systemd-cryptenroll's tokens open with ballast-agent unlock.
"""
import base64
import ctypes
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import need_tool, run_ok

PCR7_EXTEND = "a" * 64


def two_free_ports():
    """swtpm's TCTI reaches the control channel at port + 1."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    pytest.fail("no two consecutive free ports")


class Swtpm:
    def __init__(self, directory: Path):
        need_tool("swtpm", "swtpm")
        need_tool("tpm2_pcrextend", "tpm2-tools")
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = two_free_ports()
        self.tcti = f"swtpm:host=127.0.0.1,port={self.port}"
        self.start()
        # All-zero PCRs read as "uninitialized" to systemd: measure something first.
        self.extend(7)

    def start(self):
        self.proc = subprocess.Popen(
            ["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={self.dir}",
             "--server", f"type=tcp,port={self.port},bindaddr=127.0.0.1",
             "--ctrl", f"type=tcp,port={self.port + 1},bindaddr=127.0.0.1",
             "--flags", "not-need-init,startup-clear"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            pytest.fail("swtpm did not start")

    def reboot(self):
        """A power cycle: the same TPM (seeds kept), every PCR back to zero, PCR 7 measured."""
        self.stop()
        self.start()
        self.extend(7)

    def env(self):
        return dict(os.environ, TPM2TOOLS_TCTI=self.tcti)

    def tools(self, *args, **kw):
        return subprocess.run(list(args), capture_output=True, env=self.env(), **kw)

    def extend(self, pcr, value=PCR7_EXTEND):
        r = self.tools("tpm2_pcrextend", f"{pcr}:sha256={value}", text=True)
        assert r.returncode == 0, r.stderr

    def transient_handles(self):
        r = self.tools("tpm2_getcap", "handles-transient", text=True)
        assert r.returncode == 0, r.stderr
        return [line for line in r.stdout.splitlines() if line.strip()]

    def loaded_sessions(self):
        r = self.tools("tpm2_getcap", "handles-loaded-session", text=True)
        assert r.returncode == 0, r.stderr
        return [line for line in r.stdout.splitlines() if line.strip()]

    def flush_sessions(self):
        r = self.tools("tpm2_flushcontext", "-l", text=True)
        assert r.returncode == 0, r.stderr

    def lockout_counter(self):
        r = self.tools("tpm2_getcap", "properties-variable", text=True)
        m = re.search(r"TPM2_PT_LOCKOUT_COUNTER:\s*(0x[0-9a-fA-F]+|\d+)", r.stdout)
        return int(m.group(1), 0)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture
def tpm(tmp_path):
    t = Swtpm(tmp_path / "swtpm")
    yield t
    t.stop()


PASSPHRASE = "correct horse battery staple"


def make_volume(directory: Path):
    """A LUKS2 header on an image file with one passphrase keyslot (0), made by cryptsetup."""
    need_tool("cryptsetup", "cryptsetup-bin")
    img = directory / "persistent.img"
    with open(img, "wb") as f:
        f.truncate(32 << 20)
    key = directory / "passphrase"
    key.write_text(PASSPHRASE)
    run_ok(["cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2", "--pbkdf", "pbkdf2",
            "--pbkdf-force-iterations", "1000", "--key-file", str(key), str(img)])
    return img, key


@pytest.fixture
def volume(tmp_path):
    return make_volume(tmp_path)


def agentctl(bins, *args, env=None):
    e = dict(os.environ)
    for k in ("PIN", "NEWPIN", "PASSWORD", "INVOCATION_ID"):
        e.pop(k, None)
    e.update(env or {})
    return subprocess.run([bins["ctl"], *args], capture_output=True, text=True, env=e, timeout=120,
                          stdin=subprocess.DEVNULL)


def agent_unlock(bins, img, tpm_tcti, env=None, config=None, signature=None):
    e = dict(os.environ)
    for k in ("PIN", "PASSWORD", "INVOCATION_ID"):
        e.pop(k, None)
    e.update(env or {})
    cmd = [bins["agent"]]
    if config:
        cmd += ["--config", str(config)]
    cmd += ["unlock", "--device", str(img), "--tpm2-device", tpm_tcti, "--json"]
    if signature:
        cmd += ["--tpm2-signature", str(signature)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=120,
                       stdin=subprocess.DEVNULL)
    out = r.stdout.strip().splitlines()
    return r, (json.loads(out[-1]) if out else None)


def enroll(bins, img, tpm, *extra, env=None, key=None):
    args = ["encrypt", "enroll", "--device", str(img), "--tpm2-device", tpm.tcti, *extra]
    if key:
        args += ["--unlock-key-file", str(key)]
    return agentctl(bins, "--json", *args, env=env)


def status(bins, img, tpm):
    r = agentctl(bins, "--json", "encrypt", "status", "--device", str(img), "--tpm2-device",
                 tpm.tcti)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def tpm2_token(img):
    r = run_ok(["cryptsetup", "luksDump", "--dump-json-metadata", str(img)])
    tokens = json.loads(r.stdout)["tokens"]
    return {int(k): v for k, v in tokens.items() if v["type"] == "systemd-tpm2"}


def test_enroll_writes_systemd_252_token_and_unlocks(bins, tpm, volume):
    img, key = volume
    r = enroll(bins, img, tpm, key=key)
    assert r.returncode == 0, r.stderr
    e = json.loads(r.stdout)
    assert e["keyslot"] == 1 and not e["already"]

    (tid, token), = tpm2_token(img).items()
    assert set(token) == {"type", "keyslots", "tpm2-blob", "tpm2-pcrs", "tpm2-pcr-bank",
                          "tpm2-primary-alg", "tpm2-policy-hash", "tpm2-pin"}
    assert token["keyslots"] == ["1"] and token["tpm2-pcrs"] == [7]
    assert token["tpm2-pcr-bank"] == "sha256" and token["tpm2-primary-alg"] == "ecc"
    assert token["tpm2-pin"] is False
    dump = run_ok(["cryptsetup", "luksDump", str(img)]).stdout
    slot1 = dump.split("  1: luks2")[1].split("Digests:")[0]
    assert "PBKDF:      pbkdf2" in slot1 and "Hash:       sha512" in slot1 and "Iterations: 1000" in slot1

    # Same policy again: nothing added (systemd's "already enrolled").
    again = json.loads(enroll(bins, img, tpm, key=key).stdout)
    assert again["already"] and again["keyslot"] == 1

    s = status(bins, img, tpm)
    kinds = {k["keyslot"]: k["kind"] for k in s["keyslots"]}
    assert kinds == {0: "passphrase", 1: "tpm2"}
    t = [t for t in s["tokens"] if t["type"] == "systemd-tpm2"][0]
    assert t["policy_satisfied"] is True and t["pcrs"] == [7]
    assert s["tpm"]["lockout"]["in_lockout"] is False

    r, out = agent_unlock(bins, img, tpm.tcti)
    assert r.returncode == 0, r.stderr
    assert out["method"] == "tpm2" and out["keyslot"] == 1
    assert tpm.transient_handles() == []


def systemd_plugin_open(img, token_id, tcti, pin=None, signature=None):
    """systemd 252's token plugin, through libcryptsetup, as systemd-cryptsetup calls it."""
    lib = ctypes.CDLL("libcryptsetup.so.12")

    class Params(ctypes.Structure):  # struct systemd_tpm2_plugin_params (v252)
        _fields_ = [("search_pcr_mask", ctypes.c_uint32), ("device", ctypes.c_char_p),
                    ("signature_path", ctypes.c_char_p)]

    cd = ctypes.c_void_p()
    assert lib.crypt_init(ctypes.byref(cd), str(img).encode()) == 0
    try:
        assert lib.crypt_load(cd, b"LUKS2", None) == 0
        params = Params(0xFFFFFFFF, tcti.encode(), str(signature).encode() if signature else None)
        pin_b = pin.encode() if pin else None
        return lib.crypt_activate_by_token_pin(cd, None, b"systemd-tpm2", token_id, pin_b,
                                               len(pin_b) if pin_b else 0, ctypes.byref(params), 0)
    finally:
        lib.crypt_free(cd)


def test_systemd_plugin_and_tpm2_tools_open_our_token(bins, tpm, volume, tmp_path):
    img, key = volume
    assert enroll(bins, img, tpm, key=key).returncode == 0
    (tid, token), = tpm2_token(img).items()
    assert systemd_plugin_open(img, tid, tpm.tcti) == 1
    assert tpm.transient_handles() == []
    # Ballast writes tokens with libcryptsetup's external handlers off; re-imported by cryptsetup
    # with systemd's plugin on, the plugin's validation accepts the same JSON.
    exported = tmp_path / "token.json"
    exported.write_text(json.dumps(token))
    run_ok(["cryptsetup", "token", "remove", "--token-id", str(tid), str(img)])
    run_ok(["cryptsetup", "token", "import", "--json-file", str(exported), "--token-id", str(tid), str(img)])
    bad = dict(token, **{"tpm2-pcr-bank": "md5"})
    exported.write_text(json.dumps(bad))
    r = subprocess.run(["cryptsetup", "token", "import", "--json-file", str(exported), str(img)],
                       capture_output=True, text=True)
    assert r.returncode != 0  # the validation is really on
    assert systemd_plugin_open(img, tid, tpm.tcti) == 1

    # tpm2-tools: split the blob, recreate the ECC primary, load, unseal with the PCR policy.
    blob = base64.b64decode(token["tpm2-blob"])
    n = 2 + int.from_bytes(blob[:2], "big")
    (tmp_path / "priv").write_bytes(blob[:n])
    (tmp_path / "pub").write_bytes(blob[n:])
    d = str(tmp_path)
    for cmd in (["tpm2_createprimary", "-C", "o", "-g", "sha256", "-G", "ecc", "-c", f"{d}/p.ctx"],
                ["tpm2_flushcontext", "-t"],
                ["tpm2_load", "-C", f"{d}/p.ctx", "-u", f"{d}/pub", "-r", f"{d}/priv", "-c", f"{d}/o.ctx"],
                ["tpm2_flushcontext", "-t"]):
        r = tpm.tools(*cmd, text=True)
        assert r.returncode == 0, r.stderr
    r = tpm.tools("tpm2_unseal", "-c", f"{d}/o.ctx", "-p", "pcr:sha256:7")
    assert r.returncode == 0, r.stderr
    (tmp_path / "k").write_bytes(base64.b64encode(r.stdout))
    tpm.tools("tpm2_flushcontext", "-t")
    run_ok(["cryptsetup", "open", "--test-passphrase", "--key-slot", "1", str(img), "--key-file",
            str(tmp_path / "k")])


def test_systemd_cryptenroll_token_opens_with_ballast(bins, tpm, volume):
    need_tool("systemd-cryptenroll", "systemd")
    img, key = volume
    r = subprocess.run(["systemd-cryptenroll", f"--tpm2-device={tpm.tcti}", "--tpm2-pcrs=7",
                        str(img)], capture_output=True, text=True,
                       env=dict(os.environ, PASSWORD=PASSPHRASE), timeout=120)
    assert r.returncode == 0, r.stderr
    r, out = agent_unlock(bins, img, tpm.tcti)
    assert r.returncode == 0, r.stderr
    assert out["method"] == "tpm2"
    s = status(bins, img, tpm)
    assert [t["policy_satisfied"] for t in s["tokens"] if t["type"] == "systemd-tpm2"] == [True]


def tpm_token_and_recovery_key(bins, tpm, volume) -> tuple[Path, str]:
    """The volume with a PIN-less TPM2 token and a recovery key: (image, recovery key)."""
    img, key = volume
    assert enroll(bins, img, tpm, key=key).returncode == 0
    r = agentctl(bins, "--json", "encrypt", "recovery-key", "--device", str(img), "--tpm2-device",
                 tpm.tcti)
    assert r.returncode == 0, r.stderr
    rk = json.loads(r.stdout)["recovery_key"]
    assert re.fullmatch(r"([cbdefghijklnrtuv]{8}-){7}[cbdefghijklnrtuv]{8}", rk)
    return img, rk


def test_changed_pcr7_falls_back_to_recovery_key(bins, tpm, volume):
    img, rk = tpm_token_and_recovery_key(bins, tpm, volume)

    tpm.extend(7, "b" * 64)
    counter = tpm.lockout_counter()
    s = status(bins, img, tpm)
    assert [t["policy_satisfied"] for t in s["tokens"] if t["type"] == "systemd-tpm2"] == [False]
    r, out = agent_unlock(bins, img, tpm.tcti)
    assert r.returncode != 0
    assert "do not match the sealed policy" in r.stderr and "recovery key" in r.stderr
    assert out["ok"] is False
    assert tpm.lockout_counter() == counter  # a PCR mismatch never counts as an attack
    # The key as someone would type it off a sheet: upper case, no dashes.
    r, out = agent_unlock(bins, img, tpm.tcti, env={"PASSWORD": rk.replace("-", "").upper()})
    assert r.returncode == 0, r.stderr
    assert out["method"] == "recovery-key"
    assert rk not in r.stderr and rk not in r.stdout  # never logged

    # reseal binds to the new PCR 7 and drops the token it replaces.
    keyfile = img.parent / "rk"
    keyfile.write_text(rk + "\n")
    r = agentctl(bins, "--json", "encrypt", "reseal", "--device", str(img), "--tpm2-device",
                 tpm.tcti, "--unlock-key-file", str(keyfile))
    assert r.returncode == 0, r.stderr
    s = status(bins, img, tpm)
    assert [t["policy_satisfied"] for t in s["tokens"] if t["type"] == "systemd-tpm2"] == [True]
    r, out = agent_unlock(bins, img, tpm.tcti)
    assert r.returncode == 0 and out["method"] == "tpm2"


def test_no_tpm_names_it_and_the_recovery_key_opens(bins, tpm, volume, tmp_path):
    """The node's TPM is gone (or the board was swapped): the default device is missing, which
    the console names before it asks for the recovery key."""
    if os.path.exists("/dev/tpmrm0"):
        pytest.skip("this host has a TPM: the default device would be found")
    img, rk = tpm_token_and_recovery_key(bins, tpm, volume)
    settings = tmp_path / "agent.yaml"
    settings.write_text("log_level: info\n")  # no tpm.device: the kernel's resource manager
    r, out = agent_unlock(bins, img, "", config=settings)
    assert r.returncode != 0 and out["ok"] is False
    assert "no TPM2 found (no /dev/tpmrm0)" in r.stderr and "enter the recovery key" in r.stderr
    r, out = agent_unlock(bins, img, "", config=settings, env={"PASSWORD": rk})
    assert r.returncode == 0, r.stderr
    assert out["method"] == "recovery-key"


def test_boot_waits_a_bounded_time_for_the_recovery_key(bins, tpm, volume, tmp_path):
    """At boot (a systemd unit: the password agents answer) nobody may be there to type the
    recovery key: tpm.recovery_key_timeout bounds the wait, then the unlock fails and the boot
    goes on for recovery instead of hanging."""
    need_tool("systemd-ask-password", "systemd")
    img, rk = tpm_token_and_recovery_key(bins, tpm, volume)
    settings = tmp_path / "agent.yaml"
    settings.write_text("tpm:\n  recovery_key_timeout: 2s\n")
    t0 = time.monotonic()
    r, out = agent_unlock(bins, img, "swtpm:host=127.0.0.1,port=1", config=settings,
                          env={"INVOCATION_ID": "0" * 32})
    took = time.monotonic() - t0
    assert r.returncode != 0 and out["ok"] is False, r.stderr
    assert "nobody answered within 2 s" in out["error"], out
    assert took < 60, took  # bounded (the TCTI's own retries included), not for ever
    bad = tmp_path / "bad.yaml"
    bad.write_text("tpm:\n  recovery_key_timeout: soon\n")
    r, out = agent_unlock(bins, img, "", config=bad)
    assert r.returncode != 0 and "recovery_key_timeout" in r.stderr + r.stdout, r.stderr


def test_pin_token(bins, tpm, volume):
    img, key = volume
    r = enroll(bins, img, tpm, "--pin", key=key, env={"NEWPIN": "2468"})
    assert r.returncode == 0, r.stderr
    (tid, token), = tpm2_token(img).items()
    assert token["tpm2-pin"] is True
    assert systemd_plugin_open(img, tid, tpm.tcti, pin="2468") == 1

    before = tpm.lockout_counter()
    r, out = agent_unlock(bins, img, tpm.tcti, env={"PIN": "1111"})
    assert r.returncode != 0 and "wrong PIN" in r.stderr
    assert tpm.lockout_counter() == before + 1  # a wrong PIN counts against the TPM
    r, out = agent_unlock(bins, img, tpm.tcti, env={"PIN": "2468"})
    assert r.returncode == 0, r.stderr
    assert out["method"] == "tpm2"
    # Without a PIN the token is skipped, and nothing counts against the TPM.
    mid = tpm.lockout_counter()
    r, out = agent_unlock(bins, img, tpm.tcti)
    assert r.returncode != 0 and "needs a PIN" in r.stderr
    assert tpm.lockout_counter() == mid


def test_lockout_is_named_and_the_recovery_key_still_opens(bins, tpm, volume):
    img, key = volume
    assert enroll(bins, img, tpm, "--pin", key=key, env={"NEWPIN": "9999"}).returncode == 0
    kf = img.parent / "rk"
    r = agentctl(bins, "--json", "encrypt", "recovery-key", "--device", str(img),
                 "--unlock-key-file", str(key), "--tpm2-device", tpm.tcti)
    kf.write_text(json.loads(r.stdout)["recovery_key"])
    # Lock the TPM out with wrong PINs (swtpm allows 3).
    for _ in range(3):
        r, out = agent_unlock(bins, img, tpm.tcti, env={"PIN": "0000"})
        assert "wrong PIN" in r.stderr
    s = status(bins, img, tpm)
    assert s["tpm"]["lockout"] == {"in_lockout": True, "failed_tries": 3, "max_tries": 3,
                                   "recovery_seconds": 1000}
    # Now even the right PIN is refused, and the message says why.
    r, out = agent_unlock(bins, img, tpm.tcti, env={"PIN": "9999"})
    assert r.returncode != 0 and "dictionary-attack lockout" in r.stderr
    # In lockout the TPM refuses systemd 252's primary key too, so every TPM token fails;
    # the recovery key still opens the volume.
    r, out = agent_unlock(bins, img, tpm.tcti, env={"PASSWORD": kf.read_text()})
    assert r.returncode == 0, r.stderr
    assert out["method"] == "recovery-key"


def test_recovery_key_and_wipe_slot_rules(bins, tpm, volume):
    img, key = volume
    r = agentctl(bins, "--json", "encrypt", "recovery-key", "--device", str(img),
                 "--unlock-key-file", str(key), "--tpm2-device", tpm.tcti)
    assert r.returncode == 0, r.stderr
    rk = json.loads(r.stdout)
    assert rk["keyslot"] == 1
    dump = json.loads(run_ok(["cryptsetup", "luksDump", "--dump-json-metadata", str(img)]).stdout)
    assert {"type": "systemd-recovery", "keyslots": ["1"]} in dump["tokens"].values()
    kf = img.parent / "rk"
    kf.write_text(rk["recovery_key"])
    run_ok(["cryptsetup", "open", "--test-passphrase", str(img), "--key-file", str(kf)])
    assert enroll(bins, img, tpm, key=kf).returncode == 0  # the recovery key unlocks for enroll

    wipe = lambda n: agentctl(bins, "encrypt", "wipe-slot", str(n), "--device", str(img))
    assert wipe(0).returncode == 0  # the passphrase: a recovery slot remains
    r = wipe(1)
    assert r.returncode == 1 and "last recovery slot" in r.stderr
    r = wipe(7)
    assert r.returncode == 1 and "keyslot 7 is not in use" in r.stderr
    assert wipe(2).returncode == 0  # the TPM slot and its token
    assert tpm2_token(img) == {}
    s = status(bins, img, tpm)
    assert [k["kind"] for k in s["keyslots"]] == ["recovery"]


def test_many_unseals_leak_no_handles(bins, tpm, volume):
    img, key = volume
    assert enroll(bins, img, tpm, key=key).returncode == 0
    for _ in range(12):
        r, out = agent_unlock(bins, img, tpm.tcti)
        assert r.returncode == 0, r.stderr
    # (systemd 252's plugin leaves an HMAC session behind per unseal: 3 and swtpm is full.)
    assert tpm.transient_handles() == [] and tpm.loaded_sessions() == []
    # The count a boot pays for: startup, primary, load, 2 sessions, policy, unseal, flushes.
    assert out["tpm_commands"] < 16


def test_bad_inputs(bins, tpm, volume, tmp_path):
    img, key = volume
    plain = tmp_path / "plain.img"
    plain.write_bytes(b"\0" * (1 << 20))
    r = agentctl(bins, "encrypt", "status", "--device", str(plain))
    assert r.returncode == 1 and "no LUKS2 header" in r.stderr
    r = enroll(bins, img, tpm, "--pcrs", "7,99", key=key)
    assert r.returncode == 1 and "--pcrs" in r.stderr and "99" in r.stderr
    r = enroll(bins, img, tpm, "--pcr-bank", "md5", key=key)
    assert r.returncode == 1 and "--pcr-bank" in r.stderr
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase")
    r = enroll(bins, img, tpm, key=wrong)
    assert r.returncode == 4 and "no keyslot opens" in r.stderr
    r = agentctl(bins, "encrypt", "enroll", "--device", str(img), "--tpm2-device", "nonsense",
                 "--unlock-key-file", str(key))
    assert r.returncode == 1 and "TCTI" in r.stderr
    r = agentctl(bins, "encrypt", "enroll", "--device", str(img), "--tpm2-device",
                 "swtpm:host=127.0.0.1,port=1", "--unlock-key-file", str(key))
    assert r.returncode == 3 and "cannot connect" in r.stderr
    # Nothing was added by any of these.
    assert tpm2_token(img) == {}
    assert len(json.loads(run_ok(["cryptsetup", "luksDump", "--dump-json-metadata",
                                  str(img)]).stdout)["keyslots"]) == 1


def test_reseal_after_a_tpm_clear(bins, tpm, volume):
    """The policy hash does not name the TPM: after a clear the old token has the same hash but is
    dead. Enrolling again must not say "already enrolled"; the dead keyslot goes."""
    img, key = volume
    assert enroll(bins, img, tpm, key=key).returncode == 0
    (old_id, old), = tpm2_token(img).items()
    r = tpm.tools("tpm2_clear", text=True)
    assert r.returncode == 0, r.stderr
    r, out = agent_unlock(bins, img, tpm.tcti)
    assert r.returncode != 0
    r = agentctl(bins, "--json", "encrypt", "reseal", "--device", str(img), "--tpm2-device", tpm.tcti,
                 "--unlock-key-file", str(key))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["already"] is False
    (new_id, new), = tpm2_token(img).items()
    assert new["tpm2-policy-hash"] == old["tpm2-policy-hash"] and new["tpm2-blob"] != old["tpm2-blob"]
    r, out = agent_unlock(bins, img, tpm.tcti)
    assert r.returncode == 0 and out["method"] == "tpm2", r.stderr


def test_recovery_key_escrow(bins, tpm, volume, tmp_path):
    img, key = volume
    root = tmp_path / "root"
    (root / "etc/ballast").mkdir(parents=True)
    settings = root / "etc/ballast/agent.yaml"
    escrow = tmp_path / "escrow"
    settings.write_text(f"tpm:\n  recovery_key_command: cat > {escrow}\n")
    rk = lambda *extra: agentctl(bins, "--root", str(root), "--json", "encrypt", "recovery-key",
                                 "--device", str(img), "--unlock-key-file", str(key), *extra)
    r = rk()
    assert r.returncode == 0, r.stderr
    first = json.loads(r.stdout)["recovery_key"]
    assert escrow.read_text() == first + "\n"
    # The escrow command fails: the new key is still shown, and --replace keeps the old one.
    settings.write_text("tpm:\n  recovery_key_command: exit 3\n")
    r = rk("--replace")
    assert r.returncode == 1 and "old keys are kept" in r.stderr and "exit 3" in r.stderr
    second = json.loads(r.stdout)["recovery_key"]
    kinds = [k["kind"] for k in status(bins, img, tpm)["keyslots"]]
    assert kinds.count("recovery") == 2
    # It works again: --replace leaves only the newest.
    settings.write_text(f"tpm:\n  recovery_key_command: cat > {escrow}\n")
    r = rk("--replace")
    assert r.returncode == 0, r.stderr
    third = json.loads(r.stdout)["recovery_key"]
    assert escrow.read_text() == third + "\n"
    kinds = [k["kind"] for k in status(bins, img, tpm)["keyslots"]]
    assert kinds.count("recovery") == 1
    for old in (first, second):
        (tmp_path / "k").write_text(old)
        assert subprocess.run(["cryptsetup", "open", "--test-passphrase", str(img), "--key-file",
                               str(tmp_path / "k")], capture_output=True).returncode != 0


def test_a_recovery_key_made_at_boot_goes_to_the_escrow_then_is_wiped(bins, tmp_path):
    """ballast-agent escrow (ballast-escrow.service): the key a reset in the initramfs made waits
    in /run for tpm.recovery_key_command; handed on, it is wiped; a failing command keeps it for
    another try, and the key never reaches the output."""
    root = tmp_path / "root"
    (root / "etc/ballast").mkdir(parents=True)
    pending = root / "run/ballast/escrow/recovery-key"
    pending.parent.mkdir(parents=True, mode=0o700)
    key = "12345678-12345678-12345678-12345678-12345678-12345678-12345678-12345678"
    pending.write_text(key + "\n")
    settings = root / "etc/ballast/agent.yaml"
    escrow = tmp_path / "escrow"

    def run():
        return subprocess.run([bins["agent"], "--root", str(root), "--config", str(settings), "escrow", "--json"],
                              capture_output=True, text=True, timeout=60)

    settings.write_text("tpm:\n  pcrs: '7'\n")
    r = run()
    assert r.returncode == 2 and "sets no tpm.recovery_key_command" in r.stdout + r.stderr, r.stdout + r.stderr
    settings.write_text("tpm:\n  recovery_key_command: exit 3\n")
    r = run()
    assert r.returncode == 1 and "exit 3" in r.stdout and key not in r.stdout + r.stderr, r.stdout + r.stderr
    assert pending.read_text() == key + "\n"
    settings.write_text(f"tpm:\n  recovery_key_command: cat > {escrow}\n")
    r = run()
    assert r.returncode == 0 and json.loads(r.stdout)["escrowed"], r.stdout + r.stderr
    assert key not in r.stdout + r.stderr
    assert escrow.read_text() == key + "\n" and not pending.exists()
    r = run()
    assert r.returncode == 0 and not json.loads(r.stdout)["escrowed"], r.stdout


# Signed PCR 11 policies (systemd 252's tpm2_pubkey): the key pair, stand-in UKI sections and
# what systemd-measure 252 made of them (tests/data/pcr-signature/README.md).
PCRSIG = Path(__file__).resolve().parents[1] / "data" / "pcr-signature"
MEASURE = "/lib/systemd/systemd-measure"
# systemd-stub 252 measures these sections, in this order, when the UKI has them.
STUB_SECTIONS = (".linux", ".osrel", ".cmdline", ".initrd", ".splash", ".dtb", ".pcrpkey")


def uki_sections(cmdline: bytes = None) -> dict:
    s = {name: (PCRSIG / name[1:]).read_bytes() for name in (".linux", ".osrel", ".cmdline",
                                                               ".initrd")}
    s[".pcrpkey"] = (PCRSIG / "public.pem").read_bytes()
    if cmdline is not None:
        s[".cmdline"] = cmdline
    return s


def boot_uki(tpm, sections: dict, phases=("enter-initrd",)):
    """PCR 11 as systemd-stub 252 and systemd-pcrphase leave it: for each section, the hash of
    its name with the NUL, then of its bytes; then each phase word (no NUL)."""
    for name in STUB_SECTIONS:
        if name in sections:
            tpm.extend(11, hashlib.sha256(name.encode() + b"\0").hexdigest())
            tpm.extend(11, hashlib.sha256(sections[name]).hexdigest())
    for phase in phases:
        tpm.extend(11, hashlib.sha256(phase.encode()).hexdigest())


def pcr(tpm, index):
    r = tpm.tools("tpm2_pcrread", f"sha256:{index}", text=True)
    assert r.returncode == 0, r.stderr
    return re.search(r"0x([0-9A-F]{64})", r.stdout).group(1).lower()


def measure_sign(tpm, sections: dict, out: Path, phase="enter-initrd"):
    """systemd-measure 252 sign (it needs a TPM for a trial session: the swtpm)."""
    need_tool("tpm2_pcrread", "tpm2-tools")
    args = [MEASURE, "sign", "--bank=sha256", f"--private-key={PCRSIG / 'private.pem'}",
            f"--public-key={PCRSIG / 'public.pem'}", f"--tpm2-device={tpm.tcti}",
            f"--phase={phase}"]
    for name, data in sections.items():
        f = out.parent / (out.name + name)
        f.write_bytes(data)
        args.append(f"--{name[1:]}={f}")
    r = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out.write_text(r.stdout)
    return out


def test_systemd_cryptenroll_signed_token_opens_with_ballast(bins, tpm, volume, tmp_path):
    """A token systemd-cryptenroll 252 binds to PCR 7 and to PCR 11 signed by a key opens with
    Ballast at the boot the signature is for, and not after the initrd (leave-initrd)."""
    need_tool("systemd-cryptenroll", "systemd")
    img, key = volume
    sections = uki_sections()
    boot_uki(tpm, sections)
    # The offline prediction systemd-measure made for the fixture, bit for bit.
    assert pcr(tpm, 11) == "e2741a7962ac5be619e5e868ee534866b6adff783ed6d5ffad6da89801a08473"
    sig = PCRSIG / "enter-initrd.sig.json"
    r = subprocess.run(["systemd-cryptenroll", f"--tpm2-device={tpm.tcti}", "--tpm2-pcrs=7",
                        f"--tpm2-public-key={PCRSIG / 'public.pem'}", "--tpm2-public-key-pcrs=11",
                        f"--tpm2-signature={sig}", str(img)], capture_output=True, text=True,
                       env=dict(os.environ, PASSWORD=PASSPHRASE), timeout=120)
    assert r.returncode == 0, r.stderr
    (tid, token), = tpm2_token(img).items()
    assert token["tpm2_pubkey_pcrs"] == [11] and token["tpm2-pcrs"] == [7]
    assert base64.b64decode(token["tpm2_pubkey"]) == (PCRSIG / "public.pem").read_bytes()

    r, out = agent_unlock(bins, img, tpm.tcti, signature=sig)
    assert r.returncode == 0, r.stderr
    assert out["method"] == "tpm2"
    assert tpm.transient_handles() == []

    s = status(bins, img, tpm)
    t, = [t for t in s["tokens"] if t["type"] == "systemd-tpm2"]
    assert t["signed_pcrs"] == [11]
    assert t["pubkey_fingerprint"] == json.loads(sig.read_text())["sha256"][0]["pkfp"]
    # Predicted offline from PCR 7 and the key's TPM name as systemd 252 spells it.
    assert t["literal_pcrs_satisfied"] is True and "policy_satisfied" not in t

    # No signature file: the reason names it, and the recovery key is asked for.
    empty = tmp_path / "none.json"
    empty.write_text("{}")
    r, out = agent_unlock(bins, img, tpm.tcti, signature=empty)
    assert r.returncode != 0 and "no PCR signature by this key" in r.stderr, r.stderr
    # A damaged signature file is named too.
    bad = tmp_path / "bad.json"
    bad.write_text('{"sha256":[{"pcrs":[11]}]}')
    r, out = agent_unlock(bins, img, tpm.tcti, signature=bad)
    assert r.returncode != 0 and "sha256[0].pkfp: missing" in r.stderr, r.stderr

    # After the initrd (pcrphase's leave-initrd) the running system cannot unseal.
    tpm.extend(11, hashlib.sha256(b"leave-initrd").hexdigest())
    r, out = agent_unlock(bins, img, tpm.tcti, signature=sig)
    assert r.returncode != 0 and "no PCR signature by this key" in r.stderr, r.stderr


def test_ballast_signed_token_survives_a_new_uki_without_reseal(bins, tpm, volume, tmp_path):
    """agentctl enrolls PCR 7 + signed PCR 11 in systemd 252's format; systemd's own token plugin
    opens it. A "new release" (another command line, so another PCR 11) opens with its own
    signature after a reboot, with the token unchanged; the old signature does not."""
    need_tool("tpm2_pcrread", "tpm2-tools")
    img, key = volume
    v1 = uki_sections()
    boot_uki(tpm, v1)
    sig1 = PCRSIG / "enter-initrd.sig.json"
    r = enroll(bins, img, tpm, "--tpm2-public-key", str(PCRSIG / "public.pem"),
               "--tpm2-signature", str(sig1), key=key)
    assert r.returncode == 0, r.stderr
    e = json.loads(r.stdout)
    assert e["tested"] is True and not e["already"]
    (tid, token), = tpm2_token(img).items()
    assert list(token) == ["type", "keyslots", "tpm2-blob", "tpm2-pcrs", "tpm2-pcr-bank",
                           "tpm2-primary-alg", "tpm2-policy-hash", "tpm2-pin",
                           "tpm2_pubkey_pcrs", "tpm2_pubkey"]
    assert token["tpm2_pubkey_pcrs"] == [11] and token["tpm2-pcrs"] == [7]
    assert tpm.loaded_sessions() == [] and tpm.transient_handles() == []
    # systemd 252's plugin leaves a policy session loaded after a signed unseal (a resource
    # manager would clean it up; swtpm's raw socket has none): flushed after each call here.
    assert systemd_plugin_open(img, tid, tpm.tcti, signature=sig1) == 1
    tpm.flush_sessions()
    assert systemd_plugin_open(img, tid, tpm.tcti) < 0  # no signature: refused
    tpm.flush_sessions()
    before = run_ok(["cryptsetup", "token", "export", "--token-id", str(tid), str(img)]).stdout

    # The same enrollment again is "already enrolled" (same key, same PCRs).
    again = enroll(bins, img, tpm, "--tpm2-public-key", str(PCRSIG / "public.pem"),
                   "--tpm2-signature", str(sig1), key=key)
    assert json.loads(again.stdout)["already"] is True

    # Release 2: a new command line (a new root hash), its UKI built and its PCR 11 signed by
    # agentctl uki build with the same key; the node gets the UKI's .pcrsig as the stub hands it.
    v2 = uki_sections(cmdline=b"ballast.roothash=11 ro quiet\n")
    cmdline2 = tmp_path / "cmdline2"
    cmdline2.write_bytes(v2[".cmdline"])
    uki2 = tmp_path / "v2.efi"
    r = agentctl(bins, "uki", "build", "--linux", str(PCRSIG / "linux"), "--initrd",
                 str(PCRSIG / "initrd"), "--cmdline", str(cmdline2), "--os-release",
                 str(PCRSIG / "osrel"), "--pcr-private-key", str(PCRSIG / "private.pem"),
                 "--pcr-public-key", str(PCRSIG / "public.pem"), "-o", str(uki2))
    assert r.returncode == 0, r.stderr
    sig2 = tmp_path / "v2.sig.json"
    run_ok(["objcopy", "-O", "binary", "--only-section", ".pcrsig", str(uki2), str(sig2)])
    # systemd-measure signs the same value the same way.
    assert sig2.read_text() == measure_sign(tpm, v2, tmp_path / "v2.measure.json").read_text()
    tpm.reboot()
    boot_uki(tpm, v2)
    r, out = agent_unlock(bins, img, tpm.tcti, signature=sig2)
    assert r.returncode == 0, r.stderr
    assert out["method"] == "tpm2"
    assert tpm.loaded_sessions() == [] and tpm.transient_handles() == []
    assert systemd_plugin_open(img, tid, tpm.tcti, signature=sig2) == 1
    tpm.flush_sessions()
    r, out = agent_unlock(bins, img, tpm.tcti, signature=sig1)
    assert r.returncode != 0 and "no PCR signature by this key" in r.stderr
    assert tpm.loaded_sessions() == [] and tpm.transient_handles() == []
    after = run_ok(["cryptsetup", "token", "export", "--token-id", str(tid), str(img)]).stdout
    assert after == before  # no reseal

    # Secure Boot state changed (PCR 7): the signature is not enough.
    tpm.extend(7, "c" * 64)
    r, out = agent_unlock(bins, img, tpm.tcti, signature=sig2)
    assert r.returncode != 0 and "do not match the sealed policy" in r.stderr, r.stderr
    t, = [t for t in status(bins, img, tpm)["tokens"] if t["type"] == "systemd-tpm2"]
    assert t["literal_pcrs_satisfied"] is False
    assert tpm.loaded_sessions() == [] and tpm.transient_handles() == []


def test_signed_enrollment_errors(bins, tpm, volume, tmp_path):
    img, key = volume
    boot_uki(tpm, uki_sections())
    r = enroll(bins, img, tpm, "--tpm2-public-key", str(PCRSIG / "private.pem"), key=key)
    assert r.returncode != 0 and "--tpm2-public-key" in r.stderr and "not a PEM public key" in r.stderr
    both = tmp_path / "both.pem"
    both.write_text((PCRSIG / "private.pem").read_text() + (PCRSIG / "public.pem").read_text())
    r = enroll(bins, img, tpm, "--tpm2-public-key", str(both), key=key)
    assert r.returncode != 0 and "one BEGIN PUBLIC KEY block and nothing else" in r.stderr
    r = enroll(bins, img, tpm, "--tpm2-public-key", str(tmp_path / "missing.pem"), key=key)
    assert r.returncode != 0 and "missing.pem" in r.stderr
    r = enroll(bins, img, tpm, "--tpm2-public-key-pcrs", "11", key=key)
    assert r.returncode != 0 and "needs --tpm2-public-key" in r.stderr
    r = enroll(bins, img, tpm, "--tpm2-public-key", str(PCRSIG / "public.pem"),
               "--tpm2-public-key-pcrs", "25", key=key)
    assert r.returncode != 0 and "--tpm2-public-key-pcrs" in r.stderr
    bad = tmp_path / "sig.json"
    bad.write_text("[]")
    r = enroll(bins, img, tpm, "--tpm2-public-key", str(PCRSIG / "public.pem"),
               "--tpm2-signature", str(bad), key=key)
    assert r.returncode != 0 and "sig.json: not a JSON object" in r.stderr
    assert tpm2_token(img) == {}  # nothing was enrolled by any of these
    # Without a signature for the current PCR 11 the token is enrolled, untested, and says so.
    r = enroll(bins, img, tpm, "--tpm2-public-key", str(PCRSIG / "public.pem"), key=key)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["tested"] is False
    r = agentctl(bins, "encrypt", "enroll", "--device", str(img), "--tpm2-device", tpm.tcti,
                 "--tpm2-public-key", str(PCRSIG / "public.pem"), "--unlock-key-file", str(key))
    assert r.returncode == 0 and "already enrolled" in r.stdout, r.stderr
    # Other signed PCRs are another token (PolicyAuthorize alone would hash the same).
    r = enroll(bins, img, tpm, "--tpm2-public-key", str(PCRSIG / "public.pem"),
               "--tpm2-public-key-pcrs", "11,12", key=key)
    assert r.returncode == 0 and json.loads(r.stdout)["already"] is False, r.stderr
    # A damaged signature file in the way does not stop commands that need no signature.
    r = agentctl(bins, "--json", "encrypt", "status", "--device", str(img), "--tpm2-device",
                 tpm.tcti, "--tpm2-signature", str(bad))
    assert r.returncode == 0, r.stderr
