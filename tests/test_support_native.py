"""The C twins of answer support's arithmetic (``_native/_support.pyx``) against the
Python functions they stand in for (``semcache._agreement``): the same results bit for
bit, the same errors."""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys

import numpy as np
import pytest

from semcache import _agreement

native = pytest.importorskip("semcache._support", reason="the native extension is not built")

FLOOR, WEIGHT = _agreement.SUPPORT_FLOOR, _agreement.SUPPORT_WEIGHT


def _draw(rng: random.Random, seed: int) -> tuple[list[float], list[object], list[list[float]]]:
    """Candidates as a get reads them: similarities (some rounded, so that ties and
    scores at the floor occur), answers' keys from a few, their vectors' gram."""
    n = rng.randint(1, 12)
    sims = [rng.uniform(0.2, 1.0) for _ in range(n)]
    if rng.random() < 0.3:
        sims = [round(s, 1) for s in sims]
    keys: list[object] = [rng.choice(["a", "b", "c", "d"][: rng.randint(1, 4)]) for _ in range(n)]
    vectors = np.random.default_rng(seed).standard_normal((n, 24)).astype(np.float32)
    if rng.random() < 0.2:
        vectors[:] = vectors[0]  # one direction: equal prototypes, ties between answers
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return sims, keys, (vectors @ vectors.T).tolist()


def test_the_twins_give_the_same_scores_bit_for_bit() -> None:
    rng = random.Random(20261206)
    checked = repeated = 0
    for seed in range(4000):
        sims, keys, gram = _draw(rng, seed)
        floor, weight = rng.choice([(FLOOR, WEIGHT), (0.7, 1.5), (0.0, 3.0)])
        py = _agreement._support_scores_py(sims, keys, floor, weight)
        assert native.support_scores(sims, keys, floor, weight) == py
        for scores in (py, sims):
            want = _agreement._favoured_scores_py(scores, sims, keys, gram, floor, weight)
            assert native.favoured_scores(scores, sims, keys, gram, floor, weight) == want
            array = np.asarray(gram, dtype=np.float32)  # (the engine's gram, untouched)
            assert native.favoured_scores(scores, sims, keys, array, floor, weight) == want
        checked += 1
        repeated += len(set(keys)) < len(keys)
    assert checked == 4000
    assert repeated > 2000  # (most draws have an answer that repeats)


def test_the_public_functions_call_the_twin_unless_told_not_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sims, keys = [0.95, 0.8, 0.79, 0.6], ["a", "a", "b", "b"]
    gram = [[1.0, 0.9, 0.1, 0.1], [0.9, 1.0, 0.1, 0.1], [0.1, 0.1, 1.0, 0.8], [0.1, 0.1, 0.8, 1.0]]
    pure = os.environ.get("SEMCACHE_PURE_PYTHON", "") not in ("", "0")
    assert _agreement._NATIVE is (None if pure else native)
    monkeypatch.setattr(_agreement, "_NATIVE", native)
    with_c = _agreement.support_scores(sims, keys)
    favoured_c = _agreement.favoured_scores(with_c, sims, keys, gram)
    monkeypatch.setattr(_agreement, "_NATIVE", None)
    assert _agreement.support_scores(sims, keys) == with_c
    assert _agreement.favoured_scores(with_c, sims, keys, gram) == favoured_c
    assert favoured_c[2:] == [-1.0, -1.0]  # "a" is favoured...
    assert favoured_c[0] > with_c[0]  # ... and raised by its lead


def test_the_twins_refuse_the_same_inputs() -> None:
    for impl in (native.support_scores, _agreement._support_scores_py):
        with pytest.raises(ValueError, match="one answer key per candidate"):
            impl([0.9, 0.8], ["a"], FLOOR, WEIGHT)
        assert impl([], [], FLOOR, WEIGHT) == []
        assert impl([0.9, 0.8], ["a", "b"], FLOOR, WEIGHT) == [0.9, 0.8]  # no repeat
    for impl in (native.favoured_scores, _agreement._favoured_scores_py):
        with pytest.raises(ValueError, match="one score, similarity and answer key"):
            impl([0.9], [0.9, 0.8], ["a", "b"], None, FLOOR, WEIGHT)
        with pytest.raises(ValueError, match="needs the gram"):
            impl([0.9, 0.8], [0.9, 0.8], ["a", "a"], None, FLOOR, WEIGHT)
        assert impl([0.9, 0.8], [0.9, 0.8], ["a", "b"], None, FLOOR, WEIGHT) == [0.9, 0.8]
        assert impl([], [], [], None, FLOOR, WEIGHT) == []


def test_pure_python_leaves_the_twin_out() -> None:
    """``SEMCACHE_PURE_PYTHON=1`` (as for the search kernel) runs the Python functions."""
    env = {**os.environ, "SEMCACHE_PURE_PYTHON": "1"}
    code = "from semcache import _agreement; print(_agreement._NATIVE is None)"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "True"


def _lexical_draw(rng: random.Random) -> tuple[list[str], list[frozenset[str]], list[bool], int]:
    """A query's sorted distinct words and 1 to 10 candidates' prompts' words from a
    small vocabulary (so that words repeat), with their answers' flags."""
    vocab = [f"w{i}" for i in range(rng.randint(1, 14))]
    q = sorted(set(rng.sample(vocab, rng.randint(0, len(vocab)))))
    n = rng.randint(1, 10)
    texts = [frozenset(rng.sample(vocab, rng.randint(0, len(vocab)))) for _ in range(n)]
    served = rng.randrange(n)
    own = [j == served or rng.random() < 0.4 for j in range(n)]
    return q, texts, own, served


def test_the_lexical_twins_give_the_same_features_bit_for_bit() -> None:
    from semcache import _risk_model

    rng = random.Random(20261207)
    for _ in range(4000):
        q, texts, own, served = _lexical_draw(rng)
        weights = None if rng.random() < 0.7 else [rng.uniform(0.5, 3.0) for _ in q]
        want = _risk_model.lexical(q, texts, own, served, weights)
        got = native.lexical(q, texts, own, served, weights)
        assert got == want
        assert [math.copysign(1.0, x) for x in got] == [math.copysign(1.0, x) for x in want]
    assert _risk_model._LEXICAL is native.lexical  # (the cache uses the twin)


def test_the_lexical_twin_refuses_what_the_python_one_refuses() -> None:
    with pytest.raises(ValueError, match="own flag"):
        native.lexical(["a"], [frozenset("a")], [True, False], 0, None)
    with pytest.raises(ValueError, match="weight"):
        native.lexical(["a", "b"], [frozenset("a")], [True], 0, [1.0])


def test_the_logit_twins_give_the_same_values_bit_for_bit() -> None:
    from semcache import _risk_model

    rng = np.random.default_rng(20261208)
    for _ in range(2000):
        n = int(rng.integers(1, 24))
        x = (rng.standard_normal(n) * 3).tolist()
        mean, scale = rng.standard_normal(n).tolist(), rng.uniform(0.1, 4.0, n).tolist()
        w = rng.standard_normal(n + 1).tolist()
        half = rng.standard_normal((n + 1, n + 1))
        cov = (half @ half.T).tolist()
        want = _risk_model.logit(x, mean, scale, w, cov)
        assert native.logit(x, mean, scale, w, cov) == want
    assert _risk_model._LOGIT is native.logit
    with pytest.raises(ValueError, match="one feature"):
        native.logit([1.0], [0.0, 0.0], [1.0, 1.0], [0.0] * 3, [[0.0] * 3] * 3)
    with pytest.raises(ValueError, match="one feature"):
        _risk_model.logit([1.0], [0.0, 0.0], [1.0, 1.0], [0.0] * 3, [[0.0] * 3] * 3)
