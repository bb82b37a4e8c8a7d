"""Style rules a machine can check: the .clang-format formatting, and the layering of lib/."""
import subprocess
from pathlib import Path

from conftest import need_tool

TOP = Path(__file__).resolve().parents[2]


def test_sources_are_clang_formatted():
    need_tool("clang-format", "clang-format")
    files = subprocess.run(["git", "ls-files", "*.cpp", "*.hpp"], cwd=TOP, capture_output=True,
                           text=True, check=True).stdout.split()
    assert files
    r = subprocess.run(["clang-format", "--dry-run", "-Werror", *files], cwd=TOP,
                       capture_output=True, text=True)
    assert r.returncode == 0, "run: clang-format -i $(git ls-files '*.cpp' '*.hpp')\n" + r.stderr[:3000]


# The layers, lowest first (docs/architecture.md draws them): a module includes only modules of
# lower layers and itself. Settings types belong to the module that uses them; config composes
# them, so nothing below config includes it.
LAYERS = [
    ["core"],
    ["system", "disk"],
    ["boot", "mount", "crypt", "health", "api", "datasource"],
    ["config", "update"],
    ["k3s"],
    ["stages"],
    ["install"],
    ["ops"],
]
# The daemon keeps D-Bus plumbing, jobs and printing: the domain is reached through ops.
DAEMON_ALLOWED = {"core", "system", "api", "config", "stages", "ops"}


def includes(folder):
    """{(file, module)} for every `#include "ballast/<module>/..."` under folder."""
    found = set()
    for f in sorted(folder.rglob("*.[ch]pp")):
        for line in f.read_text().splitlines():
            if line.startswith('#include "ballast/'):
                found.add((f.relative_to(TOP).as_posix(), line.split("/")[1]))
    return found


def test_layers_are_listed_once_and_cover_lib():
    listed = [m for layer in LAYERS for m in layer]
    assert len(listed) == len(set(listed))
    present = {p.name for p in (TOP / "lib/ballast").iterdir() if p.is_dir()}
    assert present == set(listed), "add new modules to LAYERS in tests/integration/test_style.py"


def test_lib_modules_include_only_lower_layers():
    level = {m: i for i, layer in enumerate(LAYERS) for m in layer}
    bad = []
    for module, i in level.items():
        for f, dep in includes(TOP / "lib/ballast" / module):
            if dep != module and level.get(dep, len(LAYERS)) >= i:
                bad.append(f"{f} includes {dep} (layer {level.get(dep)}, {module} is layer {i})")
    assert not bad, "\n".join(bad)


def test_daemon_reaches_the_domain_through_ops():
    bad = [f"{f} includes {dep}" for f, dep in includes(TOP / "agent/daemon")
           if dep not in DAEMON_ALLOWED]
    assert not bad, "\n".join(bad)
