#!/usr/bin/env bash
# QEMU 7.2's qemu-iotests with vdisk as qemu-img: the subset that passes, so that it stays passing.
# The full run is: ../shared/tools/iotests/run --qemu-img bin/vdisk --formats raw,qcow2 (see docs/iotests.md).
set -euo pipefail
cd "$(dirname "$0")/.."
runner=../shared/tools/iotests/run
if [[ ! -x $runner ]]; then
  echo "iotests: $runner not found (shared/ is not beside this checkout); skipped"
  exit 0
fi
# Tests that pass with vdisk (docs/iotests.md lists the rest with reasons); keep sorted.
RAW_TESTS=$(tr -s ' \n' ',' < .ci/iotests-raw.list | sed 's/,$//')
args=(--qemu-img bin/vdisk --jobs 2 --out "${IOTESTS_OUT:-/tmp/vdisk-iotests-ci}" --test-timeout 300)
# Both sets run even when the first fails, so one CI run reports every regression.
rc=0
"$runner" "${args[@]}" --formats raw --tests "$RAW_TESTS" || rc=1
if [[ -s .ci/iotests-qcow2.list ]]; then
  QCOW2_TESTS=$(tr -s ' \n' ',' < .ci/iotests-qcow2.list | sed 's/,$//')
  "$runner" "${args[@]}" --formats qcow2 --tests "$QCOW2_TESTS" || rc=1
fi
exit $rc
