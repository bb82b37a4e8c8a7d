"""The tree is formatted with the repository's .clang-format."""
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
