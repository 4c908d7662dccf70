"""The steps of ``answer_similarity`` that call the embedder (operation generators: the
texts to embed are yielded to the driver, so an AsyncEmbedder is awaited as for a
query): the answer vectors of stored entries that have none yet (:func:`fill_steps`,
a get's candidates put before the option was on, or by a store that ignores the record
a put gives it) and
a fresh answer's (:func:`fresh_steps`, the LLM's answer that teaches the budget and is
then put). The comparison itself is :class:`~semcache._budgets.Budgets`'."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from ._budget_policy import EntryRecord
from ._budgets import Budgets, Vector, encode_answer
from ._drive import Steps
from ._engine import Engine
from ._errors import CacheClosedError, StoreError
from ._store import StoredEntry

__all__ = ["answer_similarity_of", "fill_steps", "fresh_steps"]

logger = logging.getLogger("semcache")


def answer_similarity_of(eng: Engine) -> Budgets | None:
    """The cache's budget if it compares answers by their embeddings, else None."""
    budgets = eng.budgets
    return budgets if budgets is not None and budgets.similar is not None else None


def fill_steps(
    eng: Engine,
    budgets: Budgets,
    ns: str,
    missing: Sequence[StoredEntry],
    records: dict[int, EntryRecord],
) -> Steps[dict[int, Vector]]:
    """Embed the answers of ``missing`` (one embedder call), keep each vector in its
    record (``records``, by id) and write those records back, so the next get finds
    them. Returns the vectors by entry id; an embedder that fails gives none (logged:
    those answers are then compared by ``same_answer``), a failed write keeps them for
    this get only (logged)."""
    texts = [budgets.answer_text(ns, e.response) for e in missing]
    try:
        raw = yield texts
        eng.check_open()
        rows = eng.unit_rows(raw, len(texts), "embedder output", from_embedder=True)
    except CacheClosedError:
        raise
    except Exception:
        logger.exception("semcache: could not embed stored answers; compared as text")
        return {}
    out: dict[int, Vector] = {}
    changes: dict[int, Callable[[EntryRecord], object]] = {}
    for entry, row in zip(missing, rows, strict=True):
        out[entry.id] = row
        text = records[entry.id].answer = encode_answer(row)
        changes[entry.id] = _with_answer(text)
    try:
        budgets.update(changes, missing, records)
    except StoreError:
        budgets.counters["learn_errors"] += 1
        logger.exception("semcache: could not write the answer vectors back")
    return out


def _with_answer(text: str) -> Callable[[EntryRecord], None]:
    """A change of a record (:meth:`Budgets.update`): its answer vector set."""

    def change(record: EntryRecord) -> None:
        record.answer = text

    return change


def fresh_steps(eng: Engine, ns: str, fresh: str | None) -> Steps[Vector | None]:
    """The embedding of a fresh answer (the stored text's format; its view's text is
    embedded) as a unit row; None without ``answer_similarity``, without an answer, or
    when the embedder fails (logged)."""
    budgets = answer_similarity_of(eng)
    if budgets is None or fresh is None:
        return None
    try:
        raw = yield [budgets.answer_text(ns, fresh)]
        eng.check_open()
        row: Vector = eng.unit_rows(raw, 1, "embedder output", from_embedder=True)[0]
    except CacheClosedError:
        raise
    except Exception:
        logger.exception("semcache: could not embed the fresh answer; compared as text")
        return None
    return row
