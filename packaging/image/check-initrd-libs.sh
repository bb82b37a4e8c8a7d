#!/bin/bash
# Usage: packaging/image/check-initrd-libs.sh DIR
# Checks that every program and library in the unpacked initramfs DIR finds the libraries it
# links inside DIR, with DIR's own loader (chroot, so root only). ballast-agent loads some
# libraries with dlopen(), which dracut cannot see; a gap would show only at the first encrypted
# boot. Names each gap on stderr and exits 1 if there is one; changes nothing.
set -euo pipefail
dir=${1:?usage: check-initrd-libs.sh DIR}
[ -x "$dir/lib64/ld-linux-x86-64.so.2" ] || { echo "check-initrd-libs: $dir: no /lib64/ld-linux-x86-64.so.2" >&2; exit 1; }
unresolved=0
while IFS= read -r -d '' f; do
  [ "$(head -c4 "$f" | od -An -c | tr -d ' ')" = '177ELF' ] || continue
  # dracut installs every NSS module; hesiod's needs libresolv, and nothing here resolves names.
  case $f in */libnss_hesiod.so*) continue ;; esac
  # --list exits non-zero on a static program (nothing to resolve) and on a library that lacks
  # one (naming it). systemd's private libraries find each other through their RUNPATH, which
  # --list does not apply to the object it lists.
  missing=$({ chroot "$dir" /lib64/ld-linux-x86-64.so.2 --library-path /usr/lib/x86_64-linux-gnu/systemd \
              --list "${f#"$dir"}" 2>&1 || true; } |
            awk '/not found/ {print $1} /error while loading shared libraries/ {sub(/.*libraries: /, ""); sub(/:.*/, ""); print}' |
            tr '\n' ' ')
  [ -z "$missing" ] || { echo "initramfs: ${f#"$dir"} needs $missing" >&2; unresolved=1; }
done < <(find "$dir" -type f \( -perm -u+x -o -name '*.so*' \) -print0)
exit "$unresolved"
