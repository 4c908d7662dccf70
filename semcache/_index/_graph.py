"""Approximate (graph) and faiss backends: :class:`HnswlibIndex` and :class:`FaissIndex`.

Both keep the same row model as :class:`~semcache._index.FlatIndex`: every added vector
gets the next internal label (its row), a :class:`RowTable` maps rows to entry ids, and
replacing or removing an id tombstones its row. Neither graph can truly delete, so
tombstones are filtered inside the native search (hnswlib ``mark_deleted``; faiss an
``IDSelectorBitmap``) and :meth:`compact` rebuilds the native index from the live
vectors. When a filtered graph search comes back with fewer than ``min(k, len)`` hits
(possible on tiny or heavily tombstoned graphs) the search falls back to an exact scan
of the live vectors, so the result size contract always holds.

``ef_search`` (the candidate list of a graph search) is the one knob between speed and
recall, and the recall a fixed ef gives falls as a graph grows (measured at 1M
MiniLM-like rows: recall@1 on near duplicates 0.999 at 200k rows with ef 64, 0.962 at
1M). An index whose ``ef_search`` is not given tunes it itself: from
:data:`EF_PROBE_MIN_ROWS` live rows, and again at every doubling, it probes near
duplicates of a sample of its own rows (:meth:`RowGraphIndex._tune_ef`) and raises ef
to the least value on a ladder at which they find their source at recall
:data:`EF_TARGET_RECALL` with 95% confidence. Smaller graphs keep
:data:`DEFAULT_EF_SEARCH`; an ef given by the caller is never changed.

:class:`HnswlibIndex` can be searched outside the caller's lock (:meth:`HnswlibIndex.reader`):
hnswlib's search reads its arrays without locks while an add may reallocate them
(``resize_index``) or publish a new entry point, so every change of the native index
waits for searches under way and searches wait for a change under way (a readers-writer
gate, :class:`~semcache._index._gate.Gate`).

faiss and hnswlib are optional extras, imported only when a backend is built.
"""

from __future__ import annotations

import math
import os
import struct
import sys
from collections.abc import Callable, Mapping
from time import perf_counter
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
    RowIndexBase,
    RowTable,
    Snapshot,
    bounded_field,
    check_dim,
    check_dtype,
    check_k,
    parse_options,
    prepare_add,
    prepare_queries,
    read_snapshot,
    snapshot_array,
    snapshot_field,
    write_snapshot,
)
from ._gate import Gate
from ._graph_blob import HnswLayout, check_hnsw_blob, hnsw_scratch, hnsw_state
from ._kernel import kernel as _active_kernel

__all__ = [
    "DEFAULT_EF_CONSTRUCTION",
    "DEFAULT_EF_SEARCH",
    "DEFAULT_M",
    "EF_PROBE_MIN_ROWS",
    "EF_TARGET_RECALL",
    "GraphReader",
    "HnswlibIndex",
    "RowGraphIndex",
    "allowed_misses",
]

DEFAULT_M = 32
DEFAULT_EF_CONSTRUCTION = 100
DEFAULT_EF_SEARCH = 64

#: Live rows from which an index with no ``ef_search`` given probes its own recall (and
#: again at every doubling of its rows since the last probe). Below it, ef stays
#: :data:`DEFAULT_EF_SEARCH`: at 200k MiniLM-like rows that already gives recall@1
#: 0.999, so small namespaces pay nothing.
EF_PROBE_MIN_ROWS = 32_768
#: Near-duplicate queries per probe (sampled live rows plus noise, see
#: :meth:`RowGraphIndex._tune_ef`).
EF_PROBE_QUERIES = 1024
#: The recall@1 on near duplicates a tuned ef must show (one-sided 95% confidence).
EF_TARGET_RECALL = 0.99
#: The efs a probe tries, in order, from the index's floor up (about sqrt(2) apart).
EF_LADDER = (64, 96, 128, 192, 256, 384, 512, 768, 1024)
#: The probe's queries: a sampled row plus noise of this norm (cosine ~0.989 with it,
#: the near duplicates of benchmarks/million_report.py).
_PROBE_NOISE = 0.15
#: A probe counts a hit when the top-1 scores at least its source's score less this
#: (float32 rounding of the two dot products).
_PROBE_TOLERANCE = 1e-5

_F16 = np.dtype(np.float16)

#: A search over a graph index outside the caller's lock (:meth:`HnswlibIndex.reader`):
#: ids and scores, or None when it could not answer alone (search again under the lock).
GraphReader = Callable[[npt.ArrayLike, int], "tuple[IdArray, ScoreArray] | None"]


def allowed_misses(probes: int, recall: float, confidence: float = 0.95) -> int:
    """The most misses among ``probes`` queries that still show a recall of at least
    ``recall`` at ``confidence``: the largest ``x`` whose exact one-sided Poisson upper
    bound on the mean miss count is at most ``probes * (1 - recall)``; -1 when even no
    miss cannot show it (too few probes)."""
    budget = probes * (1.0 - recall)
    alpha = 1.0 - confidence
    x = -1
    while True:
        nxt = x + 1
        # the upper bound for nxt misses: the lam where P(X <= nxt; lam) = alpha
        lo, hi = 0.0, 10.0 + 4.0 * nxt
        for _ in range(60):
            lam = (lo + hi) / 2
            term = cdf = math.exp(-lam)
            for i in range(1, nxt + 1):
                term *= lam / i
                cdf += term
            lo, hi = (lam, hi) if cdf > alpha else (lo, lam)
        if hi > budget:
            return x
        x = nxt


def import_hnswlib() -> Any:
    """Import hnswlib or say how to install it.

    Raises:
        MissingDependencyError: hnswlib is not installed (an ``ImportError``).
    """
    try:
        import hnswlib
    except ImportError as exc:
        raise MissingDependencyError(
            f"index backend 'hnswlib' needs hnswlib: {install_hint('hnswlib')}"
        ) from exc
    return hnswlib


def _build_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class RowGraphIndex(RowIndexBase):
    """Shared logic; subclasses wrap one native index whose labels are our rows."""

    backend: ClassVar[str] = ""
    _OPTION_KEYS: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        dim: int,
        *,
        dtype: npt.DTypeLike = np.float32,
        M: int = DEFAULT_M,
        ef_construction: int = DEFAULT_EF_CONSTRUCTION,
        ef_search: int | None = None,
        build_threads: int | None = None,
    ) -> None:
        self._dim = check_dim(dim)
        self._dtype = check_dtype(dtype)
        for name, value in (
            ("M", M),
            ("ef_construction", ef_construction),
            ("ef_search", DEFAULT_EF_SEARCH if ef_search is None else ef_search),
        ):
            if value < 1:
                raise ConfigurationError(f"{name} must be >= 1, got {value}")
        self._M = int(M)
        self._ef_construction = int(ef_construction)
        #: None: tuned by the index (see the module docstring); else the caller's.
        self._ef_tuned = ef_search is None
        self._ef_search = DEFAULT_EF_SEARCH if ef_search is None else int(ef_search)
        self._ef_probed_at = 0  # live rows at the last probe
        #: Every probe made, oldest first: rows, ef, misses, allowed, seconds.
        self.ef_probes: list[dict[str, Any]] = []
        self._gate = Gate()
        self._build_threads = int(build_threads) if build_threads else _build_threads()
        self._rows = RowTable(64)
        self._closed = False
        self._native: Any = self._new_native(64)

    @classmethod
    def from_options(cls, dim: int, dtype: npt.DTypeLike, options: Mapping[str, Any]) -> Any:
        """Build from ``make_index`` options.

        Raises:
            ConfigurationError: an unknown option key or a bad value.
        """
        opts = parse_options(cls.backend, options, cls._OPTION_KEYS)
        return cls(dim, dtype=dtype, **opts)

    # -- native hooks -------------------------------------------------------------------
    def _new_native(self, capacity: int) -> Any:
        raise NotImplementedError

    def _native_add(self, vecs: npt.NDArray[np.float32], start: int) -> None:
        raise NotImplementedError

    def _native_tombstone(self, rows: list[int]) -> None:
        raise NotImplementedError

    def _native_search(
        self, q: npt.NDArray[np.float32], k: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Rows (-1 when missing) and scores, shape ``(m, k)``."""
        raise NotImplementedError

    def _native_vectors(self, rows: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        raise NotImplementedError

    def _native_dump(self) -> npt.NDArray[np.uint8]:
        raise NotImplementedError

    def _native_restore(
        self, blob: npt.NDArray[np.uint8], n: int, capacity: int, layout: Any
    ) -> Any:
        """The native index from its blob; ``layout``: what :meth:`_check_blob` found."""
        raise NotImplementedError

    def _native_nbytes(self) -> int:
        raise NotImplementedError

    # -- properties ---------------------------------------------------------------------
    @property
    def nbytes(self) -> int:
        """Approximate bytes held (vectors, graph links, id table)."""
        self._check_open()
        return int(self._native_nbytes() + self._rows.ids.nbytes + self._rows.live.nbytes)

    @property
    def ef_search(self) -> int:
        return self._ef_search

    @property
    def ef_tuned(self) -> bool:
        """Whether the index tunes ``ef_search`` itself (none was given)."""
        return self._ef_tuned

    def set_ef_search(self, ef: int, *, tuned: bool = False) -> None:
        """Search with ``ef`` candidates from now on. ``tuned=False`` (the default): a
        fixed ef the index never changes; ``tuned=True``: a floor the index's own probe
        may raise as it grows (the ``auto`` probe's ef, measured on a sample).

        Raises:
            ConfigurationError: ``ef`` < 1.
        """
        if ef < 1:
            raise ConfigurationError(f"ef_search must be >= 1, got {ef}")
        self._ef_tuned = bool(tuned)
        self._set_ef(int(ef))

    def _set_ef(self, ef: int) -> None:
        self._ef_search = ef

    def _tunable(self) -> bool:
        return True

    def _maybe_tune_ef(self) -> None:
        """Probe from :data:`EF_PROBE_MIN_ROWS` live rows and at every doubling since."""
        live = self._rows.live_count
        if (
            self._ef_tuned
            and self._tunable()
            and live >= max(EF_PROBE_MIN_ROWS, 2 * self._ef_probed_at)
        ):
            self._tune_ef()

    def _tune_ef(self) -> None:
        """Raise ``ef_search`` to the least value of :data:`EF_LADDER` (from the current
        ef up) at which near duplicates of this graph's own rows find their source.

        ``EF_PROBE_QUERIES`` live rows are sampled (seeded by the row count); each query
        is a row plus noise of norm 0.15, and it is a hit when the graph's top-1 scores
        at least as high as its source row (the source, or a row nearer still): a miss
        is then certain, no exact scan of the whole index is needed, and a hit is what
        a cache needs (the stored near duplicate, or a better one). Queries are searched
        at the first ef, those that miss at the next, and so on, until the misses left
        are few enough to show :data:`EF_TARGET_RECALL` at 95% confidence
        (:func:`allowed_misses`: at most 4 of 1,024). ef only rises (recall at a fixed
        ef falls as a graph grows) and stops at the ladder's top.
        """
        t0 = perf_counter()
        live = self._rows.live_count
        self._ef_probed_at = live
        rng = np.random.default_rng(live)
        rows = self._rows.live_rows()
        pick = np.sort(rng.choice(rows.shape[0], size=min(EF_PROBE_QUERIES, live), replace=False))
        base = np.ascontiguousarray(self._native_vectors(rows[pick]), dtype=np.float32)
        noise = rng.standard_normal(base.shape).astype(np.float32)
        noise *= np.float32(_PROBE_NOISE) / np.linalg.norm(noise, axis=1, keepdims=True)
        q = base + noise
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        source = np.einsum("ij,ij->i", q, base) - np.float32(_PROBE_TOLERANCE)
        allowed = max(allowed_misses(q.shape[0], EF_TARGET_RECALL), 0)
        ladder = [self._ef_search] + [e for e in EF_LADDER if self._ef_search < e <= live]
        todo = np.arange(q.shape[0])
        chosen = ef = ladder[0]
        for ef in ladder:
            top = self._search_at(q[todo], ef)
            if top is None:  # no conclusion (fewer than ef rows reachable): stop here
                break
            chosen = ef
            todo = todo[~(top >= source[todo])]
            if todo.shape[0] <= allowed:
                break
        ef = chosen
        self.ef_probes.append(
            {
                "rows": live,
                "ef": ef,
                "misses": int(todo.shape[0]),
                "allowed": allowed,
                "seconds": perf_counter() - t0,
            }
        )
        if ef != self._ef_search:
            self._set_ef(ef)

    def _search_at(self, q: npt.NDArray[np.float32], ef: int) -> npt.NDArray[np.float32] | None:
        """The top-1 score of each query at ``ef`` (-inf where none), the index's own
        ef left as it is (for :meth:`_tune_ef`); None when the search cannot tell."""
        raise NotImplementedError

    # -- mutation -----------------------------------------------------------------------
    def _prepare(self, vectors: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        vecs = np.asarray(vectors)
        if self._dtype == _F16 and vecs.dtype != _F16:
            vecs = vecs.astype(_F16)  # the scores of the float16 vectors, like flat
        return np.ascontiguousarray(vecs, dtype=np.float32)

    def add(self, ids: npt.ArrayLike, vectors: npt.ArrayLike) -> None:
        """Add rows; an id already present is replaced (its old row is tombstoned).

        Raises:
            CacheClosedError: the index is closed.
            DimensionMismatchError: vectors of another dimension.
            InvalidEmbeddingError: not 2-d, or ids and vectors of different lengths.
        """
        self._check_open()
        id_arr, vecs = prepare_add(ids, vectors, self._dim)
        if id_arr.shape[0] == 0:
            return
        self.remove(id_arr)
        start = self._rows.n
        self._native_add(self._prepare(vecs), start)
        self._rows.append(id_arr)
        self._maybe_tune_ef()

    def remove(self, ids: npt.ArrayLike) -> int:
        """Tombstone the live ones among ``ids``; return how many.

        Raises:
            CacheClosedError: the index is closed.
        """
        self._check_open()
        rows = self._rows.remove(ids)
        if rows:
            self._native_tombstone(rows)
            self._maybe_compact()
        return len(rows)

    def compact(self) -> int:
        """Rebuild the native index from the live vectors; return the rows reclaimed.

        Raises:
            CacheClosedError: the index is closed.
        """
        self._check_open()
        reclaimed = self._rows.tombstones
        if reclaimed == 0:
            return 0
        rows = self._rows.live_rows()
        vecs = self._native_vectors(rows) if rows.size else np.empty((0, self._dim), np.float32)
        ids = self._rows.ids[rows]
        self._native = self._new_native(max(64, rows.shape[0]))
        self._rows.reset(ids)
        if rows.size:
            self._native_add(np.ascontiguousarray(vecs, dtype=np.float32), 0)
        return reclaimed

    # -- search -------------------------------------------------------------------------
    def search(self, query: npt.ArrayLike, k: int) -> tuple[IdArray, ScoreArray]:
        """The ``min(k, len(self))`` best live ids (approximate for graphs), best first.

        Raises:
            CacheClosedError: the index is closed.
            ValueError: ``k < 1``.
            DimensionMismatchError: a query of another dimension.
        """
        ids, scores = self.search_batch(np.asarray(query, dtype=np.float32).reshape(1, -1), k)
        return ids[0], scores[0]

    def search_batch(self, queries: npt.ArrayLike, k: int) -> tuple[IdArray, ScoreArray]:
        """:meth:`search` for each row of ``queries``; shape ``(m, min(k, len(self)))``.

        Raises:
            CacheClosedError: the index is closed.
            ValueError: ``k < 1``.
            DimensionMismatchError: queries of another dimension.
        """
        self._check_open()
        check_k(k)
        q = prepare_queries(queries, self._dim)
        kk = min(k, self._rows.live_count)
        m = q.shape[0]
        if kk == 0:
            return np.empty((m, 0), dtype=np.int64), np.empty((m, 0), dtype=np.float32)
        rows, scores = self._native_search(q, kk)
        short = (rows[:, :kk] < 0).any(axis=1) if rows.shape[1] >= kk else np.ones(m, bool)
        if short.any():
            exact_rows, exact_scores = self._exact(q[short], kk)
            rows = np.array(rows[:, :kk], dtype=np.int64)
            scores = np.array(scores[:, :kk], dtype=np.float32)
            rows[short], scores[short] = exact_rows, exact_scores
        return self._rows.ids[rows[:, :kk]], np.ascontiguousarray(scores[:, :kk], np.float32)

    def _exact(
        self, q: npt.NDArray[np.float32], k: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        rows = self._rows.live_rows()
        vecs = np.ascontiguousarray(self._native_vectors(rows), dtype=np.float32)
        sub, scores = _active_kernel.topk_batch(vecs, vecs.shape[0], None, q, k)
        return rows[sub].astype(np.int64), scores

    # -- persistence ----------------------------------------------------------------------
    def _header(self) -> dict[str, Any]:
        return {
            "dim": self._dim,
            "dtype": self._dtype.name,
            "count": self._rows.live_count,
            "rows": self._rows.n,
            "M": self._M,
            "ef_construction": self._ef_construction,
            "ef_search": self._ef_search,
            "ef_tuned": self._ef_tuned,
            "ef_probed_at": self._ef_probed_at,
        }

    def save(self, path: str | os.PathLike[str], *, meta: Mapping[str, Any] | None = None) -> None:
        """Write a snapshot (graph included; atomically: temporary file, then rename).

        ``meta`` is any JSON object, returned by ``snapshot_info(path).meta``.

        Raises:
            CacheClosedError: the index is closed.
            OSError: the file cannot be written.
        """
        self._check_open()
        header, arrays = self._snapshot_parts()
        header["meta"] = dict(meta or {})
        write_snapshot(path, self.backend, header, arrays)

    def _snapshot_parts(self) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
        n = self._rows.n
        arrays = {
            "ids": self._rows.ids[:n].copy(),
            "live": self._rows.live[:n].copy(),
            "blob": self._native_dump(),
        }
        return self._header(), arrays

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Any:
        """Read a snapshot written by :meth:`save`.

        Raises:
            FileNotFoundError: no file at ``path``.
            ValueError: the file is not a snapshot of this backend, or it is corrupt.
            MissingDependencyError: the backend's library is not installed.
        """
        snap = read_snapshot(path, defer_crc=True)
        if snap.backend != cls.backend:
            raise ValueError(f"{os.fspath(path)!r} is not a {cls.backend} index snapshot")
        return cls._from_snapshot(snap, path)

    @classmethod
    def _ctor_kwargs(cls, snap: Snapshot, path: str | os.PathLike[str]) -> dict[str, Any]:
        return {
            "M": bounded_field(snap, "M", path, MAX_M),
            "ef_construction": bounded_field(snap, "ef_construction", path, MAX_EF),
            "ef_search": bounded_field(snap, "ef_search", path, MAX_EF),
        }

    @classmethod
    def _from_snapshot(cls, snap: Snapshot, path: str | os.PathLike[str]) -> Any:
        try:
            index = cls._restore(snap, path)
        except ValueError:
            snap.verify(path)  # a file that fails its CRC is reported as corrupt first
            raise
        try:
            snap.verify(path)  # the blob's CRC-32, if it ran alongside
        except ValueError:
            index.close()
            raise
        index._maybe_tune_ef()  # a snapshot of an older version, or one never probed
        return index

    @classmethod
    def _restore(cls, snap: Snapshot, path: str | os.PathLike[str]) -> Any:
        try:
            dim = bounded_field(snap, "dim", path, MAX_DIM)
            dtype = np.dtype(str(snapshot_field(snap, "dtype", path)))
            kwargs = cls._ctor_kwargs(snap, path)
        except TypeError as exc:
            raise ValueError(f"{os.fspath(path)!r}: bad snapshot header: {exc}") from exc
        ids = snapshot_array(snap, "ids", path)
        live = snapshot_array(snap, "live", path)
        blob = snapshot_array(snap, "blob", path)
        n = ids.shape[0]
        if (
            ids.dtype != np.int64
            or ids.ndim != 1
            or live.dtype != np.bool_
            or live.shape != (n,)
            or blob.dtype != np.uint8
            or blob.ndim != 1
        ):
            raise ValueError(f"{os.fspath(path)!r}: snapshot arrays have the wrong type")
        try:
            layout = cls._check_blob(blob, n, dim, dtype, kwargs)
        except (ValueError, struct.error) as exc:
            raise ValueError(
                f"{os.fspath(path)!r}: the {cls.backend} graph is corrupt: {exc}"
            ) from exc
        tuned = snap.header.get("ef_tuned")
        if tuned is None:  # written before ef was tuned: the old default meant "not given"
            tuned = kwargs["ef_search"] == DEFAULT_EF_SEARCH
        probed_at = snap.header.get("ef_probed_at", 0)
        if not isinstance(tuned, bool) or not isinstance(probed_at, int) or probed_at < 0:
            raise ValueError(f"{os.fspath(path)!r}: bad snapshot header: ef_tuned, ef_probed_at")
        index = cls(dim, dtype=dtype, **kwargs)
        index._ef_tuned, index._ef_probed_at = tuned, probed_at
        try:
            index._native = index._native_restore(blob, n, max(64, n), layout)
        except (RuntimeError, ValueError, OSError) as exc:
            raise ValueError(
                f"{os.fspath(path)!r}: the {cls.backend} graph is corrupt: {exc}"
            ) from exc
        index._rows.restore(ids, live, max(64, n))
        dead = np.flatnonzero(~live)
        if dead.size:
            index._restore_tombstones(dead.tolist())
        return index

    @classmethod
    def _check_blob(
        cls, blob: npt.NDArray[np.uint8], n: int, dim: int, dtype: np.dtype[Any], kw: Any
    ) -> Any:
        """Refuse a native blob whose header disagrees with the snapshot's (rows, dim,
        parameters) or claims more bytes than it holds, before the library reads it;
        return what the restore needs of its layout.

        Raises:
            ValueError: it does.
        """
        raise NotImplementedError

    def _restore_tombstones(self, rows: list[int]) -> None:
        self._native_tombstone(rows)

    def close(self) -> None:
        """Release memory; later calls raise ``CacheClosedError``."""
        self._closed = True
        self._native = None
        self._rows = RowTable(1)


class HnswlibIndex(RowGraphIndex):
    """HNSW graph from hnswlib (``pip install 'semcache-engine[hnswlib]'``).

    hnswlib stores float32 only: with ``dtype=float16`` vectors are rounded to float16
    (so scores match the flat float16 index) but memory is not halved; use faiss for
    float16 storage in a graph. Tombstones use hnswlib's ``mark_deleted``.

    Raises:
        MissingDependencyError: hnswlib is not installed.
        ConfigurationError: bad parameters.
    """

    backend: ClassVar[str] = "hnswlib"
    _OPTION_KEYS: ClassVar[tuple[str, ...]] = ("M", "ef_construction", "ef_search", "build_threads")

    def _new_native(self, capacity: int) -> Any:
        hnswlib = import_hnswlib()
        index = hnswlib.Index(space="ip", dim=self._dim)
        index.init_index(
            max_elements=capacity, M=self._M, ef_construction=self._ef_construction, random_seed=100
        )
        index.set_ef(self._ef_search)
        return index

    def _native_add(self, vecs: npt.NDArray[np.float32], start: int) -> None:
        need = start + vecs.shape[0]
        labels = np.arange(start, need, dtype=np.int64)
        threads = 1 if vecs.shape[0] < 256 else self._build_threads
        gate = self._gate
        gate.begin_write()  # resize_index reallocates what a search reads
        try:
            cap = self._native.get_max_elements()
            if need > cap:
                self._native.resize_index(max(need, 2 * cap))
            self._native.add_items(vecs, labels, num_threads=threads)
        finally:
            gate.end_write()

    def _native_tombstone(self, rows: list[int]) -> None:
        gate = self._gate
        gate.begin_write()
        try:
            for row in rows:
                self._native.mark_deleted(row)
        finally:
            gate.end_write()

    def _set_ef(self, ef: int) -> None:
        gate = self._gate
        gate.begin_write()
        try:
            self._ef_search = ef
            self._native.set_ef(ef)
        finally:
            gate.end_write()

    def _search_at(self, q: npt.NDArray[np.float32], ef: int) -> npt.NDArray[np.float32] | None:
        # hnswlib searches with max(its ef, k): k = ef is a search at that ef (the
        # probe's ladder starts at the index's own ef)
        if q.shape[0] == 0:
            return np.empty(0, np.float32)
        try:
            _, dist = self._native.knn_query(q, k=ef, num_threads=self._build_threads)
        except RuntimeError:  # fewer than ef rows reachable: no conclusion
            return None
        top: npt.NDArray[np.float32] = (1.0 - dist[:, 0]).astype(np.float32)
        return top

    def reader(self) -> GraphReader:
        """A :meth:`search` that may run outside the caller's lock while other threads
        change the index under it: the native search waits for a change under way
        (add, resize, tombstone, ef) and changes wait for it (``_gate.Gate``). It
        searches the native index and maps rows to ids with the id table as it was when
        this was called (rows below its count keep their ids in that array); a row
        added since, or a short result, answers None (search again under the lock); an
        id it returns may have been removed since (check it under the lock). A
        compaction or close meanwhile leaves it searching the old native index, which
        nothing changes any more.

        Raises:
            CacheClosedError: the index is closed.
        """
        self._check_open()
        native, gate, dim = self._native, self._gate, self._dim
        ids, n = self._rows.ids, self._rows.n  # rows below n keep their ids in this array

        def search(query: npt.ArrayLike, k: int) -> tuple[IdArray, ScoreArray] | None:
            check_k(k)
            q = prepare_queries(np.asarray(query, dtype=np.float32).reshape(1, -1), dim)
            gate.begin_read()
            try:
                labels, dist = native.knn_query(q, k=k, num_threads=1)
            except RuntimeError:  # fewer than k reachable: the exact fallback, locked
                return None
            finally:
                gate.end_read()
            rows = labels[0].astype(np.int64)
            if rows.shape[0] < k or (rows >= n).any():
                return None
            return ids[rows], (1.0 - dist[0]).astype(np.float32)

        return search

    def _restore_tombstones(self, rows: list[int]) -> None:
        for row in rows:
            try:
                self._native.mark_deleted(row)
            except RuntimeError:
                pass  # the saved graph kept the mark already

    def _native_search(
        self, q: npt.NDArray[np.float32], k: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        try:
            labels, dist = self._native.knn_query(q, k=k, num_threads=1 if q.shape[0] < 16 else -1)
        except RuntimeError:
            m = q.shape[0]
            return np.full((m, k), -1, np.int64), np.zeros((m, k), np.float32)
        # hnswlib's "ip" distance is 1 - inner product
        return labels.astype(np.int64), (1.0 - dist).astype(np.float32)

    def _native_vectors(self, rows: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        if rows.size == 0:
            return np.empty((0, self._dim), np.float32)
        return np.asarray(self._native.get_items(rows.tolist()), dtype=np.float32)

    def _native_dump(self) -> npt.NDArray[np.uint8]:
        with hnsw_scratch() as tmp:
            name = os.path.join(tmp, "graph.bin")
            self._native.save_index(name)
            if sys.platform == "win32":  # pragma: no cover - a mapped file is not deletable
                return np.fromfile(name, dtype=np.uint8)
            # Mapped, not read: the snapshot writer streams it into its file (a
            # gigabyte at a million rows, never copied into memory); the pages stay
            # readable after the scratch folder is removed.
            dump: npt.NDArray[np.uint8] = np.memmap(name, dtype=np.uint8, mode="r")
            return dump

    @classmethod
    def _check_blob(
        cls, blob: npt.NDArray[np.uint8], n: int, dim: int, dtype: np.dtype[Any], kw: Any
    ) -> HnswLayout:
        return check_hnsw_blob(blob, n, dim, kw["M"])

    def _native_restore(
        self, blob: npt.NDArray[np.uint8], n: int, capacity: int, layout: Any
    ) -> Any:
        # Built from the blob's parts in memory (hnswlib's pickle state), not written to
        # a scratch file for load_index to read back: one copy of the graph, not three.
        hnswlib = import_hnswlib()
        template = hnswlib.Index(space="ip", dim=self._dim)
        efc = int(layout.head[-1])
        template.init_index(max_elements=1, M=self._M, ef_construction=efc, random_seed=100)
        state = dict(template.__getstate__()[0])
        state.update(hnsw_state(blob, n, layout, self._M))
        state.update(
            max_elements=max(capacity, n), num_threads=self._build_threads, ef=self._ef_search
        )
        index = hnswlib.Index(state)
        if index.get_current_count() != n:
            raise ValueError(f"graph holds {index.get_current_count()} rows, ids {n}")
        index.set_ef(self._ef_search)
        return index

    def _native_nbytes(self) -> int:
        cap = int(self._native.get_max_elements())
        # vector + level-0 links (2*M ids + count) + label, per allocated element
        return cap * (self._dim * 4 + (2 * self._M + 1) * 4 + 8)
