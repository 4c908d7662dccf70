"""``SemanticCache(..., error_budget=..., answer_similarity=...)``: answers compared by
the cosine of their embeddings, made at put with the cache's embedder and kept in the
entry's budget record (issue 13, "answers that agree").

Real SQLite files in tmp_path (and the server stores where ``scripts/services`` runs
them). The embedder is a table of chosen vectors where the test is about the engine's
own logic: a prompt and its paraphrase at cosine 0.95, an answer and its paraphrase at
0.97, two different answers at 0.3. One test uses the real default embedder (int8 ONNX
MiniLM) on free-text answers at the documented threshold.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from test_error_budget import Clock, force, spy
from test_store_quality_servers import Opener, backend, open_store  # noqa: F401 (fixtures)

from semcache import (
    AsyncSemanticCache,
    ConfigurationError,
    EmbedderError,
    MemoryStore,
    SemanticCache,
    SQLiteStore,
)
from semcache._agreement import SPLIT, UNANIMOUS
from semcache._budget_policy import EntryRecord
from semcache._budgets import decode_answer, encode_answer
from semcache._cache import engine_of

DIM = 16
#: The documented threshold (docs/quality.md, "Answers compared by their embeddings").
DOCUMENTED = 0.95


def _axis(i: int, mix: float = 1.0, j: int | None = None) -> npt.NDArray[np.float32]:
    """Axis ``i``, or ``mix`` of it plus the rest along axis ``j`` (cosine ``mix``)."""
    v = np.zeros(DIM, dtype=np.float32)
    v[i] = mix
    if j is not None:
        v[j] = math.sqrt(1.0 - mix * mix)
    return v


PARIS = "Paris is the capital."
PARIS_AGAIN = "The capital is Paris."  # the same answer in other words: cosine 0.97
BERLIN = "Berlin."  # another answer: cosine 0.3 to PARIS
TABLE = {
    "topic": _axis(0),
    "near": _axis(0, 0.9, 1),
    "q": _axis(0, 0.95, 2),
    "q2": _axis(0, 0.95, 3),
    PARIS: _axis(8),
    PARIS_AGAIN: _axis(8, 0.97, 9),
    BERLIN: _axis(8, 0.3, 10),
    "Rome.": _axis(11),
}


class TableEmbedder:
    """Chosen vectors by text (others: a fixed vector per text); counts what it embeds
    and fails on the texts in ``fail``."""

    dim = DIM
    fingerprint = "table:dim=16"

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.fail: set[str] = set()

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        texts = list(texts)
        self.calls.append(texts)
        if self.fail & set(texts):
            raise RuntimeError("the embedder is down")
        rows = []
        for t in texts:
            v = TABLE.get(t)
            if v is None:
                seed = int.from_bytes(t.encode()[:8].ljust(8, b"\0"), "little")
                v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
                v[:8] = 0.0  # away from the prompts' axes
            rows.append(v)
        return np.stack(rows)

    def embedded(self) -> list[str]:
        return [t for call in self.calls for t in call]


def cache_of(
    path: Path | None = None, emb: TableEmbedder | None = None, **kwargs: Any
) -> SemanticCache:
    kwargs.setdefault("error_budget", 0.1)
    kwargs.setdefault("answer_similarity", 0.9)
    kwargs.setdefault("clock", Clock())
    return SemanticCache(path, emb or TableEmbedder(), guards=None, index_backend="flat", **kwargs)


def verifying(cache: SemanticCache) -> None:
    """Store PARIS for "topic" and make the budget verify every judged get."""
    cache.put("topic", PARIS)
    force(cache, "verify")


def record_of(store: Any, entry_id: int) -> Any:
    text = store.get_by_ids([entry_id])[entry_id].record
    return None if text is None else json.loads(text)


def entry_id(cache: SemanticCache | AsyncSemanticCache, query: str) -> int:
    eng = engine_of(cache) if isinstance(cache, SemanticCache) else cache._engine
    stored = eng.store.get_by_key(eng.key("default", query))
    assert stored is not None
    return stored.id


def answer_in(record: Any) -> npt.NDArray[np.float32]:
    assert isinstance(record, dict), record
    vector = decode_answer(record["a"], DIM)
    assert vector is not None
    return vector


def unit(v: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    out: npt.NDArray[np.float32] = v / np.linalg.norm(v)
    return out


# -- the option's checks -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "extra", "words"),
    [
        (0, {}, "in (0, 1]"),
        (1.5, {}, "in (0, 1]"),
        (-0.2, {}, "in (0, 1]"),
        (math.nan, {}, "finite"),
        ("0.9", {}, "number"),
        (True, {}, "number"),
        (0.9, {"same_answer": lambda a, b: a == b}, "same_answer"),
        (0.9, {"embedder": None}, "embedder"),
        (0.9, {"error_budget": None}, "error_budget"),
    ],
)
def test_a_bad_answer_similarity_is_refused_before_anything_is_created(
    tmp_path: Path, value: Any, extra: dict[str, Any], words: str
) -> None:
    path = tmp_path / "c.db"
    args: dict[str, Any] = {"embedder": TableEmbedder(), "error_budget": 0.1}
    args.update(extra)
    for cls in (SemanticCache, AsyncSemanticCache):
        with pytest.raises(ConfigurationError, match="answer_similarity") as info:
            cls(path, answer_similarity=value, **args)
        assert words in str(info.value)
    assert list(tmp_path.iterdir()) == []


# -- at put --------------------------------------------------------------------------------
def test_a_put_embeds_its_answer_with_its_prompt_and_keeps_the_vector(tmp_path: Path) -> None:
    emb = TableEmbedder()
    with cache_of(tmp_path / "c.db", emb) as cache:
        cache.put("topic", PARIS)
        assert emb.calls == [["topic", PARIS]]  # one embedder call for both
        assert cache.put_many(["q", "q2", "near"], [PARIS, PARIS_AGAIN, BERLIN]) == 3
        assert emb.calls[1:] == [["q", "q2", "near", PARIS, PARIS_AGAIN, BERLIN]]
        stored = entry_id(cache, "topic")
        record = record_of(engine_of(cache).store, stored)
        assert record["o"] == []
        assert np.allclose(answer_in(record), TABLE[PARIS], atol=1e-3)
    with cache_of(tmp_path / "c.db", TableEmbedder()) as cache:  # reopened
        record = record_of(engine_of(cache).store, entry_id(cache, "near"))
        assert np.allclose(answer_in(record), unit(TABLE[BERLIN]), atol=1e-3)
        assert cache.get("topic").response == PARIS  # type: ignore[union-attr]


def test_get_or_put_embeds_the_fresh_answer_once_for_learning_and_the_put(
    tmp_path: Path,
) -> None:
    emb = TableEmbedder()
    with cache_of(tmp_path / "c.db", emb) as cache:
        verifying(cache)
        emb.calls.clear()
        assert cache.get_or_put("q", lambda: PARIS_AGAIN) == PARIS_AGAIN
        # the query (by the get), the fresh answer (once: learn and put share it)
        assert emb.calls == [["q"], [PARIS_AGAIN]]
        record = record_of(engine_of(cache).store, entry_id(cache, "q"))
        assert np.allclose(answer_in(record), unit(TABLE[PARIS_AGAIN]), atol=1e-3)


def test_a_failing_embedder_at_put_writes_nothing(tmp_path: Path) -> None:
    emb = TableEmbedder()
    with cache_of(tmp_path / "c.db", emb) as cache:
        cache.put("topic", PARIS)
        before = record_of(engine_of(cache).store, entry_id(cache, "topic"))
        emb.fail = {BERLIN}
        with pytest.raises(EmbedderError, match="nothing was written"):
            cache.put("topic", BERLIN)  # the prompt embeds; its answer does not
        with pytest.raises(EmbedderError):
            cache.put_many(["a", "b"], ["x", BERLIN])
        with pytest.raises(EmbedderError):
            cache.put("other", BERLIN, embedding=TABLE["near"])  # the prompt's given
        assert cache.stats()["total_entries"] == 1
        assert cache.get("topic").response == PARIS  # type: ignore[union-attr]
        assert record_of(engine_of(cache).store, entry_id(cache, "topic")) == before
    with cache_of(tmp_path / "c.db", TableEmbedder()) as cache:
        assert cache.stats()["total_entries"] == 1


def test_get_or_put_returns_an_answer_it_cannot_embed_and_stores_nothing(
    tmp_path: Path,
) -> None:
    emb = TableEmbedder()
    with cache_of(tmp_path / "c.db", emb) as cache:
        verifying(cache)
        emb.fail = {BERLIN}
        assert cache.get_or_put("q", lambda: BERLIN) == BERLIN  # paid for: returned
        assert cache.stats()["total_entries"] == 1  # and not stored
        record = record_of(engine_of(cache).store, entry_id(cache, "topic"))
        # compared as text instead (PARIS is not BERLIN); the vector kept
        assert record["o"] == [[pytest.approx(0.95, abs=1e-3), 0.0]]
        assert np.allclose(answer_in(record), TABLE[PARIS], atol=1e-3)


class CountsWrites(MemoryStore):
    """A MemoryStore that counts its writes (put_many and write_records calls)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def put_many(self, entries: Any, **kwargs: Any) -> Any:
        self.writes.append("put_many")
        return super().put_many(entries, **kwargs)

    def write_records(self, records: Any) -> None:
        self.writes.append("write_records")
        super().write_records(records)


def test_a_put_stores_the_answer_vector_in_its_one_store_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = CountsWrites()
    with cache_of(None, TableEmbedder(), store=store) as cache:
        assert store.writes == ["put_many"]  # the open records its settings
        store.writes.clear()
        cache.put("topic", PARIS)
        cache.put_many(["q", "near"], [PARIS_AGAIN, BERLIN])
        assert store.writes == ["put_many", "put_many"]  # no second write of the records
        for prompt, answer in (("topic", PARIS), ("near", BERLIN)):
            record = record_of(store, entry_id(cache, prompt))
            assert np.allclose(answer_in(record), unit(TABLE[answer]), atol=1e-3)
    written: list[Any] = []
    monkeypatch.setattr(SQLiteStore, "write_records", lambda self, r: written.append(r))
    with cache_of(tmp_path / "c.db", TableEmbedder()) as cache:  # a real SQLite file
        cache.put("topic", PARIS)
        cache.put_many(["q", "near"], [PARIS_AGAIN, BERLIN])
    assert written == []
    monkeypatch.undo()
    emb = TableEmbedder()
    with cache_of(tmp_path / "c.db", emb) as cache:  # reopened: the vectors are there
        record = record_of(engine_of(cache).store, entry_id(cache, "near"))
        assert np.allclose(answer_in(record), unit(TABLE[BERLIN]), atol=1e-3)
        asked = spy(cache)
        cache.get("q2", embedding=TABLE["q2"])
        assert asked[-1][0].examined == 3  # all three compared ...
        assert emb.calls == []  # ... and no answer embedded again


def test_a_store_that_ignores_the_record_at_put_has_the_answer_embedded_later() -> None:
    """A third-party store written before ``NewEntry.record``: its entries start without
    a record, and their answers are embedded when first compared."""

    class Ignores(MemoryStore):
        def put_many(self, entries: Any, **kwargs: Any) -> Any:
            return super().put_many([replace(e, record=None) for e in entries], **kwargs)

    store = Ignores()
    emb = TableEmbedder()
    # shared: every read goes to the store (no copies of what this process wrote)
    with cache_of(None, emb, store=store, multi_process_mode="shared") as cache:
        cache.put("topic", PARIS)  # stored; its answer vector is not
        stored = entry_id(cache, "topic")
        assert store.get_by_ids([stored])[stored].record is None
        force(cache, "verify")
        emb.calls.clear()
        assert cache.get_or_put("q", lambda: PARIS_AGAIN) == PARIS_AGAIN
        assert [PARIS] in emb.calls  # embedded when first compared
        record = record_of(store, stored)
        assert record["o"] == [[pytest.approx(0.95, abs=1e-3), 1.0]]
        assert np.allclose(answer_in(record), TABLE[PARIS], atol=1e-3)


# -- records: the old form, lazily filled, kept by learning ---------------------------------
def test_the_record_reads_both_forms_and_writes_the_old_one_without_a_vector() -> None:
    old = EntryRecord.from_json([[0.93, 1.0], [0.9, 0.0]])
    assert old.observations == [(0.93, True), (0.9, False)]
    assert old.answer is None
    assert old.to_json() == [[0.93, 1.0], [0.9, 0.0]]
    text = encode_answer(unit(TABLE[PARIS_AGAIN]))
    new = EntryRecord.from_json({"o": [[0.93, 1.0]], "a": text})
    assert (new.observations, new.answer) == ([(0.93, True)], text)
    assert new.to_json() == {"o": [[0.93, 1.0]], "a": text}
    with pytest.raises(ValueError, match="not an entry record"):
        EntryRecord.from_json({"o": [], "a": 3})
    assert decode_answer("not base64!", DIM) is None
    assert decode_answer(text, DIM + 1) is None


def test_entries_put_without_the_option_are_embedded_once_when_compared(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.db"
    with cache_of(path, TableEmbedder(), answer_similarity=None) as cache:
        cache.put("topic", PARIS)
        cache.put("near", PARIS_AGAIN)
        topic = entry_id(cache, "topic")
        # an old-form record with an observation (as a budget without the option wrote)
        engine_of(cache).store.write_records({topic: "[[0.91,1.0]]"})  # type: ignore[attr-defined]
    emb = TableEmbedder()
    with cache_of(path, emb) as cache:
        asked = spy(cache)
        assert cache.get("q", embedding=TABLE["q"]) is None  # a fresh budget serves none
        # the two answers embedded in one call, their vectors written back ...
        assert emb.calls == [[PARIS, PARIS_AGAIN]]
        store = engine_of(cache).store
        record = record_of(store, topic)
        assert record["o"] == [[0.91, 1.0]]  # ... keeping what the record held
        assert np.allclose(answer_in(record), TABLE[PARIS], atol=1e-3)
        assert isinstance(record_of(store, entry_id(cache, "near")), dict)
        # and they agree (cosine 0.97 >= 0.9), which normalized equality would deny
        assert asked[-1][0].evidence == UNANIMOUS
        assert cache.get("q2", embedding=TABLE["q2"]) is None
        assert len(emb.calls) == 1  # nothing embedded again
        assert asked[-1][0].evidence == UNANIMOUS


def test_a_plain_get_costs_no_embedder_call_when_every_candidate_has_its_vector(
    tmp_path: Path,
) -> None:
    emb = TableEmbedder()
    with cache_of(tmp_path / "c.db", emb) as cache:
        cache.put_many(["topic", "near"], [PARIS, BERLIN])
        asked = spy(cache)
        emb.calls.clear()
        cache.get("q", embedding=TABLE["q"])
        cache.get("q2")
        assert emb.calls == [["q2"]]  # the query, nothing else
        assert [ev.evidence for ev, _ in asked] == [SPLIT, SPLIT]  # 0.3 < 0.9: another


def test_a_record_rewritten_with_another_vector_is_decoded_again(tmp_path: Path) -> None:
    """The decoded vectors a cache keeps between gets are those of the record text it
    reads now: another process's rewrite is seen at once."""
    with cache_of(tmp_path / "c.db", TableEmbedder(), multi_process_mode="shared") as cache:
        cache.put_many(["topic", "near"], [PARIS, PARIS_AGAIN])
        asked = spy(cache)
        cache.get("q", embedding=TABLE["q"])
        assert asked[-1][0].evidence == UNANIMOUS
        near = entry_id(cache, "near")
        other = record_of(engine_of(cache).store, near)
        other["a"] = encode_answer(unit(TABLE[BERLIN]))
        engine_of(cache).store.write_records({near: json.dumps(other)})  # type: ignore[attr-defined]
        cache.get("q2", embedding=TABLE["q2"])
        assert asked[-1][0].evidence == SPLIT


def test_learning_keeps_the_answer_vector(tmp_path: Path) -> None:
    with cache_of(tmp_path / "c.db", TableEmbedder()) as cache:
        cache.put("topic", PARIS)
        stored = entry_id(cache, "topic")
        vector = record_of(engine_of(cache).store, stored)["a"]
        force(cache, "verify")
        assert cache.get_or_put("q", lambda: BERLIN) == BERLIN
        hit = None
        force(cache, "serve")
        hit = cache.get("q2", embedding=TABLE["q2"])
        assert hit is not None
        assert hit.entry_id == stored
        cache.feedback(hit, True)
        record = record_of(engine_of(cache).store, stored)
        assert [c for _, c in record["o"]] == [0.0, 1.0]  # the verification, the report
        assert record["a"] == vector


# -- in comparisons ------------------------------------------------------------------------
def test_a_verified_paraphrase_counts_as_a_right_answer(tmp_path: Path) -> None:
    for similar, right in ((0.9, 1.0), (None, 0.0)):  # with the option, and without
        with cache_of(
            tmp_path / f"{similar}.db", TableEmbedder(), answer_similarity=similar
        ) as cache:
            verifying(cache)
            assert cache.get_or_put("q", lambda: PARIS_AGAIN) == PARIS_AGAIN
            record = record_of(engine_of(cache).store, entry_id(cache, "topic"))
            observations = record["o"] if isinstance(record, dict) else record
            assert observations == [[pytest.approx(0.95, abs=1e-3), right]]


def test_a_verified_different_answer_counts_as_a_wrong_one(tmp_path: Path) -> None:
    with cache_of(tmp_path / "c.db", TableEmbedder()) as cache:
        cache.put("topic", PARIS)
        cache.put("near", PARIS_AGAIN)
        force(cache, "miss")
        assert cache.get_or_put("q", lambda: BERLIN) == BERLIN
        store = engine_of(cache).store
        assert record_of(store, entry_id(cache, "topic"))["o"][0][1] == 0.0
        assert record_of(store, entry_id(cache, "near"))["o"][0][1] == 0.0


def test_an_integration_s_view_is_what_is_embedded(tmp_path: Path) -> None:
    emb = TableEmbedder()
    with cache_of(tmp_path / "c.db", emb) as cache:
        budgets = engine_of(cache).budgets
        assert budgets is not None
        budgets.views = {"door/": lambda text: json.loads(text)["answer"]}
        stored = json.dumps({"id": "x1", "answer": PARIS})
        cache.put("topic", stored, namespace="door/a")
        assert emb.calls == [["topic", PARIS]]
        cache.put("topic", stored)  # another namespace: the whole text
        assert emb.calls[1] == ["topic", stored]


def test_a_store_without_records_keeps_the_vectors_in_memory() -> None:
    class Bare(MemoryStore):
        write_records = None  # type: ignore[assignment]

    emb = TableEmbedder()
    with cache_of(None, emb, store=Bare()) as cache:
        cache.put_many(["topic", "near"], [PARIS, PARIS_AGAIN])
        asked = spy(cache)
        emb.calls.clear()
        cache.get("q", embedding=TABLE["q"])
        assert emb.calls == []  # the vectors were kept at put, in this process
        assert asked[-1][0].evidence == UNANIMOUS


def test_a_door_compares_the_answers_it_reads_from_stored_completions(tmp_path: Path) -> None:
    """The openai door stores whole completions (ids, timestamps, usage differ every
    call); with the option, the answer its view reads from them is what is embedded, at
    put and for the fresh answer of a verification."""
    import re

    from chat_upstream import running_upstream
    from test_integrations_budget import OpenAIDoor, only_namespace
    from test_integrations_budget import force as force_in
    from test_integrations_budget import record as record_in
    from test_integrations_budget import vec as topic_vec

    topic = re.compile(r"topic (\d+)(?: #(\d+))?$")
    emb = TableEmbedder()
    table = emb.embed

    def embed(texts: Sequence[str]) -> npt.NDArray[np.float32]:
        rows = []
        for text in texts:
            m = topic.match(text)
            if m is None:
                rows.append(table([text])[0])
            else:
                rows.append(
                    topic_vec(int(m.group(1)), -1 if m.group(2) is None else int(m.group(2)))
                )
        return np.stack(rows)

    emb.embed = embed  # type: ignore[method-assign]
    with running_upstream() as upstream, cache_of(tmp_path / "c.db", emb) as cache:
        door = OpenAIDoor(upstream, cache)
        upstream.reply = lambda text, n: PARIS
        door.ask("topic 0")
        ns = only_namespace(cache)
        assert [PARIS] in emb.calls  # the answer, not the completion's JSON
        force_in(cache, ns, "verify")
        upstream.reply = lambda text, n: PARIS_AGAIN
        assert door.ask("topic 0 #1").parse().choices[0].message.content == PARIS_AGAIN
        assert [PARIS_AGAIN] in emb.calls
        pairs = record_in(cache, ns, "topic 0")
        assert isinstance(pairs, dict)
        assert pairs["o"] == [[pytest.approx(0.95, abs=1e-3), 1.0]]  # the same answer
        door.client.close()


# -- the real default embedder --------------------------------------------------------------
def test_the_default_embedder_judges_free_text_paraphrases_at_the_documented_threshold(
    tmp_path: Path,
) -> None:
    from semcache.embedders import default_embedder

    with SemanticCache(
        tmp_path / "c.db",
        default_embedder(),
        guards=None,
        error_budget=0.1,
        answer_similarity=DOCUMENTED,
        clock=Clock(),
    ) as cache:
        cache.put("What is the capital of France?", "Paris is the capital of France.")
        cache.put("What is the capital city of France?", "Paris is the capital of France.")
        stored = entry_id(cache, "What is the capital of France?")
        force(cache, "miss")
        for fresh in ("The capital of France is Paris.", "Berlin is the capital of Germany."):
            cache.get_or_put("Which city is the capital of France?", lambda f=fresh: f)
            cache.delete("Which city is the capital of France?")
        record = record_of(engine_of(cache).store, stored)
        assert [c for _, c in record["o"]] == [1.0, 0.0]  # the same, then another


# -- async parity --------------------------------------------------------------------------
def test_the_async_cache_compares_answers_alike(tmp_path: Path) -> None:
    def run_sync() -> tuple[Any, Any, list[list[str]]]:
        emb = TableEmbedder()
        with cache_of(tmp_path / "s.db", emb) as cache:
            verifying(cache)
            cache.get_or_put("q", lambda: PARIS_AGAIN)
            store = engine_of(cache).store
            return (
                record_of(store, entry_id(cache, "topic")),
                record_of(store, entry_id(cache, "q")),
                emb.calls,
            )

    async def run_async() -> tuple[Any, Any, list[list[str]]]:
        emb = TableEmbedder()
        async with AsyncSemanticCache(
            tmp_path / "a.db",
            emb,
            guards=None,
            index_backend="flat",
            error_budget=0.1,
            answer_similarity=0.9,
            clock=Clock(),
        ) as cache:
            await cache.put("topic", PARIS)
            force(cache, "verify")  # type: ignore[arg-type]
            await cache.get_or_put("q", lambda: PARIS_AGAIN)
            store = cache._engine.store
            return (
                record_of(store, entry_id(cache, "topic")),
                record_of(store, entry_id(cache, "q")),
                emb.calls,
            )

    assert asyncio.run(run_async()) == run_sync()


def test_an_async_embedder_embeds_the_answers_at_put_on_fill_and_when_fresh(
    tmp_path: Path,
) -> None:
    class AsyncTable:
        dim = DIM
        fingerprint = TableEmbedder.fingerprint

        def __init__(self) -> None:
            self.table = TableEmbedder()

        async def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
            return self.table.embed(texts)

    path = tmp_path / "c.db"
    with cache_of(path, TableEmbedder(), answer_similarity=None) as old:
        old.put("near", PARIS)  # no vector

    async def run() -> tuple[Any, Any, list[list[str]]]:
        emb = AsyncTable()
        async with AsyncSemanticCache(
            path, emb, guards=None, index_backend="flat", error_budget=0.1,
            answer_similarity=0.9, clock=Clock(),
        ) as cache:  # fmt: skip
            await cache.put("topic", PARIS)
            force(cache, "verify")  # type: ignore[arg-type]
            assert await cache.get_or_put("q", lambda: PARIS_AGAIN) == PARIS_AGAIN
            store = cache._engine.store
            return (
                record_of(store, entry_id(cache, "topic")),
                record_of(store, entry_id(cache, "near")),
                emb.table.calls,
            )

    topic, near, calls = asyncio.run(run())
    assert calls == [["topic", PARIS], ["q"], [PARIS], [PARIS_AGAIN]]  # put, get, fill, fresh
    assert topic["o"] == [[pytest.approx(0.95, abs=1e-3), 1.0]]
    assert near["o"] == [[pytest.approx(0.855, abs=1e-3), 1.0]]
    assert np.allclose(answer_in(near), TABLE[PARIS], atol=1e-3)


# -- the server stores (test_store_quality_servers' fixtures: real Redis, PostgreSQL,
# DynamoDB through dynalite) ----------------------------------------------------------------


def test_the_server_stores_keep_the_answer_vectors(open_store: Opener) -> None:  # noqa: F811
    emb = TableEmbedder()
    cache = cache_of(None, emb, store=open_store())
    cache.put_many(["topic", "near"], [PARIS, PARIS_AGAIN])
    stored = entry_id(cache, "topic")
    force(cache, "verify")
    assert cache.get_or_put("q", lambda: PARIS_AGAIN) == PARIS_AGAIN
    cache.close()
    other = open_store()  # another client of the same server
    record = record_of(other, stored)
    assert record["o"] == [[pytest.approx(0.95, abs=1e-3), 1.0]]
    assert np.allclose(answer_in(record), TABLE[PARIS], atol=1e-3)
    emb2 = TableEmbedder()
    again = cache_of(None, emb2, store=open_store())
    asked = spy(again)
    again.get("q2", embedding=TABLE["q2"])
    assert emb2.calls == []  # every candidate's vector came from the server
    assert asked[-1][0].evidence == UNANIMOUS
    again.close()
