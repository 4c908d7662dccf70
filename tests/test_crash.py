"""Crash safety: a writer process is killed with SIGKILL at random points (seeded, counted
in the lines it has acknowledged, not in time) during a storm of put / put_many /
delete / vacuum / compact / close-and-reopen, many times over one file. After every
kill the file passes ``PRAGMA integrity_check``, no entry is half written (every row has
its vector, the namespace counts match the rows, the change log agrees with the rows),
no acknowledged put is lost, no acknowledged delete comes back, and a reopened cache
(its index loaded from a possibly stale snapshot and caught up, or rebuilt) serves every
acknowledged entry, exactly and semantically."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import apsw
import numpy as np
import pytest
from conftest import unit

from semcache import SemanticCache, StoreCorruptError

DIM = 16
#: Kills per run, and the acknowledged lines each writer gets before it dies (seeded).
KILLS = 24
MAX_LINES = 160
SEED = 20240607
DEADLINE = 120.0  # seconds for the whole storm, far above the ~30 s it takes

WRITER = r"""
import sys
import numpy as np
from semcache import SemanticCache

path, seed, base = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(seed)
DIM = 16

def unit(k):
    v = np.random.default_rng(k).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)

def say(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()

cache = SemanticCache(path, similarity_threshold=0.99)
say("open")
k = base
mine = []
while True:
    op = rng.random()
    if op < 0.40:
        cache.put(f"q{k}", f"a{k}", embedding=unit(k))
        say(f"P {k}")
        mine.append(k)
        k += 1
    elif op < 0.60:
        n = int(rng.integers(2, 20))
        keys = list(range(k, k + n))
        cache.put_many([f"q{j}" for j in keys], [f"a{j}" for j in keys],
                       embeddings=np.stack([unit(j) for j in keys]))
        say("P " + " ".join(map(str, keys)))
        mine.extend(keys)
        k += n
    elif op < 0.70:
        cache.put(f"e{k}", "expired", embedding=unit(k), namespace="ttl", ttl=0)
        k += 1
    elif op < 0.85 and mine:
        victim = mine.pop(int(rng.integers(len(mine))))
        say(f"d {victim}")
        cache.delete(f"q{victim}")
        say(f"D {victim}")
    elif op < 0.90:
        say("v")
        cache.vacuum()
        say("V")
    elif op < 0.95:
        say("c")
        cache.compact()
        say("C")
    else:
        say("r")
        cache.close()
        cache = SemanticCache(path, similarity_threshold=0.99)
        say("R")
"""


@dataclass
class Ledger:
    """What the writers acknowledged, over all runs."""

    puts: set[int] = field(default_factory=set)
    deleting: set[int] = field(default_factory=set)  # a delete was started
    deleted: set[int] = field(default_factory=set)  # ... and acknowledged

    def record(self, line: str) -> None:
        kind, _, rest = line.partition(" ")
        if kind == "P":
            self.puts.update(int(k) for k in rest.split())
        elif kind == "d":
            self.deleting.add(int(rest))
        elif kind == "D":
            self.deleted.add(int(rest))

    def must_exist(self) -> set[int]:
        return self.puts - self.deleting


def run_writer_until_killed(path: Path, seed: int, base: int, lines: int, ledger: Ledger) -> int:
    """Start a writer, read ``lines`` acknowledgements, SIGKILL it; record everything it
    acknowledged (also what was still in the pipe). Returns the lines read."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(seed), str(base)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buffer = b""
    seen = 0
    deadline = time.monotonic() + 60
    try:
        while seen < lines:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            assert ready, "the writer stopped acknowledging"
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError(f"the writer died: {proc.stderr.read().decode()}")  # type: ignore[union-attr]
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            for line in complete:  # every complete line counts, even past the target
                ledger.record(line.decode())
            seen += len(complete)
            if seen >= lines:
                proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(30)
    rest = buffer + proc.stdout.read()  # acknowledged before it died
    for line in rest.split(b"\n")[:-1]:
        ledger.record(line.decode())
    proc.stdout.close()
    assert proc.stderr is not None
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return seen


def check_file(path: Path, ledger: Ledger) -> None:
    """The file itself: healthy, nothing half written, every acknowledgement honoured."""
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READWRITE)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        rows = conn.execute("SELECT id, namespace, query, response, vector FROM entries").fetchall()
        for _, ns, query, response, vector in rows:
            assert vector is not None
            assert len(vector) == DIM * 4
            if ns == "default":
                assert response == "a" + query[1:]
        counted = dict(
            conn.execute("SELECT namespace, count(*) FROM entries GROUP BY namespace").fetchall()
        )
        kept = dict(conn.execute("SELECT name, entries FROM namespaces WHERE entries != 0"))
        assert kept == counted
        last_op: dict[int, int] = {}
        for entry_id, op in conn.execute("SELECT entry_id, op FROM changes ORDER BY seq"):
            last_op[entry_id] = op
        assert {i for i, op in last_op.items() if op == 1} == {r[0] for r in rows}
        stored = {int(q[1:]) for _, ns, q, _, _ in rows if ns == "default"}
    finally:
        conn.close()
    assert ledger.must_exist() <= stored, "an acknowledged put was lost"
    assert not (ledger.deleted & stored), "an acknowledged delete came back"


def check_served(path: Path, ledger: Ledger) -> None:
    """A reopened cache serves every acknowledged entry, exactly and by its vector."""
    with SemanticCache(str(path), similarity_threshold=0.99) as cache:
        for k in sorted(ledger.must_exist()):
            exact = cache.get(f"q{k}")
            assert exact is not None
            assert exact.response == f"a{k}"
            semantic = cache.get(f"paraphrase {k}", embedding=unit(k, DIM))
            assert semantic is not None, f"entry {k} is not in the index"
            assert semantic.response == f"a{k}"
        for k in sorted(ledger.deleted):
            assert cache.get(f"q{k}") is None
            assert cache.get(f"paraphrase {k}", embedding=unit(k, DIM)) is None
        stats = cache.stats()
        assert stats["indexed"].get("default", 0) == stats["entries"].get("default", 0)


@pytest.mark.slow
def test_sigkill_at_random_points_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    rng = np.random.default_rng(SEED)
    ledger = Ledger()
    started = time.monotonic()
    for run in range(KILLS):
        lines = int(rng.integers(2, MAX_LINES))
        run_writer_until_killed(path, SEED + run, (run + 1) * 1_000_000, lines, ledger)
        check_file(path, ledger)
        if run % 4 == 3 or run == KILLS - 1:
            check_served(path, ledger)  # saves a fresh snapshot, the next writer loads it
        assert time.monotonic() - started < DEADLINE
    assert len(ledger.puts) > 500
    assert ledger.deleted


def test_a_corrupt_database_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    with SemanticCache(str(path)) as cache:
        cache.put_many([f"q{i}" for i in range(300)], ["x" * 500] * 300)
    data = bytearray(path.read_bytes())
    page = 4096
    rng = np.random.default_rng(7)
    for offset in range(page, len(data), page):  # every page but the first (the schema)
        data[offset : offset + page] = rng.integers(0, 256, page, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    with pytest.raises(StoreCorruptError, match=str(path)):
        use_fully(path)


def use_fully(path: Path) -> None:
    with SemanticCache(str(path)) as cache:
        cache.get("q1")
        cache.put("another", "y")
        cache.stats()
