"""Boot control: overlay/grub/grub.cfg, run by a GRUB script interpreter, must decide exactly as
the C++ state machine on every state, and the two-copy protocol must survive a power cut at
every sector write (ab-update.md I4, I6)."""
import base64
import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import build_dir

TOP = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TOP / "tests" / "integration" / "helpers"))
import grubsim  # noqa: E402

CFG = grubsim.compile_cfg((TOP / "overlay" / "grub" / "grub.cfg").read_text())
E1, E2 = "/grub/env1/grubenv", "/grub/env2/grubenv"


def boot_tool(*args, stdin=None):
    r = subprocess.run([str(build_dir() / "tests" / "boot-tool"), *args], input=stdin, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return [json.loads(l) for l in r.stdout.splitlines()]


def state(order="A B", a=(1, 0, 0), b=(0, 0, 0), last_good="A", va="1", vb="2", lock="0"):
    return {"ballast_lock": lock, "ballast_order": order,
            "ballast_A_ok": str(a[0]), "ballast_A_trial": str(a[1]), "ballast_A_tries": str(a[2]), "ballast_A_version": va,
            "ballast_B_ok": str(b[0]), "ballast_B_trial": str(b[1]), "ballast_B_tries": str(b[2]), "ballast_B_version": vb,
            "ballast_last_good": last_good, "ballast_reset": "0", "ballast_next": "0"}


def grub_boot(env1, env2):
    files = {E1: env1, E2: env2}
    g, linux = grubsim.boot(CFG, files)
    slot = "A" if "BALLAST_A" in linux else "B" if "BALLAST_B" in linux else None
    assert slot and f"ballast.slot={slot.lower()}" in linux and f"(hd0,gpt{3 if slot == 'A' else 4})/boot/vmlinuz" in linux, linux
    return slot, files, g


def vars_of(block):
    return dict(grubsim.env_parse(block))


def all_states():
    for order, lg in itertools.product(("A B", "B A"), ("", "A", "B")):
        for a in itertools.product((0, 1), (0, 1), (0, 1, 2, 9)):
            for b in itertools.product((0, 1), (0, 1), (0, 1, 2, 9)):
                if not a[1] and a[2] or not b[1] and b[2]:
                    continue  # tries only matter on trial; the agent keeps them 0 otherwise
                yield state(order, a, b, lg)


def test_grub_cfg_decides_like_the_state_machine_on_every_state():
    states = list(all_states())
    results = boot_tool("decide", stdin="".join(json.dumps(s) + "\n" for s in states))
    assert len(results) == len(states) > 500
    for s, want in zip(states, results):
        block = base64.b64decode(want["env"])
        slot, files, g = grub_boot(block, block)
        assert slot == want["slot"], (s, g.log)
        after = base64.b64decode(want["after"])
        if want["saved"]:
            assert vars_of(files[E1]) == vars_of(after) == vars_of(files[E2]), s
        else:
            assert files[E1] == block and files[E2] == block, s  # nothing written (I4)


def test_a_committed_system_never_changes_slots():
    block = base64.b64decode(boot_tool("decide", stdin=json.dumps(state("B A", (1, 0, 0), (1, 0, 0), "B")) + "\n")[0]["env"])
    files = {E1: block, E2: block}
    for _ in range(10):
        g, linux = grubsim.boot(CFG, files)
        assert "BALLAST_B" in linux and not any(l.startswith("save_env") for l in g.log)


def test_trial_counts_down_then_falls_back():
    block = base64.b64decode(boot_tool("decide", stdin=json.dumps(state("B A", (1, 0, 0), (1, 1, 3), "A")) + "\n")[0]["env"])
    files = {E1: block, E2: block}
    seen = []
    for _ in range(5):
        g, linux = grubsim.boot(CFG, files)
        seen.append("B" if "BALLAST_B" in linux else "A")
    assert seen == ["B", "B", "B", "A", "A"]
    assert vars_of(files[E1])["ballast_B_tries"] == "0"


def test_grub_keeps_a_reset_in_progress_and_range_checks_it():
    s = state("B A", (1, 0, 0), (1, 1, 3), "A")
    s["ballast_reset"] = "3"
    block = grubsim.env_serialize(list(s.items()))
    slot, files, g = grub_boot(block, block)
    assert slot == "B" and vars_of(files[E1])["ballast_reset"] == vars_of(files[E2])["ballast_reset"] == "3"
    for bad in ("x", "9", "b", "f"):  # not a digit boot/state.cpp writes
        s["ballast_reset"] = bad
        block = grubsim.env_serialize(list(s.items()))
        slot, files, g = grub_boot(block, block)
        assert vars_of(files[E1])["ballast_reset"] == "0", bad


def test_recovery_and_reset_entries():
    """The hidden menu's entries: recovery boots the last good slot with ballast.recovery and
    never counts a try; the resets add ballast.reset to the slot chosen. GRUB's own parser takes
    the file (grub-script-check)."""
    if shutil.which("grub-script-check"):
        r = subprocess.run(["grub-script-check", str(TOP / "overlay" / "grub" / "grub.cfg")],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
    # B on trial is chosen by default; recovery takes A, the last good one.
    s = state("B A", (1, 0, 0), (1, 1, 3), "A")
    block = grubsim.env_serialize(list(s.items()))
    files = {E1: block, E2: block}
    g, linux = grubsim.boot(CFG, files, entry="Ballast recovery")
    assert [m[0] for m in g.menu][1] == ["Ballast recovery (slot A)", "--hotkey=r"]
    assert "root=PARTLABEL=BALLAST_A ballast.slot=a" in linux and "ballast.recovery" in linux, linux
    assert "(hd0,gpt3)/boot/vmlinuz" in linux
    for title, word in (("Ballast factory reset: wipe persistent (", "ballast.reset "),
                        ("Ballast factory reset: wipe persistent and OEM", "ballast.reset=oem")):
        files = {E1: block, E2: block}
        g, linux = grubsim.boot(CFG, files, entry=title)
        assert "root=PARTLABEL=BALLAST_B ballast.slot=b" in linux and word in linux + " ", linux
    # No last good slot: recovery takes the slot chosen.
    s = state("B A", (0, 0, 0), (1, 0, 0), "")
    block = grubsim.env_serialize(list(s.items()))
    g, linux = grubsim.boot(CFG, {E1: block, E2: block}, entry="Ballast recovery")
    assert "root=PARTLABEL=BALLAST_B ballast.slot=b" in linux and "(hd0,gpt4)" in linux, linux


def test_recovery_once():
    """ballast_next=r: the recovery entry boots this once (the decision before it is made and
    saved as ever), and the saved state clears it; boot-tool decides the same."""
    s = state("A B", (1, 0, 0), (1, 0, 0), "B")
    s["ballast_next"] = "r"
    want = boot_tool("decide", stdin=json.dumps(s) + "\n")[0]
    assert want["slot"] == "B" and want["saved"]
    block = base64.b64decode(want["env"])
    files = {E1: block, E2: block}
    g, linux = grubsim.boot(CFG, files)
    assert "ballast.recovery" in linux and "root=PARTLABEL=BALLAST_B ballast.slot=b" in linux, linux
    assert vars_of(files[E1]) == vars_of(base64.b64decode(want["after"])) == vars_of(files[E2])
    assert vars_of(files[E1])["ballast_next"] == "0"
    g, linux = grubsim.boot(CFG, files)
    assert "ballast.recovery" not in linux and "ballast.slot=a" in linux, linux
    # Damage is range-checked to "not asked".
    for bad in ("x", "rr", "1"):
        s["ballast_next"] = bad
        block = grubsim.env_serialize(list(s.items()))
        g, linux = grubsim.boot(CFG, {E1: block, E2: block})
        assert "ballast.recovery" not in linux, bad


def test_garbage_values_are_range_checked():
    block = grubsim.env_serialize([["ballast_lock", "0"], ["ballast_order", "C D"], ["ballast_A_ok", "yes"],
                                   ["ballast_B_ok", "1"], ["ballast_B_trial", "1"], ["ballast_B_tries", "x"],
                                   ["ballast_last_good", "Z"]])
    slot, files, g = grub_boot(block, block)
    assert slot == "A"  # nothing valid is bootable: A


def test_a_locked_copy_is_restored_from_the_other():
    good = base64.b64decode(boot_tool("decide", stdin=json.dumps(state("A B", (1, 0, 0), (0, 0, 0), "A")) + "\n")[0]["env"])
    locked_new = grubsim.env_serialize(list(state("B A", (1, 0, 0), (1, 1, 3), "A", lock="1").items()))
    # Copy 1 was being written (locked): copy 2 decides, and copy 1 is repaired from it.
    slot, files, g = grub_boot(locked_new, good)
    assert slot == "A"
    assert vars_of(files[E1]) == vars_of(good)
    # Copy 2 locked: copy 1 decides; copy 2 is repaired.
    slot, files, g = grub_boot(good, locked_new)
    assert slot == "A" and vars_of(files[E2]) == vars_of(good)
    # Copy 1 torn in its second sector (unparseable): copy 2 decides.
    torn = bytearray(good)
    torn[600:610] = b"\x00" * 10
    slot, files, g = grub_boot(bytes(torn), good)
    assert slot == "A"


TRANSITIONS = {
    "activate B": (state("A B", (1, 0, 0), (0, 0, 0), "A"), state("B A", (1, 0, 0), (1, 1, 3), "A", vb="2.0-long-version")),
    "commit B": (state("B A", (1, 0, 0), (1, 1, 2), "A"), state("B A", (1, 0, 0), (1, 0, 0), "B")),
    "mark B bad": (state("B A", (1, 0, 0), (1, 1, 2), "A"), state("A B", (1, 0, 0), (0, 0, 0), "A")),
    "rollback to A": (state("B A", (1, 0, 0), (1, 0, 0), "B"), state("A B", (1, 0, 0), (1, 0, 0), "A")),
    "begin write B": (state("A B", (1, 0, 0), (1, 0, 0), "A", vb="old"), state("A B", (1, 0, 0), (0, 0, 0), "A", vb="")),
}


@pytest.mark.parametrize("name", sorted(TRANSITIONS))
def test_power_cut_at_every_sector_write(name, tmp_path):
    """Cut the agent's save at every sector: the agent then loads the old or the new state, and
    GRUB, on the files exactly as the cut left them, boots what that same state decides."""
    old, new = TRANSITIONS[name]
    strip = lambda s: {k: v for k, v in s.items() if k != "ballast_lock"}
    slot_of = {json.dumps(strip(s), sort_keys=True): r["slot"] for s, r in zip(
        (old, new), boot_tool("decide", stdin=json.dumps(old) + "\n" + json.dumps(new) + "\n"))}
    for k in range(0, 40):
        d = tmp_path / f"cut{k}"
        d.mkdir()
        out = boot_tool("torn", json.dumps(old), json.dumps(new), str(k), str(d))[0]
        assert "load" in out, out
        loaded = strip(out["load"])
        assert loaded in (strip(old), strip(new)), (k, loaded)
        slot, _, g = grub_boot((d / "env11").read_bytes(), (d / "env12").read_bytes())
        assert slot == slot_of[json.dumps(loaded, sort_keys=True)], (k, loaded, g.log)
        if out["completed"]:
            assert loaded == strip(new)
            assert k >= 6  # 3 block writes per copy, 2 sectors each, at least
            return
    pytest.fail("the save never completed")
