#!/usr/bin/env bash
# Peak memory of `vdisk convert` on the two images issue P2 names: a 4 TiB-virtual sparse qcow2
# (a few MiB of data spread over the whole range) and an 8 GiB qcow2 full of data. Builds both with
# the real qemu-img/qemu-io in a scratch directory, converts each with bin/vdisk under
# /usr/bin/time -v, prints the peak RSS against the issue's 200 MiB bound, and checks the output
# with `qemu-img compare`. It measures, it does not time: run it on a quiet machine.
#   bash bench/memory.sh [sparse|full|all] [OUT_FORMAT]     (default: all qcow2)
# Needs about 2 x 8 GiB free in $TMPDIR (default /tmp) for the full image; everything is removed.
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-all}
ofmt=${2:-qcow2}
limit_kib=$((200 * 1024))
dir=$(mktemp -d "${TMPDIR:-/tmp}/vdisk-memory-XXXXXX")
trap 'rm -rf "$dir"' EXIT
status=0

# convert with vdisk, then report peak RSS and whether qemu-img compare agrees
measure() { # label src
  local label=$1 src=$2 out=$dir/out.$ofmt
  /usr/bin/time -v bin/vdisk convert -f qcow2 -O "$ofmt" "$src" "$out" 2>"$dir/time.txt"
  local rss secs
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$dir/time.txt")
  secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$dir/time.txt")
  local same=identical
  qemu-img compare -q -f qcow2 -F "$ofmt" "$src" "$out" || { same=DIFFERENT; status=1; }
  local verdict=ok
  (( rss < limit_kib )) || { verdict=OVER; status=1; }
  printf '%-28s peak RSS %7d KiB (%4d MiB, limit 200 MiB: %s)  wall %s  output %s\n' \
    "$label -> $ofmt" "$rss" $((rss / 1024)) "$verdict" "$secs" "$same"
  rm -f "$out"
}

if [[ $which == sparse || $which == all ]]; then
  src=$dir/sparse-4T.qcow2
  qemu-img create -q -f qcow2 "$src" 4T
  # 1 MiB of pattern every 256 GiB, plus the first and last MiB: 18 MiB over 4 TiB
  cmds=()
  for ((g = 0; g < 4096; g += 256)); do cmds+=(-c "write -q -P $(( (g / 256) % 250 + 1 )) ${g}G 1M"); done
  cmds+=(-c "write -q -P 0xee 4095M 1M" -c "write -q -P 0xff $((4 * 1024 * 1024 - 1))M 1M")
  qemu-io -f qcow2 "${cmds[@]}" "$src"
  measure "4 TiB sparse qcow2" "$src"
  rm -f "$src"
fi

if [[ $which == full || $which == all ]]; then
  src=$dir/full-8G.qcow2
  qemu-img create -q -f qcow2 "$src" 8G
  # 64 writes of 128 MiB (qemu-io allocates each request's buffer whole), a different byte each
  cmds=()
  for ((i = 0; i < 64; i++)); do cmds+=(-c "write -q -P $((i + 1)) $((i * 128))M 128M"); done
  qemu-io -f qcow2 "${cmds[@]}" "$src"
  measure "8 GiB qcow2 full of data" "$src"
  rm -f "$src"
fi
exit $status
