#!/bin/bash
# Builds the .deb from the working tree: copies the sources (tracked and untracked, not ignored)
# into BUILD/deb/, adds packaging/debian as debian/, runs dpkg-buildpackage.
# Usage: packaging/build-deb.sh [BUILD_DIR]   -> BUILD_DIR/deb/ballast_*.deb
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=$(realpath -m "${1:-$top/build}")
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
