"""The built-in guards yield to the cache's own evidence (semcache/_guard_evidence.py):
a rejection is overruled only where two head candidates of the candidate's answer
differ in what the guard checks at least as close to each other as the query is to
the candidate, and no two of different answers differ so. Hand-placed vectors, so
every similarity below is worked out on paper."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from semcache import SemanticCache, StoreUnavailableError
from semcache._guard_evidence import guard_parts, overruled
from semcache._guards import negation_differs, numbers_differ, order_differs
from semcache._types import Hit
from semcache.quality import all_of, default_guards, negation_agrees, numbers_agree

DIM = 8


def _v(*weights: float) -> npt.NDArray[np.float32]:
    """The unit vector of e0 plus ``weights[i]`` times e(i+1)."""
    v = np.zeros(DIM, dtype=np.float32)
    v[0] = 1.0
    v[1 : 1 + len(weights)] = weights
    return v / np.linalg.norm(v)


# cos(T5, T10) = 1 / 1.01 = 0.990; the query Q is 1 / sqrt(1.01 * 1.09) = 0.953 to each
T5, T10, T7 = _v(0.1), _v(0, 0.1), _v(0, 0, 0, 0.1)
Q = _v(0, 0, 0.3)
TIMER = "Your timer is running."


def _cache(path: Path, entries: list[tuple[str, str, npt.NDArray[np.float32]]], **kw: object):  # type: ignore[no-untyped-def]
    cache = SemanticCache(str(path), embedder=None, index_backend="flat", **kw)  # type: ignore[arg-type]
    for prompt, answer, vector in entries:
        cache.put(prompt, answer, embedding=vector)
    return cache


def test_numbers_that_did_not_change_a_repeated_answer_do_not_block_it(tmp_path: Path) -> None:
    stored = [("set a timer for 5 minutes", TIMER, T5), ("set a timer for 10 minutes", TIMER, T10)]
    with _cache(tmp_path / "a.db", stored) as cache:
        hit = cache.get("set a timer for 20 minutes", embedding=Q)
        assert hit is not None
        assert hit.response == TIMER
        assert hit.similarity == pytest.approx(0.953, abs=1e-3)
        assert cache.stats()["guards_overruled"] == 1
        assert cache.get("set a timer for 5 minutes please", embedding=T5) is not None
        assert cache.stats()["guards_overruled"] == 1  # (the numbers agree: no guard rejected)
    # one prompt alone is no evidence: the guard holds
    with _cache(tmp_path / "b.db", stored[:1]) as cache:
        assert cache.get("set a timer for 20 minutes", embedding=Q) is None
        assert cache.stats()["misses"]["validator"] == 1
        assert cache.stats()["guards_overruled"] == 0
    # two prompts of the answer with the same numbers are no evidence either
    same = [("set a timer for 5 minutes", TIMER, T5), ("start a timer for 5 minutes", TIMER, T10)]
    with _cache(tmp_path / "c.db", same) as cache:
        assert cache.get("set a timer for 20 minutes", embedding=Q) is None


def test_a_nearby_difference_that_changed_an_answer_keeps_the_guard(tmp_path: Path) -> None:
    """ "What is 2+2?" and "What is 3+1?" share "4", but "What is 2+5?" got "7" as near:
    numbers change answers here, and "What is 2+3?" is not served "4"."""
    stored = [("What is 2+2?", "4", T5), ("What is 3+1?", "4", T10)]
    with _cache(tmp_path / "a.db", stored) as cache:
        assert cache.get("What is 2+3?", embedding=Q) is not None  # the evidence alone
    with _cache(tmp_path / "b.db", [*stored, ("What is 2+5?", "7", T7)]) as cache:
        assert cache.get("What is 2+3?", embedding=Q) is None
        assert cache.stats()["misses"]["validator"] == 1


def test_evidence_less_close_than_the_query_does_not_count(tmp_path: Path) -> None:
    far5, far10 = _v(0.5), _v(0, 0.5)  # 1 / 1.25 = 0.8 to each other
    query = _v(0.25, 0.25, 0.3)  # 1.125 / sqrt(1.1525 * 1.25) = 0.937 to each
    stored = [
        ("set a timer for 5 minutes", TIMER, far5),
        ("set a timer for 10 minutes", TIMER, far10),
    ]
    with _cache(tmp_path / "a.db", stored) as cache:
        assert cache.get("set a timer for 20 minutes", embedding=query) is None
        assert cache.stats()["misses"]["validator"] == 1
        # for a candidate no closer to the query than the pair is to each other, the
        # same pair is evidence: 0.787 to far10 (0.984 to far5, which stays blocked)
        hit = cache.get("set a timer for 20 minutes", embedding=_v(0.5, 0, 0.2))
        assert hit is not None
        assert hit.query == "set a timer for 10 minutes"
        assert hit.similarity == pytest.approx(0.787, abs=1e-3)


def test_negation_yields_to_its_own_evidence_only(tmp_path: Path) -> None:
    stored = [
        ("I cannot log in to my account", "Reset your password.", T5),
        ("I can log in but my account is locked", "Reset your password.", T10),
    ]
    query = _v(0.1, 0, 0.3)  # 1.01 / sqrt(1.01 * 1.1) = 0.958 to T5, 0.949 to T10
    with _cache(tmp_path / "a.db", stored) as cache:
        hit = cache.get("can I log in to my account", embedding=query)
        assert hit is not None
        assert hit.query == "I cannot log in to my account"  # the nearer, negated one
        # numbers differ too, and nothing shows numbers leaving this answer alone
        assert cache.get("can I log in to my 2 accounts", embedding=query) is None
    with _cache(tmp_path / "b.db", stored[:1]) as cache:
        assert cache.get("can I log in to my account", embedding=query) is None


def test_a_guard_that_is_not_built_in_never_yields(tmp_path: Path) -> None:
    def no_minutes(query: str, hit: Hit) -> bool:
        return "minutes" not in query

    stored = [("set a timer for 5 minutes", TIMER, T5), ("set a timer for 10 minutes", TIMER, T10)]
    with _cache(tmp_path / "a.db", stored, guards=all_of(numbers_agree, no_minutes)) as cache:
        assert cache.get("set a timer for 20 minutes", embedding=Q) is None
    with _cache(tmp_path / "b.db", stored, validator=lambda q, h: False) as cache:
        assert cache.get("set a timer for 20 minutes", embedding=Q) is None  # the validator
        assert cache.stats()["guards_overruled"] == 0  # (counted only when let through)
    # a guard of your own beside a built-in one is asked once per candidate, and its
    # yes counts: the built-in one yields, the hit is served
    asked: list[str] = []

    def counting(query: str, hit: Hit) -> bool:
        asked.append(hit.query)
        return True

    with _cache(tmp_path / "d.db", stored, guards=all_of(numbers_agree, counting)) as cache:
        hit = cache.get("set a timer for 20 minutes", embedding=Q)
        assert hit is not None
        assert asked == [hit.query]
    # without answer support nothing is weighed: the guard holds
    with _cache(tmp_path / "c.db", stored, answer_support=False) as cache:
        assert cache.get("set a timer for 20 minutes", embedding=Q) is None


def test_the_error_budgets_candidates_overrule_alike(tmp_path: Path) -> None:
    """With an error budget the same evidence lets the budget judge the candidate
    (here it verifies: no observation yet), where the guard alone rejects it."""
    stored = [("set a timer for 5 minutes", TIMER, T5), ("set a timer for 10 minutes", TIMER, T10)]
    with _cache(tmp_path / "a.db", stored, error_budget=0.1) as cache:
        assert cache.get("set a timer for 20 minutes", embedding=Q) is None
        assert cache.stats()["misses"].get("budget", 0) == 1
    with _cache(tmp_path / "b.db", stored[:1], error_budget=0.1) as cache:
        assert cache.get("set a timer for 20 minutes", embedding=Q) is None
        assert cache.stats()["misses"].get("budget", 0) == 0
        assert cache.stats()["misses"]["validator"] == 1
    # answer support off: no guard yields, with a budget too
    with _cache(tmp_path / "c.db", stored, error_budget=0.1, answer_support=False) as cache:
        assert cache.get("set a timer for 20 minutes", embedding=Q) is None
        assert cache.stats()["misses"]["validator"] == 1


def test_guard_parts_open_combined_guards() -> None:
    def mine(query: str, hit: Hit) -> bool:
        return True

    parts = guard_parts(all_of(default_guards(), mine))
    assert parts is not None
    assert [c for _, c in parts] == [numbers_differ, negation_differs, order_differs, None]
    assert [p for p, _ in parts][:2] == [numbers_agree, negation_agrees]
    assert guard_parts(None) is None
    assert guard_parts(mine) == ((mine, None),)


def test_overruled_needs_evidence_for_every_rejecting_guard() -> None:
    texts = ["timer 5", "timer 10", "alarm 6", "stop the timer"]
    keys = [b"a", b"a", b"b", b"b"]
    gram = [[1.0, 0.9, 0.5, 0.5], [0.9, 1.0, 0.5, 0.5], [0.5, 0.5, 1.0, 0.5], [0.5, 0.5, 0.5, 1.0]]
    assert overruled([numbers_differ], 0, texts, keys, gram, 0.9)
    assert not overruled([numbers_differ], 0, texts, keys, gram, 0.91)  # evidence too far
    assert not overruled([numbers_differ], 2, texts, keys, gram, 0.5)  # none of "b"'s
    # "timer 5" / "alarm 6" at 0.5: numbers changed an answer that close
    assert not overruled([numbers_differ], 0, texts, keys, gram, 0.5)
    assert not overruled([numbers_differ, negation_differs], 0, texts, keys, gram, 0.9)
    assert overruled([], 0, texts, keys, gram, 0.9)  # (nothing to overrule)


def test_a_number_spelt_out_is_no_evidence_for_the_numbers_guard_yielding() -> None:
    """Two prompts of one answer that differ in digits only because one spells its
    numbers out show nothing about a number changing and the answer holding; two that
    hold different numbers, spelt out or not, do. Evidence *against* reads the guard's
    own check, so it is never narrowed."""
    gram = [[1.0, 0.95, 0.5], [0.95, 1.0, 0.5], [0.5, 0.5, 1.0]]
    keys = [b"4", b"4", b"x"]
    assert not overruled(
        [numbers_differ], 0, ["what is 2+2?", "what's two plus two", "x"], keys, gram, 0.9
    )
    for five in ("five", "5"):
        texts = [f"timer for {five} minutes", "timer for 10 minutes", "x"]
        assert overruled([numbers_differ], 0, texts, keys, gram, 0.9)
    # a digit difference under another answer is evidence against, spelt out or not
    texts = ["timer for 5 minutes", "timer for 10 minutes", "timer for five minutes"]
    close = [[1.0, 0.95, 0.95], [0.95, 1.0, 0.95], [0.95, 0.95, 1.0]]
    assert overruled([numbers_differ], 0, texts, [b"a", b"a", b"a"], close, 0.9)
    assert not overruled([numbers_differ], 0, texts, [b"a", b"a", b"b"], close, 0.9)


def test_where_no_answer_repeats_a_rejection_reads_nothing_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The common case of LLM answers: no candidate shares an answer, so no evidence
    can exist and the head's vectors are not read for it."""
    import semcache._answer_memo as memo

    reads: list[int] = []
    real = memo.candidate_vectors

    def counted(eng, entries):  # type: ignore[no-untyped-def]
        reads.append(len(entries))
        return real(eng, entries)

    monkeypatch.setattr(memo, "candidate_vectors", counted)
    stored = [("set a timer for 5 minutes", "five", T5), ("set a timer for 10 minutes", "ten", T10)]
    with _cache(tmp_path / "a.db", stored) as cache:
        assert cache.get("set a timer for 20 minutes", embedding=Q) is None
        assert cache.stats()["misses"]["validator"] == 1
    assert reads == []
    with _cache(tmp_path / "b.db", [(p, TIMER, v) for p, _, v in stored]) as cache:
        assert cache.get("set a timer for 20 minutes", embedding=Q) is not None
    assert reads  # (the same gets with one answer read them)


def test_a_store_error_reading_the_evidence_is_a_store_error_not_a_validator_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The head's vectors are read from the store when a guard first rejects: a store
    that fails then makes the get a miss for the store (as every read of a get does),
    not a candidate the "validator" rejected."""
    import semcache._answer_memo as memo

    def unreachable(eng, entries):  # type: ignore[no-untyped-def]
        raise StoreUnavailableError("the store is down")

    stored = [("set a timer for 5 minutes", TIMER, T5), ("set a timer for 10 minutes", TIMER, T10)]
    with _cache(tmp_path / "a.db", stored) as cache:
        monkeypatch.setattr(memo, "candidate_vectors", unreachable)
        assert cache.get("set a timer for 20 minutes", embedding=Q) is None
        misses = cache.stats()["misses"]
        assert misses["store_unavailable"] == 1
        assert misses["validator"] == 0
    assert "validator raised" not in caplog.text
