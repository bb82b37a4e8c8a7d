#!/bin/bash
# Usage: packaging/image/check-dracut-log.sh LOG
# dracut only logs an error when the compressor it was asked for cannot run ("Cannot execute
# compression command 'zstd', falling back to default") and then makes a gzip initramfs anyway,
# which costs every boot seconds of GRUB reading under TCG. build.sh runs this on dracut's log:
# any fallback is named on stderr with exit status 1.
set -euo pipefail
log=${1:?usage: check-dracut-log.sh LOG}
[ -r "$log" ] || { echo "check-dracut-log: $log: cannot read" >&2; exit 1; }
if grep -i "falling back" "$log" >&2; then
  echo "check-dracut-log: dracut did not use the compressor asked for (is zstd in packages.list?)" >&2
  exit 1
fi
