#!/usr/bin/python3
"""Build step: turns overlay/grub/grub.cfg into a C++ source, so that an installed agent always
carries the grub.cfg its boot-state code was tested against. Usage: embed.py IN OUT"""
import sys

text = open(sys.argv[1], encoding="utf-8").read()
with open(sys.argv[2], "w", encoding="utf-8") as out:
    out.write("// Generated from overlay/grub/grub.cfg by lib/ballast/install/embed.py. Do not edit.\n")
    out.write('#include "ballast/install/installer.hpp"\n\n')
    out.write("namespace ballast::install {\n\nstd::string_view grub_cfg() {\n    static const char text[] = {\n")
    data = text.encode()
    for i in range(0, len(data), 16):
        out.write("        " + ", ".join(str(b) for b in data[i:i + 16]) + ",\n")
    out.write("        0};\n    return std::string_view(text, sizeof text - 1);\n}\n\n}  // namespace ballast::install\n")
