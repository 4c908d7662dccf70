#!/bin/bash
# Cold and warm reopen of a saved hnswlib snapshot by one or more source trees.
#   PY=.venv/bin/python benchmarks/reopen_cold.sh SNAPSHOT TREE [TREE...]
# "Cold": only the snapshot's pages are evicted from the page cache before each run
# (posix_fadvise DONTNEED on that file; the rest of the cache, other jobs' included, is
# left alone); /proc/self/io's read_bytes shows the file really came from the disk.
# Prints the disk's cold sequential read of the file (dd), then three cold and three warm
# runs per tree, alternating: load + first search, wall, process CPU, bytes read.
set -e
PY=${PY:-.venv/bin/python}
SNAP=$1; shift
evict() {
  "$PY" -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
os.close(fd)' "$SNAP"
}
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
uptime
evict
dd if="$SNAP" of=/dev/null bs=16M 2>&1 | tail -1
echo cold, alternating:
for i in 1 2 3; do for tree in "$@"; do evict; one "$tree"; done; done
echo warm, alternating:
for i in 1 2 3; do for tree in "$@"; do one "$tree"; done; done
uptime
