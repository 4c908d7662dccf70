"""``answer_support``'s prototype veto (``semcache._prototypes``): a candidate is declined
when the prototype of another answer stored twice or more (the normalized sum of every
stored prompt that got it) is nearer the query than its own answer's.

The vectors are placed by hand (16 dimensions, the query on the first axis) so that each
case's figures can be checked on paper:

- ``A_NEAR`` (0.95 to the query) got "A"; alone, "A" is served at 0.95;
- ``A_FAR`` (0.2) got "A" too: "A"'s prototype is then at 0.745;
- ``B`` (three prompts at 0.6, each off on its own axis) got "B": its prototype is at
  0.793, nearer than "A"'s 0.745 once ``A_FAR`` is stored;
- ``C`` (eight prompts at 0.45, below the support floor: never a counted candidate)
  got "C": its prototype is at 0.819.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from random import Random
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from conftest import FakeClock
from test_store_conformance import BACKENDS, StoreFactory

import semcache._answer_memo
import semcache._prototypes
from semcache import SemanticCache
from semcache._agreement import answer_digest
from semcache._cache import engine_of
from semcache._errors import StoreUnavailableError
from semcache._prototypes import GHOST_SHARE, Prototypes

DIM = 16
THRESHOLD = 0.8
QUERY = np.eye(DIM, dtype=np.float32)[0]


def _at(cosine: float, axis: int) -> npt.NDArray[np.float32]:
    """A unit vector at ``cosine`` to the query, the rest on its own ``axis``."""
    v = np.zeros(DIM, dtype=np.float32)
    v[0], v[axis] = cosine, math.sqrt(1 - cosine * cosine)
    return v


A_NEAR = ("a near prompt", "A", _at(0.95, 1))
A_FAR = ("a far prompt", "A", _at(0.2, 2))
B = [(f"b prompt {i}", "B", _at(0.6, 3 + i)) for i in range(3)]
C = [(f"c prompt {i}", "C", _at(0.45, 6 + i)) for i in range(8)]


def _put(cache: SemanticCache, rows: Sequence[tuple[str, str, Any]], **kwargs: Any) -> None:
    for prompt, answer, vector in rows:
        cache.put(prompt, answer, embedding=vector, **kwargs)


def _ask(cache: SemanticCache, namespace: str = "default") -> str | None:
    hit = cache.get("the question asked", embedding=QUERY, namespace=namespace)
    return None if hit is None else hit.response


def _open(path: Path | None = None, **kwargs: Any) -> SemanticCache:
    kwargs.setdefault("similarity_threshold", THRESHOLD)
    kwargs.setdefault("guards", None)
    return SemanticCache(None if path is None else str(path), **kwargs)


def _prototype(*vectors: npt.NDArray[np.float32]) -> float:
    total = np.sum(vectors, axis=0, dtype=np.float64)
    return float(total[0] / np.linalg.norm(total))


def test_the_figures_the_cases_rely_on() -> None:
    assert _prototype(A_NEAR[2], A_FAR[2]) == pytest.approx(0.745, abs=1e-3)
    assert _prototype(*[v for _, _, v in B]) == pytest.approx(0.793, abs=1e-3)
    assert _prototype(*[v for _, _, v in C]) == pytest.approx(0.819, abs=1e-3)


def test_an_answer_is_judged_by_every_prompt_that_got_it(tmp_path: Path) -> None:
    with _open(tmp_path / "c.db") as cache:
        _put(cache, [A_NEAR, *B])
        assert cache.stats()["prototype_veto"] == {"state": "not read", "prototypes": {}}
        assert _ask(cache) == "A"  # "A" stored once: judged at its candidate's 0.95
        assert cache.stats()["prototype_veto"] == {
            "state": "kept",
            "prototypes": {"default": 1},  # "B"
        }
        _put(cache, [A_FAR])  # "A"'s prototype 0.745, "B"'s 0.793
        assert _ask(cache) is None
        assert cache.stats()["prototype_veto"]["prototypes"] == {"default": 2}
        assert cache.stats()["misses"]["support"] == 1
        assert cache.delete(A_FAR[0])
        assert _ask(cache) == "A"
        _put(cache, [A_FAR])
    with _open(tmp_path / "c.db") as cache:  # a new process reads them from the store
        assert _ask(cache) is None


def test_without_answer_support_there_is_no_veto(tmp_path: Path) -> None:
    with _open(tmp_path / "c.db", answer_support=False) as cache:
        _put(cache, [A_NEAR, A_FAR, *B])
        assert engine_of(cache).prototypes is None
        assert cache.stats()["prototype_veto"] is None
        assert _ask(cache) == "A"


def test_a_rival_that_is_no_candidate_still_declines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _open(tmp_path / "c.db") as cache:
        _put(cache, [A_NEAR, A_FAR])
        assert _ask(cache) == "A"  # no other answer's prototype
        _put(cache, C)  # each below the floor; together at 0.819
        assert _ask(cache) is None
        # past PROTOTYPE_ROWS prototypes a get compares its candidates' answers' only
        monkeypatch.setattr(semcache._prototypes, "PROTOTYPE_ROWS", 1)
        assert _ask(cache) == "A"


def test_the_veto_stays_in_its_namespace(tmp_path: Path) -> None:
    with _open(tmp_path / "c.db") as cache:
        _put(cache, [A_NEAR, *B])
        _put(cache, [A_FAR], namespace="other")
        assert _ask(cache) == "A"
        _put(cache, [A_NEAR, *B], namespace="other")
        assert _ask(cache, "other") is None
        prototypes = engine_of(cache).prototypes
        assert prototypes is not None
        tables = prototypes._tables
        assert tables is not None
        kept = tables["default"]
        cache.clear_namespace("other")  # drops that namespace's table only
        assert prototypes._tables is tables
        assert tables["default"] is kept
        assert "other" not in tables
        assert _ask(cache, "other") is None  # (nothing stored there now)
        _put(cache, [A_NEAR, A_FAR, *B], namespace="other")
        assert _ask(cache, "other") is None
        assert _ask(cache) == "A"


def test_a_cache_too_large_runs_without_the_veto(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(semcache._prototypes, "PROTOTYPE_ENTRIES", 5)
    with _open(tmp_path / "c.db") as cache:
        prototypes = engine_of(cache).prototypes
        assert prototypes is not None
        _put(cache, [A_NEAR, *B])  # 4 entries: kept
        assert _ask(cache) == "A"
        assert not prototypes.off
        _put(cache, [A_FAR])  # 5: still kept, and declined
        assert _ask(cache) is None
        _put(cache, [C[0]])  # 6: over, dropped
        assert prototypes.off
        assert cache.stats()["prototype_veto"] == {"state": "off", "prototypes": {}}
        assert _ask(cache) == "A"
    with _open(tmp_path / "c.db") as cache:  # too large from the start: not read
        assert _ask(cache) == "A"
        prototypes = engine_of(cache).prototypes
        assert prototypes is not None
        assert prototypes.off


@pytest.fixture(params=BACKENDS, ids=lambda b: b.name)
def factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    f = StoreFactory(request.param, tmp_path)
    yield f
    f.close_all()


def test_the_prototypes_follow_every_way_in_and_out(factory: StoreFactory) -> None:
    clock = FakeClock()
    store = factory()
    cache = _open(store=store, clock=clock, max_entries=6)
    try:
        cache.put_many(
            [p for p, _, _ in [A_NEAR, *B]],
            [a for _, a, _ in [A_NEAR, *B]],
            embeddings=np.stack([v for _, _, v in [A_NEAR, *B]]),
        )
        assert _ask(cache) == "A"
        _put(cache, [A_FAR], ttl=60)
        assert _ask(cache) is None
        clock.advance(61)  # expired, then vacuumed away
        assert cache.vacuum() == 1
        assert _ask(cache) == "A"
        _put(cache, [A_FAR])
        assert _ask(cache) is None
        clock.advance(1)
        for prompt, _, vector in [A_NEAR, *B]:  # A_FAR is now the least recently used
            assert cache.get(prompt, embedding=vector) is not None
        clock.advance(1)
        _put(cache, [("another", "D", _at(0.1, 14)), ("and another", "E", _at(0.1, 15))])
        assert _ask(cache) == "A"  # A_FAR evicted (6 entries at most)
        clock.advance(1)
        for prompt, _, vector in [A_NEAR, *B]:
            assert cache.get(prompt, embedding=vector) is not None
        clock.advance(1)
        _put(cache, [A_FAR])  # evicts "D" or "E", the least recently used
        assert _ask(cache) is None
        cache.clear_namespace("default")
        _put(cache, [A_NEAR, *B])
        assert _ask(cache) == "A"
        _put(cache, [A_FAR])
        cache.clear()
        _put(cache, [A_NEAR, *B])
        assert _ask(cache) == "A"
    finally:
        cache.close()


def test_another_process_s_writes_reach_the_prototypes(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "shared.db"
    options: dict[str, Any] = {"multi_process_mode": "shared", "clock": clock}
    with _open(path, **options) as reader, _open(path, **options) as writer:
        _put(reader, [A_NEAR, *B])
        assert _ask(reader) == "A"  # (the prototypes built)
        _put(writer, [A_FAR])
        clock.advance(60)  # past the stale check: the reader reads the change log
        assert _ask(reader) is None
        assert writer.delete(A_FAR[0])
        clock.advance(60)
        assert _ask(reader) == "A"


def test_a_process_s_own_puts_are_not_read_again_from_the_change_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    with _open(tmp_path / "s.db", multi_process_mode="shared", clock=clock) as cache:
        _put(cache, [A_NEAR, *B])
        assert _ask(cache) == "A"  # (the tables read)
        store: Any = cache.store
        real = store.get_by_ids
        answers_read: list[list[int]] = []

        def counting(ids: Sequence[int], *, vectors: bool = False) -> Any:
            if not vectors:
                answers_read.append(list(ids))
            return real(ids, vectors=vectors)

        monkeypatch.setattr(store, "get_by_ids", counting)
        _put(cache, [A_FAR])
        clock.advance(60)  # the next get replays the change log, this put included
        assert _ask(cache) is None
        assert answers_read == []


def test_sums_stay_those_of_the_stored_vectors(tmp_path: Path) -> None:
    """Seeded puts, replacements and deletes over a few answers: every prototype kept is
    the normalized sum of its answer's stored vectors plus at most 1/GHOST_SHARE ghosts
    (removed members), and exactly that sum with none."""
    rng = Random(5)
    vectors = np.random.default_rng(5).standard_normal((60, DIM)).astype(np.float32)
    with _open(tmp_path / "c.db") as cache:
        eng = engine_of(cache)
        prototypes = eng.prototypes
        assert prototypes is not None
        live: dict[str, tuple[str, int]] = {}  # prompt -> (answer, vector row)
        cache.put("seed", "a0", embedding=vectors[0])
        live["seed"] = ("a0", 0)
        assert prototypes.declined("default", QUERY, [], []) == []  # builds the tables
        for step in range(400):
            if live and rng.random() < 0.4:
                prompt = rng.choice(sorted(live))
                assert cache.delete(prompt)
                del live[prompt]
            else:
                prompt, row = f"p{rng.randrange(40)}", rng.randrange(60)
                answer = f"a{rng.randrange(4)}"
                cache.put(prompt, answer, embedding=vectors[row])  # (may replace one)
                live[prompt] = (answer, row)
            if step % 20:
                continue
            prototypes.declined("default", QUERY, [], [])  # rereads the stale sums
            table = prototypes._tables["default"] if prototypes._tables else None
            assert table is not None
            assert prototypes._entries == len(table) == len(live)  # (the cap's count)
            by_answer: dict[str, list[int]] = {}
            for answer, row in live.values():
                by_answer.setdefault(answer, []).append(row)
            for answer, rows in by_answer.items():
                key = answer_digest(answer)
                assert len(table.members.get(key, ())) == len(rows)
                if len(rows) < 2:
                    assert key not in table.rows
                    continue
                ghosts = table.ghosts.get(key, 0)
                assert ghosts * GHOST_SHARE <= len(rows)
                unit = vectors[rows] / np.linalg.norm(vectors[rows], axis=1, keepdims=True)
                exact = unit.sum(axis=0) / np.linalg.norm(unit.sum(axis=0))
                assert table.matrix is not None
                kept = table.matrix[table.rows[key]]
                if ghosts == 0:
                    np.testing.assert_allclose(kept, exact, atol=1e-5)


def test_a_replay_sees_the_prototypes_a_cache_keeps() -> None:
    """The static replay's record (``StaticResult.declined``) comes from the same tables
    a cache builds: a standalone ``Prototypes`` over a store agrees with the cache's."""
    with _open() as cache:
        _put(cache, [A_NEAR, A_FAR, *B, *C])
        eng = engine_of(cache)
        own = Prototypes(eng.store, eng.indexes.decode, answer_digest, eng.clock)
        keys = [answer_digest(a) for a in ("A", "B", "B")]
        assert own.declined("default", QUERY, keys, [0.95, 0.6, 0.6]) == [True, True, True]
        assert eng.prototypes is not None
        assert eng.prototypes.declined("default", QUERY, keys, [0.95, 0.6, 0.6]) == [
            True,
            True,
            True,
        ]


def test_the_tables_are_the_same_read_in_one_pass_or_by_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store with ``iter_answers`` (SQLite) gives the tables a store without it gives
    (answers read by id after ``iter_vectors``), expired entries left out by both."""
    rng = np.random.default_rng(9)
    clock = FakeClock(1_000.0)
    with _open(tmp_path / "c.db", clock=clock) as cache:
        for i in range(60):
            vector = rng.standard_normal(16)
            ttl = 5.0 if i % 6 == 0 else None
            cache.put(f"p{i} ({rng.random()})", f"a{i % 7}", embedding=vector, ttl=ttl)
        clock.advance(10.0)  # every sixth one expired, still stored
        eng = engine_of(cache)
        tables = []
        for scan in (True, False):
            if not scan:
                monkeypatch.setattr(semcache._prototypes, "answer_scan", lambda store: None)
            built = Prototypes(eng.store, eng.indexes.decode, answer_digest, eng.clock)
            built.declined("default", QUERY, [], [])
            assert built._tables is not None
            tables.append(built._tables["default"])
        one_pass, by_id = tables
        assert len(one_pass) == 50  # the 10 expired left out
        assert one_pass.digest_of == by_id.digest_of
        assert one_pass.members == by_id.members
        assert one_pass.names == by_id.names
        assert one_pass.matrix is not None
        assert by_id.matrix is not None
        assert np.array_equal(one_pass.matrix, by_id.matrix)


def test_with_an_error_budget_the_veto_declines_before_the_budget_judges(
    tmp_path: Path,
) -> None:
    # "C"'s prompts are below the budget's floor too: "A"'s is the only candidate
    with _open(tmp_path / "c.db", error_budget=0.05) as cache:
        _put(cache, [A_NEAR, A_FAR, *C])
        assert _ask(cache) is None
        assert cache.stats()["misses"]["support"] == 1  # not "budget": nothing was judged
        assert cache.delete(A_FAR[0])
        _ask(cache)  # "A" is judged by the budget now (a fresh one does not serve yet)
        assert cache.stats()["misses"]["support"] == 1
    # answers compared otherwise than answer_support compares them: no veto
    for n, other in enumerate(({"same_answer": lambda a, b: a == b}, {"answer_support": False})):
        with _open(tmp_path / f"{n}.db", error_budget=0.05, **other) as c:
            assert engine_of(c).prototypes is None
            _put(c, [A_NEAR, A_FAR, *C])
            _ask(c)
            assert c.stats()["misses"]["support"] == 0


def _contested(tmp_path: Path) -> tuple[SemanticCache, Any, Any]:
    """A cache holding A_NEAR, A_FAR and B (a get is declined), its store and the
    store's own ``get_vectors`` (for a test to wrap)."""
    cache = _open(tmp_path / "c.db")
    _put(cache, [A_NEAR, A_FAR, *B])
    store: Any = cache.store
    return cache, store, store.get_vectors


def test_a_store_that_fails_while_they_are_read_is_a_miss_and_they_are_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache, store, real = _contested(tmp_path)
    with cache:

        def down(ids: Sequence[int]) -> Any:
            raise StoreUnavailableError("the server went away")

        monkeypatch.setattr(store, "get_vectors", down)
        assert _ask(cache) is None
        assert cache.stats()["misses"]["store_unavailable"] == 1
        monkeypatch.setattr(store, "get_vectors", real)
        assert _ask(cache) is None  # the sums still to read were read now
        assert cache.stats()["misses"]["support"] == 1


def test_a_stored_vector_that_cannot_be_decoded_is_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache, store, real = _contested(tmp_path)
    with cache:
        far = store.get_by_key(engine_of(cache).key("default", A_FAR[0]))
        assert far is not None

        def truncated(ids: Sequence[int]) -> Any:
            rows = real(ids)
            if far.id in rows:
                ns, blob = rows[far.id]
                rows[far.id] = (ns, blob[:-4])
            return rows

        monkeypatch.setattr(store, "get_vectors", truncated)
        assert _ask(cache) == "A"  # as if A_FAR were gone: "A" judged at A_NEAR's 0.95


def test_a_restored_checkpoint_has_them(tmp_path: Path) -> None:
    with _open(tmp_path / "c.db") as cache:
        _put(cache, [A_NEAR, A_FAR, *B])
        assert _ask(cache) is None
        cache.dumps(tmp_path / "c.tar.gz")
    restored = SemanticCache.loads(
        tmp_path / "c.tar.gz", tmp_path / "r.db", None, similarity_threshold=THRESHOLD
    )
    with restored:
        assert _ask(restored) is None
        assert restored.stats()["misses"]["support"] == 1


def test_a_get_takes_the_answers_keys_the_tables_hold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _open(tmp_path / "c.db") as cache:
        _put(cache, [A_NEAR, A_FAR, *B])
        assert _ask(cache) is None  # (the tables read: every answer's key)
        engine_of(cache).answer_keys.clear()
        normalized: list[str] = []

        def counting(response: str) -> bytes:
            normalized.append(response)
            return answer_digest(response)

        monkeypatch.setattr(semcache._answer_memo, "answer_digest", counting)
        assert _ask(cache) is None
        assert cache.stats()["misses"]["support"] == 2
        assert normalized == []  # none normalized again
        monkeypatch.setattr(engine_of(cache), "prototypes", None)
        engine_of(cache).answer_keys.clear()
        _ask(cache)
        assert len(normalized) == 4  # without them: A_NEAR and the three B
