#!/usr/bin/python3
"""Runs ballast-agent as systemd would (stderr a stream with JOURNAL_STREAM set) in a private
mount namespace whose /run/systemd/journal/socket is ours, and prints the journal records the
agent sent, as a JSON list. Usage: journal_capture.py AGENT BUS_ADDRESS ROOT"""
import ctypes
import json
import os
import socket
import subprocess
import sys
import time

CLONE_NEWNS = 0x00020000
MS_REC, MS_PRIVATE = 16384, 1 << 18


def main():
    agent, address, root = sys.argv[1:4]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        sys.exit(f"unshare: {os.strerror(ctypes.get_errno())}")
    if libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        sys.exit("make / private failed")
    os.makedirs("/run/systemd", exist_ok=True)
    if libc.mount(b"tmpfs", b"/run/systemd", b"tmpfs", 0, None) != 0:
        sys.exit("mount tmpfs failed")
    os.makedirs("/run/systemd/journal")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("/run/systemd/journal/socket")
    os.makedirs(root, exist_ok=True)

    r, w = os.pipe()
    st = os.fstat(w)
    env = dict(os.environ, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
    env.pop("NOTIFY_SOCKET", None)
    proc = subprocess.Popen([agent, "--bus-address", address, "--root", root, "--booted-slot", "A"],
                            stderr=w, env=env)
    os.close(w)
    records = []
    sock.settimeout(0.2)
    deadline = time.monotonic() + 20
    sent_term = False
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except socket.timeout:
            if proc.poll() is not None:
                break
            continue
        rec = {}
        for line in data.decode(errors="replace").split("\n"):
            if "=" in line:
                k, v = line.split("=", 1)
                rec[k] = v
        records.append(rec)
        if not sent_term and "ready on" in rec.get("MESSAGE", ""):
            proc.terminate()
            sent_term = True
    proc.wait(timeout=10)
    stderr_text = os.read(r, 65536).decode(errors="replace")
    if stderr_text:
        records.append({"STDERR": stderr_text})
    print(json.dumps(records))


if __name__ == "__main__":
    main()
