"""``auto``: a flat index while a namespace is small, a graph index once it grows.

While ``len(index) < switch_at`` every call goes to a :class:`FlatIndex` (exact, and
the fastest choice at that size). The add that reaches ``switch_at`` starts building a
graph (hnswlib if installed, else faiss HNSW; with ``dtype=float16`` faiss is preferred
because it stores fp16) from the live rows. With ``background=True`` (the default) the
build runs on a worker thread (hnswlib and faiss release the GIL) while the flat index
keeps serving every call; adds and removes made meanwhile are recorded and replayed onto
the graph. The next call after the build finishes replays the few operations still
pending and swaps the graph in; the flat index is then released. No entry is lost and
searches are never blocked by the build itself; the swap costs only the replay of the
operations made during the last moments of the build. With ``background=False`` the add
that crosses the threshold builds the graph before returning (deterministic; tests).

Memory: during a build the flat matrix and the graph coexist. The index stays a graph
once switched (compact does not switch back). Tombstones are reclaimed by themselves
once they reach ``max(live rows, 1024)`` (``_common.compaction_due``): the flat index
copies its live rows in place; a graph is rebuilt from a copy of its live rows on the
build thread (as above: it keeps serving, calls made meanwhile are replayed, the next
call swaps), or in place with ``background=False``. If no graph library is installed it
stays flat. A build that fails leaves the index flat and keeps the error in
:attr:`AutoIndex.build_error`.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from .._dist import install_hint
from .._errors import ConfigurationError, MissingDependencyError
from ._base import IdArray, ScoreArray
from ._common import (
    MAX_DIM,
    MAX_EF,
    MAX_M,
    Snapshot,
    bounded_field,
    check_dim,
    check_dtype,
    closed_error,
    compaction_due,
    parse_options,
    read_snapshot,
    snapshot_field,
    write_snapshot,
)
from ._faiss import FaissIndex
from ._flat import FlatIndex
from ._graph import (
    DEFAULT_EF_CONSTRUCTION,
    DEFAULT_EF_SEARCH,
    DEFAULT_M,
    GraphReader,
    HnswlibIndex,
    RowGraphIndex,
)
from ._probe import CostModel, measured_cost, probe_queries, timer, top1

__all__ = ["DEFAULT_SWITCH_AT", "AutoIndex", "CostModel", "measured_cost"]

#: Options a snapshot's header may state, and their bounds (checked before use).
_BOUNDS = {"M": MAX_M, "ef_construction": MAX_EF, "ef_search": MAX_EF, "build_threads": 1024}

#: Live rows at which ``auto`` first considers a graph (``decide="measure"``: it probes
#: there, and again at every doubling after a probe that kept it flat).
DEFAULT_SWITCH_AT = 50_000
#: Rows of the probe's sample graph, and the queries it times.
DEFAULT_PROBE_ROWS = 8192
_PROBE_QUERIES = 64
#: Recall@1 (against the exact scan, on near duplicates of the namespace's own rows) the
#: graph must reach; the probe raises ``ef_search`` (up to ``_MAX_PROBE_EF``) to get it.
DEFAULT_RECALL = 0.99
_MAX_PROBE_EF = 1024
#: The probe's prediction must beat the flat scan by this factor to start a full build
#: (an extrapolation is not a measurement); the built graph must then beat it outright.
_PROBE_MARGIN = 1.5


class _Cancelled(Exception):
    """close() stopped a probe."""


class _Decision(dict[str, Any]):
    """One probe or verification: rows, stage, flat_s, graph_s, recall, ef, switch."""


# Rows inserted per step of a background build (a close() waits at most one step).
_BUILD_CHUNK = 4096

_F16 = np.dtype(np.float16)


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _resolve_graph(graph: str, dtype: np.dtype[Any]) -> str | None:
    if graph == "none":
        return None
    if graph != "auto":
        return graph
    order = ("faiss", "hnswlib") if dtype == _F16 else ("hnswlib", "faiss")
    for name in order:
        if _installed(name):
            return name
    return None


class _Builder:
    """Builds a graph on a worker thread from a frozen view of the flat rows."""

    def __init__(
        self,
        make: Callable[[], RowGraphIndex],
        ids: IdArray,
        mat: npt.NDArray[Any],
        rows: npt.NDArray[Any],
        probe: Callable[[threading.Event], _Decision] | None = None,
    ) -> None:
        self._make = make
        self._ids, self._mat, self._rows = ids, mat, rows
        self._probe = probe
        self.decision: _Decision | None = None
        self.lock = threading.Lock()
        self.pending: list[tuple[str, Any, Any]] = []
        self.cancel = threading.Event()
        self.done = threading.Event()
        self.graph: RowGraphIndex | None = None
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None

    def record(self, op: str, ids: Any, vectors: Any = None) -> None:
        with self.lock:
            self.pending.append((op, ids, vectors))

    def start(self) -> None:
        self.thread = threading.Thread(target=self.run, name="semcache-graph-build", daemon=True)
        self.thread.start()

    def run(self) -> None:
        try:
            if self._probe is not None:
                try:
                    self.decision = self._probe(self.cancel)
                except _Cancelled:
                    return
                if not self.decision["switch"]:
                    return
            graph = self._make()
            if self.decision is not None:
                graph.set_ef_search(self.decision["ef"], tuned=graph.ef_tuned)
            # The matrix rows below the frozen row count are never written again by
            # FlatIndex (adds append, compact allocates anew), so no copy is needed.
            for lo in range(0, self._rows.shape[0], _BUILD_CHUNK):
                if self.cancel.is_set():
                    graph.close()
                    return
                chunk = self._rows[lo : lo + _BUILD_CHUNK]
                graph.add(self._ids[lo : lo + _BUILD_CHUNK], self._mat[chunk])
            while not self.cancel.is_set():  # catch up on calls made meanwhile
                with self.lock:
                    ops, self.pending = self.pending, []
                if not ops:
                    break
                _replay(graph, ops)
            self.graph = graph
        except BaseException as exc:  # reported through build_error
            self.error = exc
        finally:
            self._mat = np.empty((0, 0))
            self.done.set()


def _replay(graph: RowGraphIndex, ops: list[tuple[str, Any, Any]]) -> None:
    for op, ids, vectors in ops:
        if op == "add":
            graph.add(ids, vectors)
        else:
            graph.remove(ids)


class AutoIndex:
    """Flat while small, a graph index (hnswlib or faiss HNSW) from ``switch_at`` rows.

    Raises:
        ConfigurationError: bad parameters.
        MissingDependencyError: ``graph`` names a library that is not installed.
    """

    backend: ClassVar[str] = "auto"

    def __init__(
        self,
        dim: int,
        *,
        dtype: npt.DTypeLike = np.float32,
        switch_at: int | None = None,
        graph: str = "auto",
        background: bool = True,
        M: int = DEFAULT_M,
        ef_construction: int = DEFAULT_EF_CONSTRUCTION,
        ef_search: int | None = None,
        build_threads: int | None = None,
        kernel: str | None = None,
        shadow: bool | None = None,
        decide: str | None = None,
        recall: float = DEFAULT_RECALL,
        probe_rows: int = DEFAULT_PROBE_ROWS,
        cost: CostModel | None = None,
    ) -> None:
        self._dim = check_dim(dim)
        self._dtype = check_dtype(dtype)
        if switch_at is not None and switch_at < 1:
            raise ConfigurationError(f"switch_at must be >= 1, got {switch_at}")
        if decide is None:  # a row count given explicitly is obeyed as before
            decide = "measure" if switch_at is None else "rows"
        if decide not in ("measure", "rows"):
            raise ConfigurationError(f"decide must be measure or rows, got {decide!r}")
        if not 0.0 < recall <= 1.0:
            raise ConfigurationError(f"recall must be in (0, 1], got {recall!r}")
        if probe_rows < 256:
            raise ConfigurationError(f"probe_rows must be >= 256, got {probe_rows}")
        self._decide = decide
        self._recall = float(recall)
        self._probe_rows = int(probe_rows)
        self._cost: CostModel = cost or measured_cost
        #: Every probe and verification made, oldest first (see :meth:`_probe`).
        self.decisions: list[dict[str, Any]] = []
        if graph not in ("auto", "hnswlib", "faiss", "none"):
            raise ConfigurationError(f"graph must be auto, hnswlib, faiss or none, got {graph!r}")
        self._graph_name = _resolve_graph(graph, self._dtype)
        if self._graph_name is not None and not _installed(self._graph_name):
            raise MissingDependencyError(
                f"index option graph={graph!r} needs {self._graph_name}: "
                f"{install_hint(self._graph_name)}"
            )
        self._switch_at = DEFAULT_SWITCH_AT if switch_at is None else int(switch_at)
        self._next_at = self._switch_at  # doubles after each probe that keeps it flat
        self._background = bool(background)
        self._graph_kw: dict[str, Any] = {
            "M": int(M),
            "ef_construction": int(ef_construction),
            "ef_search": None if ef_search is None else int(ef_search),
        }
        #: With no ef_search given, the graph tunes its own (see ``_graph``) from this
        #: floor: the probe's ef, then the ef of the graph swapped in (for rebuilds).
        self._ef_floor = DEFAULT_EF_SEARCH
        self._build_threads = build_threads
        self._kernel = kernel
        self._shadow = shadow
        self._inner: FlatIndex | RowGraphIndex = FlatIndex(
            self._dim, dtype=self._dtype, kernel=kernel, shadow=shadow
        )
        self._builder: _Builder | None = None
        self.build_error: BaseException | None = None
        self._closed = False

    _OPTION_KEYS: ClassVar[tuple[str, ...]] = (
        "switch_at",
        "graph",
        "background",
        "M",
        "ef_construction",
        "ef_search",
        "build_threads",
        "kernel",
        "shadow",
        "decide",
        "recall",
        "probe_rows",
    )

    @classmethod
    def from_options(cls, dim: int, dtype: npt.DTypeLike, options: Mapping[str, Any]) -> AutoIndex:
        """Build from ``make_index`` options.

        Raises:
            ConfigurationError: an unknown option key or a bad value.
        """
        return cls(dim, dtype=dtype, **parse_options("auto", options, cls._OPTION_KEYS))

    # -- state --------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self._dim

    @property
    def dtype(self) -> np.dtype[Any]:
        return self._dtype

    @property
    def active(self) -> str:
        """The backend serving now: ``"flat"``, ``"hnswlib"`` or ``"faiss"``."""
        self._check_open()
        return self._inner.backend

    @property
    def building(self) -> bool:
        """True while a background graph build is under way."""
        self._check_open()
        return self._builder is not None

    @property
    def switch_at(self) -> int:
        return self._switch_at

    @property
    def tombstones(self) -> int:
        self._step()
        return self._inner.tombstones

    @property
    def nbytes(self) -> int:
        """Bytes held by the serving index (a graph under construction not included)."""
        self._step()
        return self._inner.nbytes

    def __len__(self) -> int:
        self._step()
        return len(self._inner)

    def __contains__(self, entry_id: object) -> bool:
        self._step()
        return entry_id in self._inner

    def ids(self) -> IdArray:
        """The live ids."""
        self._step()
        return self._inner.ids()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a background build to finish and swap it in; True when none is left.

        Raises:
            CacheClosedError: the index is closed.
        """
        self._check_open()
        b = self._builder
        if b is not None and not b.done.wait(timeout):
            return False
        self._step()
        return self._builder is None

    # -- calls --------------------------------------------------------------------------
    def add(self, ids: npt.ArrayLike, vectors: npt.ArrayLike) -> None:
        """Add or replace rows (see :class:`VectorIndex`); may start the graph build.

        Raises:
            CacheClosedError: the index is closed.
            DimensionMismatchError: vectors of another dimension.
            InvalidEmbeddingError: not 2-d, or ids and vectors of different lengths.
        """
        self._step()
        self._inner.add(ids, vectors)
        if self._builder is not None:
            self._builder.record("add", np.array(ids, dtype=np.int64), np.array(vectors))
        self._maybe_start()
        self._maybe_compact_graph()  # replaced ids are tombstones too

    def remove(self, ids: npt.ArrayLike) -> int:
        """Tombstone the live ones among ``ids``; return how many. A graph whose
        tombstones reach ``compaction_due`` is rebuilt from its live rows on the build
        thread (with ``background``; else it compacts itself in place).

        Raises:
            CacheClosedError: the index is closed.
        """
        self._step()
        removed = self._inner.remove(ids)
        if removed and self._builder is not None:
            self._builder.record("remove", np.array(ids, dtype=np.int64))
        if removed:
            self._maybe_compact_graph()
        return removed

    def compact(self) -> int:
        """Reclaim tombstones of the serving index; return how many.

        Raises:
            CacheClosedError: the index is closed.
        """
        self._step()
        return self._inner.compact()

    def search(self, query: npt.ArrayLike, k: int) -> tuple[IdArray, ScoreArray]:
        """Top-k live ids (exact while flat), best first.

        Raises:
            CacheClosedError: the index is closed.
            ValueError: ``k < 1``.
            DimensionMismatchError: a query of another dimension.
        """
        self._step()
        return self._inner.search(query, k)

    def reader(self) -> GraphReader | None:
        """The serving index's read view to search outside the caller's lock: the flat
        index's :meth:`~FlatIndex.reader` or hnswlib's :meth:`~HnswlibIndex.reader`;
        None for faiss (searched under the caller's lock).

        Raises:
            CacheClosedError: the index is closed.
        """
        self._step()
        inner = self._inner
        if isinstance(inner, (FlatIndex, HnswlibIndex)):
            return inner.reader()
        return None

    def search_batch(self, queries: npt.ArrayLike, k: int) -> tuple[IdArray, ScoreArray]:
        """:meth:`search` for each row of ``queries``.

        Raises:
            CacheClosedError: the index is closed.
            ValueError: ``k < 1``.
            DimensionMismatchError: queries of another dimension.
        """
        self._step()
        return self._inner.search_batch(queries, k)

    # -- switching ----------------------------------------------------------------------
    def _make_graph(self, build_threads: int | None) -> RowGraphIndex:
        kw = dict(self._graph_kw, build_threads=build_threads)
        graph: RowGraphIndex
        if self._graph_name == "faiss":
            graph = FaissIndex(self._dim, dtype=self._dtype, kind="hnsw", **kw)
        else:
            graph = HnswlibIndex(self._dim, dtype=self._dtype, **kw)
        graph.auto_compact = not self._background
        if graph.ef_tuned and self._ef_floor != graph.ef_search:
            graph.set_ef_search(self._ef_floor, tuned=True)
        return graph

    def _threads(self) -> int:
        """Build threads: every core (the flat index keeps serving meanwhile; hnswlib and
        faiss release the GIL)."""
        if hasattr(os, "sched_getaffinity"):
            cpus = len(os.sched_getaffinity(0))
        else:
            cpus = os.cpu_count() or 1
        return self._build_threads or max(1, cpus)

    def _maybe_compact_graph(self) -> None:
        """Rebuild a graph whose tombstones are due (``compaction_due``) on the build
        thread, from a copy of its live rows; calls meanwhile are recorded and replayed,
        as for the first build. A flat index compacts itself (a copy, no rebuild)."""
        inner = self._inner
        if (
            not self._background
            or isinstance(inner, FlatIndex)
            or self._builder is not None
            or self.build_error is not None
            or not compaction_due(len(inner), inner.tombstones)
        ):
            return
        rows = inner._rows.live_rows()
        ids = inner._rows.ids[rows].copy()
        vectors = np.ascontiguousarray(inner._native_vectors(rows), dtype=np.float32)
        threads = self._threads()
        self._builder = _Builder(
            lambda: self._make_graph(threads), ids, vectors, np.arange(ids.shape[0])
        )
        self._builder.start()

    def _maybe_start(self) -> None:
        inner = self._inner
        if (
            self._graph_name is None
            or self._builder is not None
            or self.build_error is not None
            or not isinstance(inner, FlatIndex)
            or len(inner) < self._next_at
        ):
            return
        rows = inner._rows.live_rows()
        ids = inner._rows.ids[rows]
        mat = inner._mat
        probe: Callable[[threading.Event], _Decision] | None = None
        threads = self._threads() if self._background else self._build_threads
        if self._decide == "measure":
            flat_s = self._flat_cost(inner, mat, rows)
            n = int(rows.shape[0])
            probe = lambda cancel: self._probe(mat, rows, flat_s, n, threads, cancel)  # noqa: E731
        if not self._background:
            decision = None if probe is None else probe(threading.Event())
            if decision is not None:
                self.decisions.append(decision)
                if not decision["switch"]:
                    self._next_at = 2 * len(inner)
                    return
            graph = self._make_graph(self._build_threads)
            if decision is not None:
                graph.set_ef_search(decision["ef"], tuned=graph.ef_tuned)
            graph.add(ids, mat[rows])
            self._swap_in(graph)
            return
        self._builder = _Builder(lambda: self._make_graph(threads), ids, mat, rows, probe)
        self._builder.start()

    # -- measuring ----------------------------------------------------------------------
    def _flat_cost(self, flat: FlatIndex, mat: npt.NDArray[Any], rows: npt.NDArray[Any]) -> float:
        """Seconds per search of the flat index as it is (16 near-duplicate queries)."""
        queries = probe_queries(mat, rows, 16, seed=int(rows.shape[0]))
        return self._cost("flat", len(flat), timer(flat, queries), len(queries))

    def _probe(
        self,
        mat: npt.NDArray[Any],
        rows: npt.NDArray[Any],
        flat_s: float,
        n: int,
        threads: int | None,
        cancel: threading.Event,
    ) -> _Decision:
        """Predict what a graph of all ``n`` rows would cost a get, from a graph of a
        sample of them (``probe_rows``) built at a quarter and at all of the sample:
        raise ``ef_search`` until near duplicates of the namespace's own rows find their
        exact top-1 at the required ``recall``, then extrapolate the time per search
        from the two sizes (a power law, exponent clamped to [0.05, 1]). Runs on the
        build thread (it only reads rows below the frozen count); ``cancel`` (close())
        stops it between chunks of 1024 rows."""
        rng = np.random.default_rng(n)
        size = min(n, self._probe_rows)
        pick = np.sort(rng.choice(rows.shape[0], size=size, replace=False))
        vecs = np.ascontiguousarray(mat[rows[pick]], dtype=np.float32)
        part = max(size // 4, 1)
        queries = probe_queries(vecs, np.arange(part), _PROBE_QUERIES, seed=n + 1)
        exact = np.argmax(queries @ vecs.T, axis=1)
        graph = self._make_graph(threads)

        def add(lo: int, hi: int) -> None:
            for start in range(lo, hi, 1024):
                if cancel.is_set():
                    raise _Cancelled
                stop = min(hi, start + 1024)
                graph.add(np.arange(start, stop), vecs[start:stop])

        try:
            add(0, part)
            nq = len(queries)
            small = self._cost(graph.backend, part, timer(graph, queries), nq)
            add(part, size)
            full = self._cost(graph.backend, size, timer(graph, queries), nq)
            ef = first_ef = graph.ef_search
            got = float(np.mean(top1(graph, queries) == exact))
            while got < self._recall and ef < _MAX_PROBE_EF:
                ef = min(2 * ef, _MAX_PROBE_EF)
                graph.set_ef_search(ef, tuned=graph.ef_tuned)
                got = float(np.mean(top1(graph, queries) == exact))
            at_ef = full
            if ef != first_ef:
                at_ef = self._cost(graph.backend, size, timer(graph, queries), nq)
        finally:
            graph.close()
        slope = 1.0
        if size > part and small > 0.0 and full > 0.0:
            slope = math.log(full / small) / math.log(size / part)
        slope = min(max(slope, 0.05), 1.0)
        predicted = at_ef * (n / size) ** slope
        return _Decision(
            rows=n,
            stage="probe",
            flat_s=flat_s,
            graph_s=predicted,
            recall=got,
            ef=ef,
            switch=got >= self._recall and predicted * _PROBE_MARGIN < flat_s,
        )

    def _verify(self, graph: RowGraphIndex) -> _Decision:
        """Measure the built graph against the flat index it would replace, on the same
        near-duplicate queries: recall@1 against the exact scan (raising ``ef_search``
        as the probe does, up to ``_MAX_PROBE_EF``, when the full graph misses more than
        the sample did), and time per search at that ef."""
        flat = self._inner
        assert isinstance(flat, FlatIndex)
        rows = flat._rows.live_rows()
        n = int(rows.shape[0])
        queries = probe_queries(flat._mat, rows, 32, seed=n + 2)
        exact = top1(flat, queries)
        got = float(np.mean(top1(graph, queries) == exact))
        ef = graph.ef_search
        while got < self._recall and ef < _MAX_PROBE_EF:
            ef = min(2 * ef, _MAX_PROBE_EF)
            graph.set_ef_search(ef, tuned=graph.ef_tuned)
            got = float(np.mean(top1(graph, queries) == exact))
        flat_s = self._cost("flat", n, timer(flat, queries[:16]), 16)
        graph_s = self._cost(graph.backend, n, timer(graph, queries), len(queries))
        return _Decision(
            rows=n,
            stage="verify",
            flat_s=flat_s,
            graph_s=graph_s,
            recall=got,
            ef=graph.ef_search,
            switch=got >= self._recall and graph_s < flat_s,
        )

    def _swap_in(self, graph: RowGraphIndex) -> None:
        """Serve from ``graph`` if it is no slower (``decide="measure"``: verified), else
        keep the flat index and probe again at twice the rows."""
        old = self._inner
        if self._decide == "measure" and isinstance(old, FlatIndex):
            decision = self._verify(graph)
            self.decisions.append(decision)
            if not decision["switch"]:
                graph.close()
                self._next_at = 2 * len(old)
                return
        if graph.ef_tuned:  # a rebuild starts from it and goes on tuning
            self._ef_floor = graph.ef_search
        else:  # kept by later rebuilds and snapshots
            self._graph_kw["ef_search"] = graph.ef_search
        self._inner = graph
        old.close()

    def _step(self) -> None:
        """Swap in a finished background graph (called at the start of every call)."""
        self._check_open()
        b = self._builder
        if b is None or not b.done.is_set():
            return
        if b.thread is not None:
            b.thread.join()
        self._builder = None
        if b.decision is not None:
            self.decisions.append(b.decision)
        if b.error is None and b.decision is not None and not b.decision["switch"]:
            self._next_at = 2 * len(self._inner)  # the probe kept it flat
            return
        if b.error is not None or b.graph is None:
            self.build_error = b.error or RuntimeError("graph build cancelled")
            return
        with b.lock:
            ops, b.pending = b.pending, []
        _replay(b.graph, ops)
        self._swap_in(b.graph)

    # -- persistence --------------------------------------------------------------------
    def _options(self) -> dict[str, Any]:
        return {
            "switch_at": self._switch_at,
            "decide": self._decide,
            "recall": self._recall,
            "probe_rows": self._probe_rows,
            "graph": self._graph_name or "none",
            "background": self._background,
            **{k: v for k, v in self._graph_kw.items() if v is not None},
            **({} if self._shadow is None else {"shadow": self._shadow}),
        }

    def save(self, path: str | os.PathLike[str], *, meta: Mapping[str, Any] | None = None) -> None:
        """Write a snapshot of the serving index (atomically: temporary file, rename).

        A build in progress is not saved; the loaded index restarts it on its next add.

        Raises:
            CacheClosedError: the index is closed.
            OSError: the file cannot be written.
        """
        self._step()
        header, arrays = self._inner._snapshot_parts()
        header["inner"] = self._inner.backend
        header["auto"] = self._options()
        header["meta"] = dict(meta or {})
        write_snapshot(path, "auto", header, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> AutoIndex:
        """Read a snapshot written by :meth:`save`.

        Raises:
            FileNotFoundError: no file at ``path``.
            ValueError: the file is not an auto-index snapshot, or it is corrupt.
        """
        snap = read_snapshot(path, defer_crc=True)
        if snap.backend != "auto":
            raise ValueError(f"{os.fspath(path)!r} is not an auto index snapshot")
        return cls._from_snapshot(snap, path)

    @classmethod
    def _from_snapshot(cls, snap: Snapshot, path: str | os.PathLike[str]) -> AutoIndex:
        try:
            index = cls._restore(snap, path)
        except ValueError:
            snap.verify(path)  # a file that fails its CRC is reported as corrupt first
            raise
        try:
            snap.verify(path)  # the graph blob's CRC-32, if it ran alongside
        except ValueError:
            index.close()
            raise
        return index

    @classmethod
    def _restore(cls, snap: Snapshot, path: str | os.PathLike[str]) -> AutoIndex:
        opts = snapshot_field(snap, "auto", path)
        inner_name = snapshot_field(snap, "inner", path)
        if not isinstance(opts, dict) or inner_name not in ("flat", "hnswlib", "faiss"):
            raise ValueError(f"{os.fspath(path)!r}: bad auto snapshot header")
        try:
            parsed = parse_options("auto", opts, cls._OPTION_KEYS)
            if "decide" not in parsed and parsed.get("switch_at") == DEFAULT_SWITCH_AT:
                # written before decide existed, with the default: measure from now on
                parsed["decide"] = "measure"
            for name, high in _BOUNDS.items():
                if isinstance(parsed.get(name), int) and parsed[name] > high:
                    raise ConfigurationError(f"{name} {parsed[name]} over {high}")
            index = cls(
                bounded_field(snap, "dim", path, MAX_DIM),
                dtype=np.dtype(str(snapshot_field(snap, "dtype", path))),
                **parsed,
            )
        except (ConfigurationError, TypeError) as exc:
            raise ValueError(f"{os.fspath(path)!r}: bad auto snapshot header: {exc}") from exc
        inner_cls: Any = {"flat": FlatIndex, "hnswlib": HnswlibIndex, "faiss": FaissIndex}[
            inner_name
        ]
        inner_snap = Snapshot(inner_name, snap.header, snap.arrays)
        if inner_cls is FlatIndex:
            inner = FlatIndex._from_snapshot(inner_snap, path, shadow=index._shadow)
        else:
            inner = inner_cls._from_snapshot(inner_snap, path)
            inner.auto_compact = not index._background
            if inner.ef_tuned:
                index._ef_floor = inner.ef_search
        index._inner.close()
        index._inner = inner
        return index

    def close(self) -> None:
        """Stop a build, release memory; later calls raise ``CacheClosedError``."""
        if self._closed:
            return
        b = self._builder
        if b is not None:
            b.cancel.set()
            if b.thread is not None:
                b.thread.join()
            if b.graph is not None:
                b.graph.close()
            self._builder = None
        self._inner.close()
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise closed_error()
