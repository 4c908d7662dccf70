"""What ``answer_support`` keeps by entry id between gets: the stored answers' keys and
the stored prompts' vectors of the candidates it read (``semcache._get._supported``).
Entry ids are never reissued within a store; both are dropped with the exact entries
(``Engine.forget_exact``)."""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from ._agreement import SUPPORT_K, answer_digest
from ._engine import Engine
from ._store import StoredEntry

#: Stored answers' keys kept by entry id (see :func:`answer_keys`).
ANSWER_KEYS: Final = 4096
#: The bytes of stored vectors kept by entry id (see :func:`candidate_vectors`): 5,461
#: vectors of 384 dimensions, 682 of 3,072.
ANSWER_VECTOR_BYTES: Final = 8 << 20


def candidate_vectors(eng: Engine, entries: list[StoredEntry]) -> npt.NDArray[np.float32] | None:
    """The stored vectors of ``entries`` (one row each, float32): those kept by entry id
    from this process's reads (:data:`ANSWER_VECTOR_BYTES` of them), the rest
    read from the store in one call. None when one has no vector of the index's
    dimension (then no prototype is formed)."""
    memo = eng.answer_vectors
    try:
        return np.array([memo[e.id] for e in entries])  # (np.stack: 3x the time)
    except KeyError:
        pass
    found_ = {e.id: memo[e.id] for e in entries if e.id in memo}
    missing = [e.id for e in entries if e.id not in found_]
    if missing:
        dim, dtype = eng.indexes.dim, eng.indexes.dtype
        if dim is None:
            return None
        rows = eng.store.get_by_ids(missing, vectors=True)
        for entry_id in missing:
            entry = rows.get(entry_id)
            blob = None if entry is None else entry.vector
            if blob is None or len(blob) != dim * dtype.itemsize:
                return None
            found_[entry_id] = np.frombuffer(blob, dtype=dtype).astype(np.float32)
            keep_vector(eng, entry_id, found_[entry_id])
    return np.array([found_[e.id] for e in entries])


def keep_vector(eng: Engine, entry_id: int, vector: npt.NDArray[np.float32]) -> None:
    """Keep an entry's stored vector for :func:`candidate_vectors`: at most
    :data:`ANSWER_VECTOR_BYTES` of them (at least the 8 candidates of a get), oldest out
    first."""
    memo = eng.answer_vectors
    memo[entry_id] = vector
    if len(memo) > max(SUPPORT_K, ANSWER_VECTOR_BYTES // max(1, vector.nbytes)):
        del memo[next(iter(memo))]


def answer_keys(eng: Engine, entries: list[StoredEntry]) -> list[bytes]:
    """The entries' answers' keys (:func:`~semcache._agreement.answer_digest`), kept by
    entry id for the next gets (:data:`ANSWER_KEYS` of them, oldest out first).
    Measured: normalizing a 1,500-character answer costs about 10 us; a semantic hit at
    10k entries whose 8 candidates have such answers cost +135 us p50 over
    ``answer_support=False`` without this memo, +50 us with it (+55 us with 10-character
    answers). A key not kept here is taken from the prototype veto's tables when they
    hold it (computed at the entry's put or at their read), before normalizing."""
    memo = eng.answer_keys
    kept = eng.prototypes  # (they hold every stored answer's key once read)
    out = []
    for entry in entries:
        key = memo.get(entry.id)
        if key is None:
            if kept is not None:
                key = kept.digest_of(entry.namespace, entry.id)
            if key is None:
                key = answer_digest(entry.response)
            memo[entry.id] = key
            if len(memo) > ANSWER_KEYS:
                del memo[next(iter(memo))]
        out.append(key)
    return out
