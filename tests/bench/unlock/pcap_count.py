#!/usr/bin/env python3
"""Counts the TPM2 commands in a capture written by tpm2-tss's pcap TCTI (libtss2-tcti-pcap0).

The TCTI appends to $TCTI_PCAP_FILE: a pcapng section header and interface description block
(link type 228, raw IPv4) at each TCTI initialisation, then one enhanced packet block per
transmit (a command, to TCP port 2321) and per receive (its response, from port 2321), each a
fake IPv4 + TCP header around the TPM2 packet (tpm2-tss src/tss2-tcti/tcti-pcap-builder.c).
Usage: pcap_count.py FILE [--json]: per TCTI session (one process each), the commands sent and
the response codes received, in order, and the time the TPM took (each response's timestamp
minus its command's: the TCTI stamps both, in microseconds).
"""
import json
import struct
import sys

CC = {0x144: "Startup", 0x131: "CreatePrimary", 0x157: "Load", 0x176: "StartAuthSession",
      0x17F: "PolicyPCR", 0x16B: "PolicyAuthValue", 0x189: "PolicyGetDigest", 0x15E: "Unseal",
      0x165: "FlushContext", 0x173: "ReadPublic", 0x17A: "GetCapability", 0x17E: "PCR_Read",
      0x17B: "GetRandom", 0x153: "Create", 0x16A: "PolicyAuthorize", 0x167: "LoadExternal",
      0x177: "VerifySignature", 0x143: "SelfTest", 0x17C: "PolicyRestart", 0x161: "ContextLoad",
      0x162: "ContextSave", 0x121: "HierarchyControl", 0x182: "PCR_Extend"}


def sessions(path):
    data = open(path, "rb").read()
    out, cur, off = [], None, 0
    while off + 12 <= len(data):
        btype, blen = struct.unpack_from("<II", data, off)
        if blen < 12 or off + blen > len(data):
            raise SystemExit(f"{path}: truncated block at {off}")
        if btype == 0x0A0D0D0A:          # section header: a new TCTI instance (a new process)
            cur = {"commands": [], "responses": [], "tpm_us": 0, "span_us": 0}
            sent = first = None
            out.append(cur)
        elif btype == 6:                 # enhanced packet block
            hi, lo, caplen = struct.unpack_from("<III", data, off + 12)
            ts = hi << 32 | lo
            pkt = data[off + 28: off + 28 + caplen]
            ihl = (pkt[0] & 0x0F) * 4
            sport, dport = struct.unpack_from(">HH", pkt, ihl)
            thl = (pkt[ihl + 12] >> 4) * 4
            tpm = pkt[ihl + thl:]
            tag, size, code = struct.unpack_from(">HII", tpm, 0)
            if size != len(tpm):
                raise SystemExit(f"{path}: TPM packet size {size} != captured {len(tpm)}")
            if dport == 2321:
                cur["commands"].append(CC.get(code, hex(code)))
                sent = ts
                first = ts if first is None else first
            elif sport == 2321:
                cur["responses"].append(code)
                cur["tpm_us"] += ts - sent
                cur["span_us"] = ts - first
        off += blen
    return out


if __name__ == "__main__":
    s = sessions(sys.argv[1])
    if "--json" in sys.argv:
        print(json.dumps(s))
    else:
        for i, x in enumerate(s):
            rcs = " ".join(f"{c}={r:#x}" for c, r in zip(x["commands"], x["responses"]) if r)
            print(f"session {i}: {len(x['commands'])} commands, {len(x['responses'])} responses "
                  f"(not success: {rcs or 'none'}), TPM {x['tpm_us'] / 1000:.1f} ms of "
                  f"{x['span_us'] / 1000:.1f} ms first command to last response: "
                  f"{' '.join(x['commands'])}")
