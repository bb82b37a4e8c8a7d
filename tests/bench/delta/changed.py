"""The files of tree B that are new or differ from tree A (regular files by content, symlinks by
target), one path per line relative to B: what the floor's tar holds."""
import filecmp
import os
import sys

a, b = sys.argv[1], sys.argv[2]
for root, dirs, files in os.walk(b):
    dirs.sort()
    for name in sorted(files):
        pb = os.path.join(root, name)
        rel = os.path.relpath(pb, b)
        pa = os.path.join(a, rel)
        if os.path.islink(pb):
            if not os.path.islink(pa) or os.readlink(pa) != os.readlink(pb):
                print(rel)
        elif os.path.isfile(pb):
            if os.path.islink(pa) or not os.path.isfile(pa) or not filecmp.cmp(pa, pb, shallow=False):
                print(rel)
