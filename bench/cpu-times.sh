#!/bin/bash
# CPU time (user + sys) and wall time of qemu-img and one or two vdisk builds on the W6a/W6b/W9a/W9b
# command lines of the perf harness, run in turn N times each; prints medians. CPU time is the figure
# that survives a loaded machine. Needs a workload dir made by ../shared/tools/perf/run.sh (--dir).
#   bash bench/cpu-times.sh DIR N VDISK [VDISK_OLD]
set -euo pipefail
D=$1; N=$2; NEW=$(realpath "$3"); OLD=${4:+$(realpath "$4")}
cd "$D"
raw=$(mktemp); one=$(mktemp)
run() { # id setup argv...
  local w=$1 setup=$2; shift 2
  for _ in $(seq "$N"); do for b in qemu-img $OLD "$NEW"; do
    eval "$setup"; sync
    /usr/bin/time -f "$w $b %e %U %S %M" -o "$one" "$b" "$@" >/dev/null 2>&1 || true; cat "$one" >> "$raw"
  done; done
}
run W6a : compare -f qcow2 -F qcow2 base.qcow2 base.copy.qcow2
run W6b : compare -f qcow2 -F raw base.qcow2 base.conv.raw
run W9a "cp --sparse=always w9base.qcow2 w9base.work.qcow2" commit -q -f qcow2 -d w9ovl.qcow2
run W9b "cp --sparse=always w9r.qcow2 w9r.t.qcow2" rebase -f qcow2 -b newbase.qcow2 -F qcow2 w9r.t.qcow2
rm -f w9r.t.qcow2 "$one"
python3 - "$raw" "$NEW" <<'PY'
import statistics as st, collections, sys
d = collections.defaultdict(list)
for l in open(sys.argv[1]):
    w, b, e, u, s, m = l.split(); d[(w, b)].append((float(e), float(u) + float(s), int(m)))
for (w, b), v in sorted(d.items()):
    name = 'qemu-img' if b == 'qemu-img' else ('NEW' if b == sys.argv[2] else 'OLD')
    print(f"{w} {name:8} wall med {st.median(x[0] for x in v):.2f}  cpu med {st.median(x[1] for x in v):.2f} (min {min(x[1] for x in v):.2f})  rss {max(x[2] for x in v)//1024} MiB")
PY
rm -f "$raw"
