"""The per-namespace vector indexes and how they follow the store.

One :class:`IndexSet` per cache: an index per namespace (a hard wall between tenants),
opened from the snapshots saved at the last close (warm start) or rebuilt from the
store, then kept in step with the store's change log. The sequence rule lives here
once: the indexes reflect the store up to :attr:`IndexSet.seq` (shared mode) or all of
it (single mode, where this process is the only writer).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from ._errors import (
    ConfigurationError,
    EmbedderMismatchError,
    SemanticCacheError,
    StoreCorruptError,
)
from ._index import SearchIndex, VectorIndex, make_index
from ._options import Options
from ._progress import ProgressCallback
from ._prototypes import Prototypes
from ._snapshots import (
    SnapshotPlan,
    load_prototypes,
    load_snapshots,
    save_snapshots,
    snapshot_dir,
)
from ._store import Change, SearchIndexFactory, Store, local_path, search_index_factory

__all__ = ["PROGRESS_BATCH", "IndexSet"]

logger = logging.getLogger("semcache")

#: Vectors per progress report while an index is rebuilt with a ``progress`` callback.
PROGRESS_BATCH: Final = 8192

#: ``forget(ids)``: the entries with these ids left the store; ``forget(None)``: the
#: store was reread from scratch (ids may be reissued).
Forget = Callable[[Sequence[int] | None], None]


class IndexSet:
    """The namespaces' indexes over one store (see the module docstring)."""

    def __init__(self, store: Store, options: Options, forget: Forget) -> None:
        self.store = store
        self.options = options
        self.dtype: np.dtype[Any] = options.dtype
        self.store_search = options.store_search
        self.by_ns: dict[str, SearchIndex] = {}
        self.dim: int | None = None
        #: The store's change sequence the indexes reflect.
        self.seq = 0
        #: The store's identity when the indexes were built (see :meth:`resync`).
        self.store_id: str | None = None
        #: "snapshot" (warm start) or "store" (rebuilt at open).
        self.source = "store"
        #: A candidate did not match its index row (see ``_get.own_score``): the store
        #: is not the one indexed. Rebuilt at the next get, once per store position.
        self.suspect = False
        self._suspect_rebuilt: tuple[str, int] | None = None
        self._last_sync = -math.inf
        self._forget = forget
        self._search_factory: SearchIndexFactory | None = None  # index_backend="store"
        #: ``answer_support``'s prototypes, told of the entries the indexes gain and
        #: lose (what rereads the store resets them: ``forget(None)``).
        self.prototypes: Prototypes | None = None

    # -- opening ----------------------------------------------------------------------
    def open(self, progress: ProgressCallback | None) -> None:
        """Reconcile the settings, then warm start or rebuild from the store."""
        self.dim = self.check_settings()
        self.seq = self.store.seq()
        if self.store_search:
            self._search_factory = self._check_store_search()
        self.source = "snapshot" if self._warm_start(progress) else "store"
        if self.source == "store":
            self.rebuild(progress)

    def check_settings(self, again: bool = True) -> int | None:
        """Reconcile the store's recorded settings with ours; record the missing ones
        (only where the store still holds none: another process opening the empty
        store at the same moment may record its own first; then they are compared
        again, ``again`` False).

        Raises:
            EmbedderMismatchError: another dtype, embedder fingerprint or dimension.
        """
        store, dtype, embedder = self.store, self.dtype, self.options.embedder
        stored_dtype = store.get_meta("vector_dtype")
        stored_dim = store.get_meta("dim")
        stored_fp = store.get_meta("fingerprint")
        if stored_dtype is not None and stored_dtype != dtype.name:
            raise EmbedderMismatchError(
                f"the cache stores {stored_dtype} vectors; open it with vector_dtype="
                f"{stored_dtype!r} (was {dtype.name!r})"
            )
        dim = int(stored_dim) if stored_dim is not None else None
        updates = {} if stored_dtype is not None else {"vector_dtype": dtype.name}
        self.store_id = store.identity()
        if embedder is not None:
            fp, edim = embedder.fingerprint, int(embedder.dim)
            if stored_fp is not None and stored_fp != fp:
                raise EmbedderMismatchError(
                    f"the cache was built with embedder {stored_fp!r}, not {fp!r}; "
                    "use that embedder or a new cache"
                )
            if dim is not None and dim != edim:
                raise EmbedderMismatchError(
                    f"the cache stores {dim}-dimensional vectors; the embedder makes {edim}"
                )
            if stored_fp is None:
                updates["fingerprint"] = fp
            if dim is None:
                updates["dim"] = str(edim)
                dim = edim
        if updates:
            try:  # (a put of no entry records them in one step, as a first put does)
                store.put_many([], now=self.options.clock(), meta=updates)
            except EmbedderMismatchError:
                if not again:
                    raise
                return self.check_settings(again=False)
        return dim

    def snapshot_target(self) -> tuple[Path, SnapshotPlan] | None:
        """Where this cache's index snapshots live and what they must match, or None
        when it keeps none (memory store, custom index factory, no vectors yet)."""
        folder = snapshot_dir(local_path(self.store))
        backend = self.options.index_backend
        if (
            folder is None
            or not self.store.persistent
            or self.dim is None
            or not isinstance(backend, str)
        ):
            return None
        options = json.dumps(self.options.index_options, sort_keys=True, default=repr)
        plan = SnapshotPlan(str(self.store_id), self.dim, self.dtype.name, f"{backend} {options}")
        return folder, plan

    def snapshot_seq(self) -> int:
        """The store position the indexes reflect: what a snapshot of them records."""
        return self.seq if self.options.shared else self.store.seq()

    def _warm_start(self, progress: ProgressCallback | None = None) -> bool:
        """Load the index snapshots and replay the change log since them."""
        target = self.snapshot_target()
        if target is None or not target[0].is_dir():
            return False
        if progress is not None:
            progress("load index", 0, 1)
        loaded = load_snapshots(*target, store_seq=self.store.seq())
        if progress is not None:
            progress("load index", 1, 1)
        if loaded is None:
            return False
        seq, indexes = loaded
        # None also when the store's sequence is below the snapshot's (an older copy).
        changes = self.store.changes_since(seq, self.store_id)
        if changes is None:
            logger.info("semcache: index snapshot does not match the store's log; rebuilding")
            for index in indexes.values():
                index.close()
            return False
        self.by_ns = dict(indexes)
        self.seq = seq
        if self.prototypes is not None and self.dim is not None:
            saved = load_prototypes(target[0], seq)
            if saved is not None:
                self.prototypes.restore(*saved, dim=self.dim, bound=self.store.seq())
        self.apply_changes(changes)
        return True

    def save(self, folder: Path | None = None) -> None:
        """Save the snapshots (into ``folder`` instead of beside the store if given);
        a failure beside the store is logged (the next open rebuilds)."""
        target = self.snapshot_target()
        if target is None:
            return
        # Only indexes kept here have a snapshot; a store that searches (whose indexes
        # are SearchIndex only) has no local file, so snapshot_target() was None.
        kept = {ns: ix for ns, ix in self.by_ns.items() if isinstance(ix, VectorIndex)}
        # answer support's prototype tables too, when they were read: a reopened (or
        # restored) cache then has them without reading every entry again at its first
        # semantic hit
        where, plan = target if folder is None else (folder, target[1])
        try:
            protos = None if self.prototypes is None else self.prototypes.snapshot(plan.dim)
            save_snapshots(where, plan, self.snapshot_seq(), kept, protos)
        except Exception:
            if folder is not None:
                raise  # (a checkpoint's: its errors are the checkpoint's)
            logger.exception("semcache: could not save index snapshots; the next open rebuilds")

    def rebuild(self, progress: ProgressCallback | None = None) -> None:
        """Build every namespace's index from the store's vectors (reporting to
        ``progress``, in batches of :data:`PROGRESS_BATCH` vectors, if given)."""
        self.close()
        if self.store_search:
            return  # the store searches: nothing to hold here
        store, clock = self.store, self.options.clock
        total = 0 if progress is None else store.count()
        report = progress if total else None  # an empty store: nothing to report
        if report is not None:
            report("index", 0, total)
        # (batches of PROGRESS_BATCH: what is held besides the indexes is a batch, its
        # bytes joined and a store's page, about 30 MB at 384 float32 dimensions)
        batches = store.iter_vectors(now=clock(), batch_size=PROGRESS_BATCH)
        done = 0
        for batch in batches:
            if self.dim is None:
                # another process wrote the first vectors since open read the settings
                # (its put records the dimension in the transaction that stores them)
                self.dim = self.stored_dim()
            vecs = self.decode(batch.vectors)
            self.for_ns(batch.namespace).add(np.asarray(batch.ids, dtype=np.int64), vecs)
            if report is not None:
                done += len(batch.ids)
                report("index", done, max(total, done))
        if report is not None and done < total:
            report("index", done, done)

    def stored_dim(self) -> int | None:
        """The dimension the store records now (None: no vectors yet)."""
        dim = self.store.get_meta("dim")
        return None if dim is None else int(dim)

    def decode(self, blobs: Sequence[bytes]) -> npt.NDArray[Any]:
        """Stored vectors as rows.

        Raises:
            StoreCorruptError: they do not match the dimension and dtype.
        """
        dim = self.dim
        if dim is None:
            raise StoreCorruptError("the store holds vectors but no dimension setting")
        data = b"".join(blobs)
        if len(data) != len(blobs) * dim * self.dtype.itemsize:
            raise StoreCorruptError(
                f"stored vectors do not match dimension {dim} and dtype {self.dtype.name}"
            )
        return np.frombuffer(data, dtype=self.dtype).reshape(len(blobs), dim)

    # -- the indexes --------------------------------------------------------------------
    def for_ns(self, namespace: str) -> SearchIndex:
        """The namespace's index, made if it has none."""
        index = self.by_ns.get(namespace)
        if index is None:
            assert self.dim is not None
            index = self.by_ns[namespace] = self.new(namespace, self.dim)
        return index

    def of(self, namespace: str) -> SearchIndex | None:
        """The namespace's index for a get (with a searching store: always one)."""
        index = self.by_ns.get(namespace)
        if index is None and self.store_search and self.dim is not None:
            index = self.for_ns(namespace)
        return index

    def new(self, namespace: str, dim: int) -> SearchIndex:
        """An empty index for ``namespace``. A put makes its namespace's first index
        before it writes, so an index that cannot be built fails the put, not after.

        Raises:
            ConfigurationError: the ``index_backend`` factory failed or returned no
                VectorIndex; a built-in backend refused its options for ``dim``.
        """
        if self._search_factory is not None:
            return self._search_factory(namespace, self.options.clock, dim, self.dtype)
        backend = self.options.index_backend
        try:
            index = make_index(backend, dim, self.dtype, self.options.index_options)
        except SemanticCacheError:
            raise
        except Exception as exc:
            if not callable(backend):
                raise
            raise ConfigurationError(
                f"the index_backend factory failed for dim {dim}: {exc!r}"
            ) from exc
        if not isinstance(index, VectorIndex):
            raise ConfigurationError(
                f"the index_backend factory returned {type(index).__name__}, not a VectorIndex"
            )
        return index

    def _check_store_search(self) -> SearchIndexFactory:
        """``index_backend="store"``: the store must search (Layer 2 runs on its server);
        its index factory, chosen once.

        Raises:
            ConfigurationError: the store cannot search (here).
        """
        store = self.store
        factory = search_index_factory(store)
        if factory is None:
            raise ConfigurationError(
                f'index_backend="store" needs a store that searches (PostgresStore with '
                f"pgvector); {type(store).__name__} cannot"
            )
        return factory

    def remove(self, removed: Sequence[tuple[int, str]]) -> None:
        """Tombstone ``(id, namespace)`` pairs in their namespaces' indexes."""
        by_ns: dict[str, list[int]] = {}
        for entry_id, ns in removed:
            by_ns.setdefault(ns, []).append(entry_id)
        for ns, ids in by_ns.items():
            index = self.by_ns.get(ns)
            if index is not None:
                index.remove(np.asarray(ids, dtype=np.int64))
        if self.prototypes is not None:
            self.prototypes.remove(removed)

    def compact(self) -> int:
        """Rebuild every index at its live size; the tombstones reclaimed."""
        return sum(index.compact() for index in self.by_ns.values())

    def drop(self, namespace: str) -> None:
        index = self.by_ns.pop(namespace, None)
        if index is not None:
            index.close()

    def close(self) -> None:
        """Release every index (the set starts empty)."""
        for index in self.by_ns.values():
            index.close()
        self.by_ns = {}

    def tombstones(self) -> dict[str, int]:
        return {ns: ix.tombstones for ns, ix in sorted(self.by_ns.items())}

    def indexed(self) -> dict[str, int]:
        return {ns: len(ix) for ns, ix in sorted(self.by_ns.items())}

    # -- following the store ---------------------------------------------------------------
    def reopened(self) -> None:
        """A forked child's first use: sync at its next get."""
        self._last_sync = -math.inf

    def maybe_sync(self, now: float) -> None:
        """Shared mode: bring the indexes up to the store's change log. Any mode: rebuild
        them once a candidate's own score proved them out of date (:attr:`suspect`)."""
        if self.store_search:
            return
        if self.suspect:
            self.suspect = False
            if self._rebuild_once():
                self._last_sync = now
                return
        if not self.options.shared or now - self._last_sync < self.options.stale_check_interval:
            return
        self._last_sync = now
        changes = self.store.changes_since(self.seq, self.store_id)
        if changes is None:
            # The log no longer reaches back, or the store is not the one indexed: its
            # identity changed (data lost or replaced) or its sequence went backwards.
            self.resync()
            return
        self.apply_changes(changes)

    def _rebuild_once(self) -> bool:
        """Rebuild from the store unless already done at its present position (a custom
        index that scores loosely must not rebuild on every get)."""
        here = (self.store.identity(), self.store.seq())
        if here == self._suspect_rebuilt:
            return False
        logger.warning("semcache: the index does not match the store any more; rebuilding")
        self.resync()
        self._suspect_rebuilt = here
        return True

    def resync(self) -> None:
        """Rebuild the indexes from the store as it is now, and have the cache forget
        what it kept of the store it had (exact entries, recency of reissued ids)."""
        store = self.store
        self.store_id = store.identity()
        if self.dim is not None and store.get_meta("dim") is None:
            # The store lost its settings with its data: record this cache's again.
            settings = {"dim": str(self.dim), "vector_dtype": self.dtype.name}
            if self.options.embedder is not None:
                settings["fingerprint"] = self.options.embedder.fingerprint
            store.set_meta(settings)
        self.seq = store.seq()
        self._forget(None)
        self.rebuild()

    def apply_changes(self, changes: Sequence[Change]) -> None:
        """Replay change-log records into the indexes (idempotent)."""
        if not changes:
            return
        live: dict[int, str] = {}
        gone: list[tuple[int, str]] = []
        for change in changes:
            if change.op == "put":
                live[change.entry_id] = change.namespace
            else:
                live.pop(change.entry_id, None)
                gone.append((change.entry_id, change.namespace))
        if gone:
            self._forget([i for i, _ in gone])
            self.remove(gone)
        if live:
            vectors = self.store.get_vectors(list(live))
            by_ns: dict[str, tuple[list[int], list[bytes]]] = {}
            for entry_id in sorted(vectors):
                ns, blob = vectors[entry_id]
                ids, blobs = by_ns.setdefault(ns, ([], []))
                ids.append(entry_id)
                blobs.append(blob)
            if by_ns and self.dim is None:
                self.dim = self.stored_dim()
            for ns, (ids, blobs) in by_ns.items():
                rows = self.decode(blobs)
                self.for_ns(ns).add(np.asarray(ids, dtype=np.int64), rows)
                if self.prototypes is not None:
                    self.prototypes.added(ns, ids, rows)
        self.seq = changes[-1].seq
