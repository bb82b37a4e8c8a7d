#!/usr/bin/python3
"""Proves, before anything is built, that `make test` installs what its layers need on a machine
with nothing installed by hand: every package a test names as the source of a tool it runs
(`need_tool("tool", "package")`, the e2e layer's `(tool, package)` lists), and the Debian package of
every Python module a test imports that is neither the standard library's nor the tests' own
(`import yaml`: python3-yaml, Debian's naming), must be in the
packaging/deps.sh groups `make test` installs, or be one every Debian system has (Essential, or
of priority required: debootstrap's minimal set).

Usage: tests/check_deps.py GROUP...   (the Makefile passes $(TEST_DEPS))
Prints what is missing and exits 1; prints one line and exits 0 when nothing is."""
import re
import subprocess
import sys
from pathlib import Path

TOP = Path(__file__).resolve().parents[1]
NEED_TOOL = re.compile(r'need_tool\(\s*"([^"]+)"\s*,\s*"([^"]+)"\s*\)')
# e2e conftest: `for tool, pkg in [("qemu-system-x86_64", "qemu-system-x86"), ...]:`
PAIR_LIST = re.compile(r'for tool, pkg in \[(.*?)\]:', re.DOTALL)
PAIR = re.compile(r'\(\s*"([^"]+)"\s*,\s*"([^"]+)"\s*\)')
IMPORT = re.compile(r'^\s*(?:import\s+([A-Za-z_]\w*)[\w.]*(?:\s+as\s+\w+)?\s*(?:#.*)?$'
                    r'|from\s+([A-Za-z_]\w*)[\w.]*\s+import\s)', re.MULTILINE)
# Modules whose Debian package is not python3-<module>.
PYTHON_PACKAGES = {"xdist": "python3-pytest-xdist"}


def named_packages() -> dict[str, set[str]]:
    """package -> the test files that name it."""
    out: dict[str, set[str]] = {}
    sources = sorted((TOP / "tests").rglob("*.py"))
    own = {p.stem for p in sources}
    for path in sources:
        if path == Path(__file__).resolve():
            continue
        text = path.read_text()
        pairs = NEED_TOOL.findall(text)
        for block in PAIR_LIST.findall(text):
            pairs += PAIR.findall(block)
        for module in {a or b for a, b in IMPORT.findall(text)} - own - set(sys.stdlib_module_names):
            pairs.append((module, PYTHON_PACKAGES.get(module, f"python3-{module}")))
        for _tool, pkg in pairs:
            out.setdefault(pkg, set()).add(str(path.relative_to(TOP)))
    return out


def in_every_system(pkg: str) -> bool:
    r = subprocess.run(["dpkg-query", "-W", "-f=${Essential}\n${Priority}", pkg], capture_output=True, text=True)
    essential, _, priority = r.stdout.partition("\n")
    return r.returncode == 0 and (essential == "yes" or priority == "required")


def main() -> int:
    groups = sys.argv[1:]
    if not groups:
        print("usage: tests/check_deps.py GROUP...", file=sys.stderr)
        return 2
    r = subprocess.run([str(TOP / "packaging/deps.sh"), "--list", *groups], capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stderr, end="", file=sys.stderr)
        return 2
    installed_by_make = set(r.stdout.split())
    named = named_packages()
    missing = {p: files for p, files in named.items() if p not in installed_by_make and not in_every_system(p)}
    for pkg, files in sorted(missing.items()):
        print(f"check_deps: {pkg} is named by {', '.join(sorted(files))} but no group `make test` "
              f"installs ({' '.join(groups)}) has it: add it to packaging/deps.sh", file=sys.stderr)
    if missing:
        return 1
    print(f"check_deps: the {len(named)} packages the tests name all come from packaging/deps.sh "
          f"{' '.join(groups)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
