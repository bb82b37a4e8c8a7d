#!/bin/bash
# Usage: packaging/image/check-initrd-mods.sh DIR MODDIR
# Checks that every kernel module in the unpacked initramfs DIR has there every module it depends
# on, as the kernel's own modules.dep in MODDIR (the image's /usr/lib/modules/KVER) says. dracut
# runs depmod inside the initramfs, which silently drops a dependency that was left out, so its
# own modules.dep cannot tell; build.sh leaves whole driver folders out of dracut's generic set,
# and a module kept whose dependency went with them fails to load only on the machine that needs
# it. Names each gap on stderr and exits 1 if there is one; changes nothing.
set -euo pipefail
dir=${1:?usage: check-initrd-mods.sh DIR MODDIR}
full=${2:?usage: check-initrd-mods.sh DIR MODDIR}/modules.dep
[ -f "$full" ] || { echo "check-initrd-mods: $full: no such file" >&2; exit 1; }
moddir="$dir/usr/lib/modules/$(basename "$(dirname "$full")")"
[ -d "$moddir" ] || { echo "check-initrd-mods: $dir has no $moddir" >&2; exit 1; }
missing=0
while IFS=: read -r mod needs; do
  [ -e "$moddir/$mod" ] || continue
  for n in $needs; do
    [ -e "$moddir/$n" ] || { echo "initramfs: $mod needs $n, which is not there" >&2; missing=1; }
  done
done <"$full"
exit "$missing"
