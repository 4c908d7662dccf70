"""A get's candidates read from the store and checked (``semcache._get``): their
entries by id, each one's own score, expiry."""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from . import _answer_memo
from ._engine import Engine
from ._index import SearchIndex
from ._store import StoredEntry

__all__ = ["checked_candidates", "entries_by_id", "own_score"]

#: A candidate's score from its stored vector may differ from the index's by this much
#: (summation order, float16 rounding) and still be the entry the index holds.
_SAME_SCORE: Final = 1e-3


def checked_candidates(
    eng: Engine,
    ns: str,
    vector: npt.NDArray[np.float32],
    index: SearchIndex,
    candidates: list[tuple[int, float]],
    now: float,
    floor: float | None,
) -> tuple[list[tuple[StoredEntry, float]], list[float], int]:
    """Read the entries of ``candidates`` (ids with the index's scores) and check each:
    its own score (:func:`own_score`), expiry. Returns the live ones as ``(entry,
    score)`` (the score clipped to [-1, 1]; only those at or above ``floor`` if given)
    in the order given, the index's scores of those that had expired, and how many ids
    were removed from the index: the stale (deleted by another process, or naming
    another entry now) and the expired (expiry is final: a tombstone in memory only).
    Entries read from the store go to the hot map."""
    if not candidates:
        return [], [], 0
    rows, fetched = entries_by_id(eng, [i for i, _ in candidates])
    live: list[tuple[StoredEntry, float]] = []
    expired: list[float] = []
    stale: list[int] = []
    for entry_id, sim in candidates:
        entry = rows.get(entry_id)
        fresh = entry_id in fetched
        score = None if entry is None else own_score(eng, entry, ns, vector, sim, fresh)
        if entry is None or score is None:
            stale.append(entry_id)
            continue
        if fresh and eng.hot.capacity:
            eng.hot.remember(entry.key, entry)
        if entry.expires_at is not None and entry.expires_at <= now:
            stale.append(entry_id)
            expired.append(sim)
        elif floor is None or score >= floor:
            live.append((entry, max(-1.0, min(1.0, score))))
    if stale:
        index.remove(stale)
    return live, expired, len(stale)


def own_score(
    eng: Engine,
    entry: StoredEntry,
    ns: str,
    vector: npt.NDArray[np.float32],
    sim: float,
    fetched: bool,
) -> float | None:
    """The similarity to serve ``entry`` at, the index having scored its id ``sim``;
    None when the id names an entry the index cannot have held (another namespace, no
    vector, another dimension).

    An id alone proves nothing once a store lost its data or its tail and numbered its
    entries again, so an entry just read from the store (``fetched``, with its vector)
    is scored from its own stored vector. When that score differs from the index's by
    more than :data:`_SAME_SCORE`, the index is out of date (or scores loosely) and is
    rebuilt at the next get; the entry's own score is what the threshold sees. An entry
    from the hot map (single mode) is one this process wrote or read and scored already.
    """
    indexes = eng.indexes
    if entry.namespace != ns:
        indexes.suspect = True
        return None
    if not fetched or eng.store_search:  # the store searched its own rows
        return sim
    blob, entry.vector = entry.vector, None  # the hot map keeps entries without it
    dim, dtype = indexes.dim, indexes.dtype
    if blob is None or dim is None or len(blob) != dim * dtype.itemsize:
        indexes.suspect = True
        return None
    stored = np.frombuffer(blob, dtype=dtype).astype(np.float32)
    if eng.answer_support:
        _answer_memo.keep_vector(eng, entry.id, stored)
    own = float(stored @ vector)
    if abs(own - sim) <= _SAME_SCORE:
        return sim
    indexes.suspect = True
    return max(-1.0, min(1.0, own))


def entries_by_id(eng: Engine, ids: list[int]) -> tuple[dict[int, StoredEntry], set[int]]:
    """The entries of ``ids`` that exist, and which of them were read from the store
    (with their vectors, for :func:`own_score`): the hot map's where it has them
    (single mode: exact, see :class:`~semcache._hot.HotMap`), the rest from the store."""
    vectors = not eng.store_search
    hot = eng.hot
    if not hot.capacity:
        fetched = eng.store.get_by_ids(ids, vectors=vectors)
        return fetched, set(fetched)
    found_: dict[int, StoredEntry] = {}
    missing = []
    for i in ids:
        entry = hot.by_id(i)
        if entry is None:
            missing.append(i)
        else:
            found_[i] = entry
    if not missing:
        return found_, set()
    fetched = eng.store.get_by_ids(missing, vectors=vectors)
    found_.update(fetched)
    return found_, set(fetched)
