#!/usr/bin/env bash
# A self-contained convert benchmark: a sparse raw image with scattered data, converted to raw and to
# qcow2 by vdisk and by qemu-img in the same run. Checks the outputs are guest-identical, then prints
# wall time, peak RSS and the ratio vdisk/qemu-img. No pass/fail on speed: it informs, it does not gate.
#   bash bench/convert-raw.sh [SIZE_MIB] [DATA_EXTENTS]
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-2048}
extents=${2:-256}
dir=$(mktemp -d /tmp/vdisk-bench-XXXXXX)
trap 'rm -rf "$dir"' EXIT
src=$dir/src.raw
qemu-img create -q -f raw "$src" "${size_mib}M"
# scattered 1 MiB extents of pseudo-random data at deterministic offsets
step=$(( size_mib / extents )); (( step >= 2 )) || step=2
for ((i = 0; i < extents && i * step < size_mib; i++)); do
  dd if=/dev/urandom of="$src" bs=1M count=1 seek=$(( i * step )) conv=notrunc status=none
done
measure() { # label, command...: prints "label seconds peak_kib"
  local label=$1; shift
  local out
  out=$( { /usr/bin/time -f '%e %M' "$@" >/dev/null; } 2>&1 | tail -1)
  echo "$label $out"
}
for fmt in raw qcow2; do
  q=$(measure qemu-img qemu-img convert -f raw -O $fmt "$src" "$dir/q.$fmt")
  v=$(measure vdisk bin/vdisk convert -f raw -O $fmt "$src" "$dir/v.$fmt")
  qemu-img compare -q -f $fmt -F $fmt "$dir/q.$fmt" "$dir/v.$fmt" || { echo "bench: outputs differ for -O $fmt" >&2; exit 1; }
  read -r _ qs qm <<<"$q"; read -r _ vs vm <<<"$v"
  ratio=$(awk -v a="$vs" -v b="$qs" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')
  printf 'convert raw->%-5s  qemu-img %6.2fs %7d KiB | vdisk %6.2fs %7d KiB | ratio %s\n' "$fmt" "$qs" "$qm" "$vs" "$vm" "$ratio"
  rm -f "$dir/q.$fmt" "$dir/v.$fmt"
done
