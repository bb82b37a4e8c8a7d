#!/usr/bin/python3
"""A volume image as fuzz-udf's input (tests/fuzz/fuzz_udf.cpp): each 2048-byte block of the
first MiB with anything in it, as a record (4-byte LE offset, 2-byte LE length, the bytes up to
the block's last non-zero one). Usage: sparse_volume.py IMAGE > SEED"""
import struct
import sys

data = open(sys.argv[1], "rb").read()[: 1 << 20]
out = bytearray()
for off in range(0, len(data), 2048):
    block = data[off : off + 2048].rstrip(b"\0")
    if block:
        out += struct.pack("<IH", off, len(block)) + block
sys.stdout.buffer.write(out)
