"""The files of tree B that are new or differ from tree A (regular files by content, symlinks by
target), one path per line relative to B: what the floor's tar holds."""
import filecmp
import os
import sys

a, b = sys.argv[1], sys.argv[2]
for root, dirs, files in os.walk(b):
    dirs.sort()
    # os.walk lists links to folders among the folders (and does not follow them): they are files
    # of the tree like any other link.
    links = [d for d in dirs if os.path.islink(os.path.join(root, d))]
    for name in sorted(files + links):
        pb = os.path.join(root, name)
        rel = os.path.relpath(pb, b)
        pa = os.path.join(a, rel)
        if os.path.islink(pb):
            if not os.path.islink(pa) or os.readlink(pa) != os.readlink(pb):
                print(rel)
        elif os.path.isfile(pb):
            if os.path.islink(pa) or not os.path.isfile(pa) or not filecmp.cmp(pa, pb, shallow=False):
                print(rel)
