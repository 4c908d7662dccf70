"""A put (and put_many) as one operation.

:func:`start_put` is its first step, under the engine's lock: every input checked
before anything is embedded or written. With the vectors known (given, embedded by the
get that missed, or no embedder) it writes and returns the count; otherwise it returns
the generator that yields the texts to embed, in batches, and then writes.

With ``answer_similarity`` the responses (the answers a registered view reads from
them) are embedded too, in the same embedder calls as the prompts, before anything is
written; each entry's budget record, which carries its answer vector, is part of the
entry (``NewEntry.record``), stored in the same write (a store without the
``QualityState`` capability: kept in this process, ``Budgets.keep_local``).
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from time import perf_counter
from types import GeneratorType
from typing import Any, Final, cast

import numpy as np
import numpy.typing as npt

from ._answer_steps import answer_similarity_of
from ._budget_policy import EntryRecord
from ._budgets import Budgets, encode_answer
from ._checks import check_callable, check_ttl, show
from ._engine import Engine
from ._errors import (
    DimensionMismatchError,
    EmbedderError,
    EmbedderMismatchError,
    InvalidInputError,
    InvalidTextError,
    QueryTooLargeError,
    ResponseTooLargeError,
)
from ._ownership import Lifecycle
from ._progress import ProgressCallback
from ._store import Limits, NewEntry, PutResult
from ._text import check_size

__all__ = ["PutSteps", "put_steps", "start_put", "start_put_one"]

_OPEN: Final = Lifecycle.OPEN

#: Texts per embedder call in put_many.
EMBED_BATCH: Final = 64

#: The rest of a put after its first step: yields texts to embed, returns the count.
PutSteps = Generator[Any, Any, int]
Metadata = Mapping[str, Any] | Sequence[Mapping[str, Any] | None] | None


@dataclass(slots=True)
class _CheckedPut:
    """A put's input after the checks; ``vectors`` (unit rows) once known."""

    ns: str
    queries: list[str]
    responses: list[str]
    metas: list[str | None]
    life: float | None
    vectors: npt.NDArray[np.float32] | None
    #: The responses' answer vectors (unit rows), with ``answer_similarity``.
    answers: npt.NDArray[np.float32] | None = None


def put_steps(
    eng: Engine,
    queries: Sequence[str],
    responses: Sequence[str],
    embeddings: npt.ArrayLike | None,
    namespace: str,
    metadata: Metadata,
    ttl: float | None,
    progress: ProgressCallback | None = None,
    answers: npt.NDArray[np.float32] | None = None,
) -> PutSteps:
    """The whole of a put as one generator; its first step runs :func:`start_put`
    (``answers``: the responses' answer vectors if known, unit rows)."""
    first = start_put(
        eng, queries, responses, embeddings, namespace, metadata, ttl, progress, answers
    )
    if type(first) is GeneratorType:
        return (yield from cast(PutSteps, first))
    return cast(int, first)


def start_put(
    eng: Engine,
    queries: Sequence[str],
    responses: Sequence[str],
    embeddings: npt.ArrayLike | None,
    namespace: str,
    metadata: Metadata,
    ttl: float | None,
    progress: ProgressCallback | None = None,
    answers: npt.NDArray[np.float32] | None = None,
) -> int | PutSteps:
    """A put's first step, under the lock: the count written, or the generator that
    embeds and then writes."""
    t0 = perf_counter()
    checked = check_put(eng, queries, responses, embeddings, namespace, metadata, ttl)
    if progress is not None:
        check_callable(progress, "progress", InvalidInputError)
    n = len(checked.queries)
    if n == 0:
        return 0
    if answers is not None and answer_similarity_of(eng) is not None:
        checked.answers = answers.reshape(n, -1)
    if checked.vectors is None and eng.embedder is not None:
        checked.vectors = eng.kept_query_vectors(checked.queries)  # a missed get embedded them
    if (checked.vectors is None and eng.embedder is not None) or _answers_missing(eng, checked):
        return _embed_then_write(eng, checked, t0, progress)
    written = write_put(eng, checked, t0)
    if progress is not None:
        progress("write", written, written)
    return written


def start_put_one(
    eng: Engine,
    query: str,
    response: str,
    embedding: npt.ArrayLike | None,
    namespace: str,
    metadata: Mapping[str, Any] | None,
    ttl: float | None,
) -> int | PutSteps:
    """:func:`start_put` of one entry (``put``): the same checks, in the same order, on
    the one query and response, without the lists that a batch needs."""
    t0 = perf_counter()
    if eng.owner.state is not _OPEN:
        eng.check_open()
    ns = namespace if namespace in eng.namespaces_ok else eng.check_ns(namespace)
    check_size(query, "query", eng.max_query, QueryTooLargeError)
    check_size(response, "response", eng.max_response, ResponseTooLargeError)
    metas: list[str | None] = [None] if metadata is None else eng.metadata_json(metadata, 1)
    life = eng.default_ttl if ttl is None else check_ttl(ttl)
    vectors = None if embedding is None else eng.unit_rows(embedding, 1, "embeddings")
    checked = _CheckedPut(ns, [query], [response], metas, life, vectors)
    if vectors is None and eng.embedder is not None:
        checked.vectors = eng.kept_query_vectors(checked.queries)  # a missed get embedded it
    if (checked.vectors is None and eng.embedder is not None) or _answers_missing(eng, checked):
        return _embed_then_write(eng, checked, t0, None)
    return write_put(eng, checked, t0)


def _answers_missing(eng: Engine, checked: _CheckedPut) -> bool:
    """Whether the put must embed its responses (``answer_similarity``)."""
    return checked.answers is None and eng.budgets is not None and eng.budgets.similar is not None


def _embed_then_write(
    eng: Engine, checked: _CheckedPut, t0: float, progress: ProgressCallback | None
) -> PutSteps:
    """Embed what the put lacks (the prompts, and with ``answer_similarity`` the
    answers: both in one call per batch), then write. An embedder that fails raises
    EmbedderError before anything is written."""
    queries = checked.queries
    n = len(queries)
    need_queries = checked.vectors is None
    budgets = answer_similarity_of(eng) if checked.answers is None else None
    answers = (
        [] if budgets is None else [budgets.answer_text(checked.ns, r) for r in checked.responses]
    )
    step = EMBED_BATCH // 2 if need_queries and answers else EMBED_BATCH
    report = progress if need_queries else None  # ("embed" is about the prompts)
    if report is not None:
        report("embed", 0, n)
    parts: list[npt.NDArray[np.float32]] = []
    answer_parts: list[npt.NDArray[np.float32]] = []
    for lo in range(0, n, step):
        chunk = queries[lo : lo + step] if need_queries else []
        texts = chunk + answers[lo : lo + step]
        try:
            raw = yield texts
        except Exception as exc:
            raise EmbedderError(f"the embedder failed: {exc!r}; nothing was written") from exc
        rows = eng.unit_rows(raw, len(texts), "embedder output", from_embedder=True)
        if need_queries:
            parts.append(rows[: len(chunk)])
        if answers:
            answer_parts.append(rows[len(chunk) :])
        if report is not None:
            report("embed", lo + len(chunk), n)
    eng.check_open()
    if need_queries:
        checked.vectors = np.concatenate(parts) if len(parts) > 1 else parts[0]
    if answers:
        checked.answers = np.concatenate(answer_parts) if len(answer_parts) > 1 else answer_parts[0]
    written = write_put(eng, checked, t0)
    if progress is not None:
        progress("write", written, written)
    return written


def check_put(
    eng: Engine,
    queries: Sequence[str],
    responses: Sequence[str],
    embeddings: npt.ArrayLike | None,
    namespace: str,
    metadata: Metadata,
    ttl: float | None,
) -> _CheckedPut:
    """A put's input, checked (before anything is embedded or written)."""
    eng.check_open()
    ns = eng.check_ns(namespace)
    if isinstance(queries, str) or isinstance(responses, str):
        raise InvalidTextError("queries and responses must be sequences of str, not a str")
    try:
        queries, responses = list(queries), list(responses)
    except TypeError:
        raise InvalidTextError(
            f"queries and responses must be sequences of str, got {show(queries)} and "
            f"{show(responses)}"
        ) from None
    n = len(queries)
    if len(responses) != n:
        raise InvalidInputError(f"{n} queries but {len(responses)} responses")
    max_query, max_response = eng.max_query, eng.max_response
    for q, r in zip(queries, responses, strict=True):
        check_size(q, "query", max_query, QueryTooLargeError)
        check_size(r, "response", max_response, ResponseTooLargeError)
    metas = eng.metadata_json(metadata, n)
    life = eng.default_ttl if ttl is None else check_ttl(ttl)
    vectors = None if embeddings is None else eng.unit_rows(embeddings, n, "embeddings")
    return _CheckedPut(ns, queries, responses, metas, life, vectors)


def write_put(eng: Engine, checked: _CheckedPut, t0: float) -> int:
    """Write a checked put (its vectors, if any, known) and keep the indexes and the
    hot map in step; the last step of every put."""
    ns, queries, metas = checked.ns, checked.queries, checked.metas
    responses = checked.responses
    indexes = eng.indexes
    n = len(queries)
    now = eng.clock()
    expires = None if checked.life is None else now + checked.life
    vectors = checked.vectors
    stored = None if vectors is None else vectors.astype(indexes.dtype, copy=False)
    new_dim = None
    if stored is not None and indexes.dim is None:
        new_dim = int(stored.shape[1])
    key = eng.key_memo.compute  # (what eng.key returns, without the memo's lookup)
    texts = _answer_records(eng, checked)
    # a store with the QualityState capability writes them with the entries; for one
    # without, this process keeps them once the entries have ids
    budgets = eng.budgets
    local = budgets if texts is not None and budgets is not None and budgets.state is None else None
    records = None if local is not None else texts
    if n == 1:  # every put: its entry without a comprehension's machinery (~2 us)
        q = queries[0]
        vector = None if stored is None else stored[0].tobytes()
        record = None if records is None else records[0]
        entries = [
            NewEntry(key(ns, q), ns, q, responses[0], metas[0], vector, now, expires, record)
        ]
    else:
        entries = [
            NewEntry(
                key(ns, q),
                ns,
                q,
                r,
                metas[i],
                None if stored is None else stored[i].tobytes(),
                now,
                expires,
                None if records is None else records[i],
            )
            for i, (q, r) in enumerate(zip(queries, responses, strict=True))
        ]
    limits = None
    quota = eng.quotas.get(ns)
    if quota is not None or eng.max_entries is not None:
        limits = Limits(eng.max_entries, quota)
    fresh = None  # the namespace's first index, built before anything is written
    if stored is not None and not eng.store_search and ns not in indexes.by_ns:
        fresh = indexes.new(ns, int(stored.shape[1]))
    kf = eng.key_filter
    if kf is not None:  # before the write: a failure leaves a false positive
        for new in entries:
            kf.add(new.key)
    touches = eng.recency.take()
    try:
        result = eng.store.put_many(
            entries,
            now=now,
            limits=limits,
            touches=touches or None,
            meta=None if new_dim is None else {"dim": str(new_dim)},
        )
    except BaseException as exc:
        eng.recency.restore(touches)
        if fresh is not None:
            fresh.close()
        if new_dim is not None and isinstance(exc, EmbedderMismatchError):
            # another process's put recorded the dimension since this cache read the
            # settings (the store wrote nothing): the error a known dimension gives
            held = indexes.stored_dim()
            if held is not None:
                indexes.dim = held
                raise DimensionMismatchError(new_dim, held) from exc
        raise
    if new_dim is not None:
        indexes.dim = new_dim
    if fresh is not None:
        indexes.by_ns[ns] = fresh
    _apply_put(eng, ns, result, stored, responses)
    hot = eng.hot
    if hot.capacity:  # write-through: a put is usually read back soon
        # ... so the key memo keeps the keys of what the map keeps (a pure function's
        # results: right in any mode), and that read costs no key computation either.
        remember = eng.key_memo.remember
        ids = result.ids
        if n == 1 and not result.evicted:  # (what it replaced has an older id)
            new = entries[0]
            hot.remember_new(ids[0], new, now, expires)
            remember(ns, new.query, new.key)
        else:
            gone = {i for i, _ in result.replaced + result.evicted}
            # Only the batch's tail can stay in a map of hot.capacity entries.
            for j in range(max(0, n - hot.capacity), n):
                if ids[j] not in gone:
                    new = entries[j]
                    hot.remember_new(ids[j], new, now, expires)
                    remember(ns, new.query, new.key)
    if local is not None:
        assert texts is not None
        gone = {i for i, _ in result.replaced + result.evicted}
        local.keep_local({i: t for i, t in zip(result.ids, texts, strict=True) if i not in gone})
    eng.metrics.put(ns, n, t0)
    return n


def _answer_records(eng: Engine, checked: _CheckedPut) -> list[str] | None:
    """With answer vectors, each new entry's budget record (the text, in input order)."""
    if checked.answers is None or eng.budgets is None:
        return None
    return [Budgets.text(EntryRecord(answer=encode_answer(row))) for row in checked.answers]


def _apply_put(
    eng: Engine,
    ns: str,
    result: PutResult,
    stored: npt.NDArray[Any] | None,
    responses: Sequence[str],
) -> None:
    if stored is not None:
        eng.indexes.for_ns(ns).add(np.asarray(result.ids, dtype=np.int64), stored)
        if eng.prototypes is not None:
            eng.prototypes.add(ns, result.ids, responses, stored)
    if result.replaced:
        eng.unindex(result.replaced)
    if result.evicted:
        eng.unindex(result.evicted)
        expired = result.evicted[: result.expired_evicted]
        evicted = result.evicted[result.expired_evicted :]
        eng.metrics.removals(expired, "expire")
        eng.metrics.removals(evicted, "evict")
