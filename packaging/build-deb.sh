#!/bin/bash
# Builds the .deb from the working tree: copies the sources (tracked and untracked, not ignored)
# into BUILD/deb/, adds packaging/debian as debian/, runs dpkg-buildpackage.
# Usage: packaging/build-deb.sh [--from-build] [BUILD_DIR]   -> BUILD_DIR/deb/ballast_*.deb
#   --from-build  dpkg-buildpackage packages BUILD_DIR's meson tree as it is built (configured
#                 with --prefix=/usr, as `make` does) instead of configuring and compiling its own
#                 (debian/rules, BALLAST_BUILT_TREE): the package holds the binaries the tests ran.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
from_build=0
if [ "${1:-}" = --from-build ]; then
  from_build=1
  shift
fi
build=$(realpath -m "${1:-$top/build}")
if [ $from_build -eq 1 ]; then
  prefix=$(meson introspect --buildoptions "$build" 2>/dev/null |
           python3 -c 'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == "prefix"))') || {
    echo "build-deb: --from-build: $build is not a configured meson build tree" >&2
    exit 1
  }
  if [ "$prefix" != /usr ]; then
    echo "build-deb: --from-build: $build was configured with prefix $prefix, a package needs /usr" >&2
    exit 1
  fi
  ninja -C "$build" >/dev/null
  export BALLAST_BUILT_TREE=$build
fi
version=$(sed -n "s/^project('ballast'.*//; s/^  version: '\(.*\)',$/\1/p" "$top/meson.build" | head -n1)
deb_version=$(dpkg-parsechangelog -l "$top/packaging/debian/changelog" -S Version)
if [ "$version" != "$deb_version" ]; then
  echo "build-deb: meson.build says $version but packaging/debian/changelog says $deb_version" >&2
  exit 1
fi
out=$build/deb
src=$out/ballast-$version
rm -rf "$out"
mkdir -p "$src"
cd "$top"
if git rev-parse --git-dir >/dev/null 2>&1; then
  git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$src"
else
  tar --exclude='./build*' --exclude=./.git -cf - . | tar -xf - -C "$src"
fi
rm -rf "$src/debian"
cp -r packaging/debian "$src/debian"
cd "$src"
dpkg-buildpackage -us -uc -b -j"$(nproc)" >"$out/build.log" 2>&1 || {
  tail -n 40 "$out/build.log" >&2
  echo "build-deb: dpkg-buildpackage failed; full log in $out/build.log" >&2
  exit 1
}
ls "$out"/ballast_*.deb
