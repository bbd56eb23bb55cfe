#!/usr/bin/env bash
# vdisk against qemu-img on the shared workloads, in one run (ratios, peak RSS, verification):
#   npm run bench          the default set (8 GiB virtual / 2 GiB data)
#   npm run bench:quick    1 GiB / 256 MiB, under 2 minutes
# Extra arguments go to ../shared/tools/perf/run.sh (e.g. --only W1,W3z, -n 5). See docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."
runner=../shared/tools/perf/run.sh
[[ -x $runner ]] || { echo "bench: $runner not found (shared/ must sit beside this checkout)" >&2; exit 1; }
exec "$runner" --candidate "$PWD/bin/vdisk" "$@"
