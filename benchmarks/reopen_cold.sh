#!/bin/bash
# Cold and warm reopen of a saved hnswlib snapshot by one or more source trees (as root:
# drops the page cache before each cold run; other jobs' timings suffer, so run it rarely).
#   benchmarks/reopen_cold.sh SNAPSHOT TREE [TREE...]
# Prints the disk's cold sequential read (dd), then per tree: load + first search, wall,
# process CPU and bytes read from disk; then three warm runs per tree, alternating.
set -e
PY=${PY:-.venv/bin/python}
SNAP=$1; shift
uptime
sync; echo 3 > /proc/sys/vm/drop_caches
dd if="$SNAP" of=/dev/null bs=16M 2>&1 | tail -1
one() {
  (cd "$1" && PYTHONPATH="$1" "$PY" - "$SNAP" <<'PYEOF'
import os, sys, time
import numpy as np
import semcache
from semcache._index import HnswlibIndex, _graph
if hasattr(_graph, "EF_PROBE_MIN_ROWS"):
    _graph.EF_PROBE_MIN_ROWS = 1 << 62  # a one-off probe of an old snapshot left out
def io():
    d = dict(line.split(": ") for line in open("/proc/self/io").read().split("\n") if line)
    return int(d["read_bytes"])
r0, t0, c0 = io(), time.perf_counter(), time.process_time()
ix = HnswlibIndex.load(sys.argv[1])
ix.search(np.full(ix.dim, 0.05, np.float32), 1)
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
print(f"{os.path.dirname(semcache.__file__)}: {wall:.2f} s wall, {cpu:.2f} s cpu,"
      f" {(io() - r0) / 1e9:.2f} GB read, load {os.getloadavg()[0]:.2f}", flush=True)
PYEOF
  )
}
echo cold:
for tree in "$@"; do sync; echo 3 > /proc/sys/vm/drop_caches; one "$tree"; done
echo warm, alternating:
for i in 1 2 3; do for tree in "$@"; do one "$tree"; done; done
uptime
