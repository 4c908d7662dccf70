"""The semantic get searches an hnswlib graph outside the engine's lock
(``HnswlibIndex.reader``, run by ``_get._Scan``), then checks the result under the lock.

hnswlib's search reads the graph without locks while an add may reallocate it
(``resize_index``) or publish a new entry point, so the index keeps a readers-writer gate:
a change (add, resize, tombstone, ef) waits for the searches under way, a search waits
for a change under way. The first tests force both orders on the native calls (a proxy
holds the native search, or the native change, until the test lets it go; the test
sees the other thread wait at the gate); the rest force the get's interleavings (a hook
between the unlocked search and the re-lock resizes, saves and compacts; the delete,
clear and close interleavings run on hnswlib in tests/test_unlocked_scan.py) and race
writer and reader threads.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import test_unlocked_scan as scan
from test_unlocked_scan import DIM, fill, near, unit

from semcache import SemanticCache
from semcache._cache import engine_of
from semcache._index import HnswlibIndex

pytest.importorskip("hnswlib")

GUARD = 30.0  # seconds: only a broken gate waits this long (then the test fails)

#: test_unlocked_scan's fixtures, here too: every search outside the lock, and the
#: one-shot hook between the search and the re-lock.
unlocked_always = scan.unlocked_always
hook = scan.hook


class Held:
    """Wraps a native hnswlib index: logs the calls, and holds the one named ``hold``
    (after logging its start) until ``release`` is set."""

    def __init__(self, native: Any, hold: str) -> None:
        self._native, self._hold = native, hold
        self.log: list[str] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        self.log.append(name)
        if name == self._hold:
            self.entered.set()
            assert self.release.wait(GUARD)
        out = getattr(self._native, name)(*args, **kwargs)
        self.log.append(f"{name} done")
        return out

    def knn_query(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("knn_query", *args, **kwargs)

    def resize_index(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("resize_index", *args, **kwargs)

    def mark_deleted(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("mark_deleted", *args, **kwargs)

    def set_ef(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("set_ef", *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._native, name)


def waits_seen(index: HnswlibIndex) -> threading.Event:
    """An event set when a thread starts waiting at the index's gate."""
    seen = threading.Event()
    cond = index._gate._cond
    wait = cond.wait

    def observed(timeout: float | None = None) -> bool:
        seen.set()
        return wait(timeout)

    cond.wait = observed  # type: ignore[method-assign]
    return seen


def graph(rows: int = 60) -> tuple[HnswlibIndex, np.ndarray]:
    rng = np.random.default_rng(1)
    x = np.stack([unit(rng) for _ in range(rows)])
    index = HnswlibIndex(DIM, M=8, ef_construction=32, ef_search=16)
    index.add(np.arange(rows), x)  # capacity 64: 100 more rows resize it
    return index, x


CHANGES: dict[str, tuple[str, Callable[[HnswlibIndex], object]]] = {
    "add and resize": (
        "resize_index",
        lambda ix: ix.add(np.arange(100, 200), np.eye(DIM, dtype=np.float32)[np.arange(100) % DIM]),
    ),
    "tombstone": ("mark_deleted", lambda ix: ix.remove([3, 4])),
    "ef": ("set_ef", lambda ix: ix.set_ef_search(40)),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_change_waits_for_the_search_under_way(change: str) -> None:
    native_call, do = CHANGES[change]
    index, x = graph()
    held = Held(index._native, hold="knn_query")
    index._native = held
    reader = index.reader()
    out: list[Any] = []
    searcher = threading.Thread(target=lambda: out.append(reader(x[7], 1)))
    searcher.start()
    assert held.entered.wait(GUARD)  # the search is inside the native call
    seen = waits_seen(index)
    writer = threading.Thread(target=do, args=(index,))
    writer.start()
    assert seen.wait(GUARD)  # the change waits at the gate...
    assert native_call not in held.log  # ...and has not touched the native index
    held.release.set()
    searcher.join(GUARD)
    writer.join(GUARD)
    assert held.log.index("knn_query done") < held.log.index(native_call)
    assert out[0] is not None
    assert int(out[0][0][0]) == 7


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_search_waits_for_the_change_under_way(change: str) -> None:
    native_call, do = CHANGES[change]
    index, x = graph()
    held = Held(index._native, hold=native_call)
    index._native = held
    reader = index.reader()
    writer = threading.Thread(target=do, args=(index,))
    writer.start()
    assert held.entered.wait(GUARD)  # the change is inside the native call
    seen = waits_seen(index)
    out: list[Any] = []
    searcher = threading.Thread(target=lambda: out.append(reader(x[7], 1)))
    searcher.start()
    assert seen.wait(GUARD)  # the search waits at the gate
    assert "knn_query" not in held.log
    held.release.set()
    writer.join(GUARD)
    searcher.join(GUARD)
    assert held.log.index(f"{native_call} done") < held.log.index("knn_query")
    if change == "tombstone":
        assert out[0] is not None
        assert int(out[0][0][0]) == 7  # 3 and 4 went, 7 is still there


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_can_change_a_graph_a_parent_search_held() -> None:
    """A fork while a search holds the gate (another thread of the parent, here the
    test itself): the child has no such thread, and its first change must not wait for
    it for ever."""
    index, x = graph()
    index._gate.begin_read()  # a search under way at the fork
    pid = os.fork()
    if pid == 0:  # the child: exits 0 when the change went through
        signal.alarm(20)  # a gate left held would hang here: SIGALRM ends the child
        try:
            index.add([1000], x[:1])
            index.remove([1000])
        finally:
            os._exit(0 if 1000 not in index else 1)
    index._gate.end_read()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status), "the child hung on the gate"
    assert os.WEXITSTATUS(status) == 0


def test_rows_added_after_the_view_are_left_to_the_locked_search() -> None:
    """The reader maps rows with the id table as it was when taken: a row added since
    (its id maybe in a newer array) makes it answer None, and the get searches again
    under the lock."""
    index, x = graph()
    reader = index.reader()
    index.add([500], x[7:8] * -1 + 0)  # another row...
    index.add([501], x[7:8])  # ...and one equal to row 7, appended after the view
    index.remove([7])
    assert reader(x[7], 1) is None
    ids, _ = index.search(x[7], 1)
    assert int(ids[0]) == 501


def test_compaction_and_close_leave_the_reader_on_the_old_graph() -> None:
    index, x = graph()
    reader = index.reader()
    index.remove(list(range(30)))
    index.compact()  # a new native index; the reader keeps the old one, unchanged since
    ids, _ = reader(x[40], 1)  # type: ignore[misc]
    assert int(ids[0]) == 40
    index.close()
    ids, _ = reader(x[41], 1)  # type: ignore[misc]
    assert int(ids[0]) == 41


# -- the get's interleavings ------------------------------------------------------------
def make(tmp_path: Path, **kw: Any) -> SemanticCache:
    """test_unlocked_scan's cache, on an hnswlib index."""
    kw.setdefault("index_backend", "hnswlib")
    return scan.make(tmp_path, **kw)


@pytest.mark.parametrize("backend", ["hnswlib", "auto"])
def test_the_graph_search_runs_with_the_lock_free(tmp_path: Path, hook: Any, backend: str) -> None:
    rng = np.random.default_rng(1)
    options = {"switch_at": 20, "background": False, "decide": "rows"} if backend == "auto" else {}
    with make(tmp_path, index_backend=backend, index_options=options) as cache:
        vs = fill(cache, rng, 50)
        eng = engine_of(cache)
        index = eng.indexes.of("default")
        assert getattr(index, "active", "hnswlib") == "hnswlib"
        scan.assert_the_search_leaves_the_lock_free(cache, hook, rng, vs)


def test_puts_that_resize_the_graph_then_a_delete(tmp_path: Path, hook: Any) -> None:
    """During the search: 200 puts (the graph resized twice, capacity 64 -> 256), one
    of them nearer the query, then the best candidate deleted. Something matching
    existed throughout: the get hits, and not the deleted entry."""
    rng = np.random.default_rng(2)
    with make(tmp_path) as cache:
        vs = fill(cache, rng, 50)
        query = near(vs[3], rng, 0.01)
        index = engine_of(cache).indexes.of("default")
        assert isinstance(index, HnswlibIndex)
        cap = index._native.get_max_elements()

        def grow_then_delete() -> None:
            fill(cache, np.random.default_rng(20), 200, prefix="more")
            cache.put("newcomer", "r-new", embedding=near(query, rng, 0.001))
            assert cache.delete("q3")

        calls = hook(grow_then_delete)
        hit = cache.get("paraphrase", embedding=query)
        assert calls
        assert index._native.get_max_elements() > cap
        assert hit is not None
        assert hit.response == "r-new"


def test_a_save_and_a_compaction_during_the_search(tmp_path: Path, hook: Any) -> None:
    rng = np.random.default_rng(3)
    with make(tmp_path) as cache:
        vs = fill(cache, rng, 60)
        query = near(vs[41], rng)
        eng = engine_of(cache)

        def save_delete_compact() -> None:
            with eng.lock:
                eng.indexes.save()
            for i in range(40):
                cache.delete(f"q{i}")
            cache.compact()

        calls = hook(save_delete_compact)
        hit = cache.get("paraphrase", embedding=query)
        assert calls
        assert hit is not None
        assert hit.response == "r41"
        assert hit.similarity == pytest.approx(float(vs[41] @ query), abs=1e-3)
    with make(tmp_path) as cache:  # the snapshot saved mid-search reopens
        assert cache.get("again", embedding=query).response == "r41"  # type: ignore[union-attr]
