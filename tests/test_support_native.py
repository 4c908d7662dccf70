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

from semcache import _agreement, _answer_model, _prototypes

native = pytest.importorskip("semcache._support", reason="the native extension is not built")

FLOOR, WEIGHT = _agreement.SUPPORT_FLOOR, _agreement.SUPPORT_WEIGHT
#: ``SEMCACHE_PURE_PYTHON`` set: the cache runs the Python functions, the twins are
#: still compared here.
_PURE = os.environ.get("SEMCACHE_PURE_PYTHON", "") not in ("", "0")


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
    assert _agreement._NATIVE is (None if _PURE else native)
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
    # (the cache uses the twin, unless SEMCACHE_PURE_PYTHON keeps it out)
    assert _risk_model._LEXICAL is (_risk_model.lexical if _PURE else native.lexical)


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
    assert _risk_model._LOGIT is (_risk_model.logit if _PURE else native.logit)
    with pytest.raises(ValueError, match="one feature"):
        native.logit([1.0], [0.0, 0.0], [1.0, 1.0], [0.0] * 3, [[0.0] * 3] * 3)
    with pytest.raises(ValueError, match="one feature"):
        _risk_model.logit([1.0], [0.0, 0.0], [1.0, 1.0], [0.0] * 3, [[0.0] * 3] * 3)


def _softmax_twin(
    weights: np.ndarray, bias: np.ndarray, query: np.ndarray, limit: int
) -> tuple[list[float], int]:
    """The answer model's softmax as ``_native/_support.pyx`` documents it: each
    class's logit summed in float32 over the dimensions in order (one rounding per
    product and per sum), the bias added; then in double, ``math.exp`` of each less
    the largest, summed left to right, divided; the first highest among ``limit``."""
    acc = np.zeros(weights.shape[1], dtype=np.float32)
    for d in range(weights.shape[0]):
        acc = acc + weights[d] * query[d]  # (float32 x float32 scalar: float32)
    logits = [float(x) for x in acc + bias]
    high = max(logits)
    exps = [math.exp(z - high) for z in logits]
    total = 0.0
    for e in exps:
        total += e
    p = [e / total for e in exps]
    top = 0
    for c in range(1, limit):
        if p[c] > p[top]:
            top = c
    return p, top


def test_the_softmax_twins_give_the_same_probabilities_bit_for_bit() -> None:
    """Any number of classes about the C loop's blocks of 16 (fewer, exactly, one
    over, many), short and full dimensions, ties (equal columns)."""
    rng = np.random.default_rng(20261209)
    for k in (1, 2, 15, 16, 17, 33, 200):
        for dim in (1, 7, 384):
            w = (rng.standard_normal((dim, k)) * 4).astype(np.float32)
            b = rng.standard_normal(k).astype(np.float32)
            if k > 2:  # (classes 0 and 2 tie: the first is on top where they lead)
                w[:, 2], b[2] = w[:, 0], b[0]
            q = rng.standard_normal(dim).astype(np.float32)
            q /= np.linalg.norm(q)
            for limit in {1, max(1, k - 1), k}:
                p, top = native.softmax(w, b, q, limit)
                want, want_top = _softmax_twin(w, b, q, limit)
                assert p.dtype == np.float64
                assert p.tolist() == want
                assert top == want_top
                assert math.isclose(float(p.sum()), 1.0, rel_tol=1e-12)
                # NumPy's, where the extension is not built: the same to rounding
                numpy, numpy_top = _answer_model._softmax_numpy(w, b, q, limit)
                np.testing.assert_allclose(numpy, p, rtol=1e-5, atol=1e-12)
                assert numpy_top == top
    # (the cache reads the C twin, unless SEMCACHE_PURE_PYTHON keeps it out)
    assert _answer_model._SOFTMAX is (_answer_model._softmax_numpy if _PURE else native.softmax)


def test_the_softmax_twins_refuse_the_same_shapes() -> None:
    w = np.zeros((4, 3), dtype=np.float32)
    b, q = np.zeros(3, dtype=np.float32), np.zeros(4, dtype=np.float32)
    for impl in (native.softmax, _answer_model._softmax_numpy):
        with pytest.raises(ValueError, match="dim x classes"):
            impl(w, b, np.zeros(5, dtype=np.float32), 3)
        with pytest.raises(ValueError, match="dim x classes"):
            impl(w, np.zeros(2, dtype=np.float32), q, 3)
        for limit in (0, 4):
            with pytest.raises(ValueError, match="limit must be in 1 to 3"):
                impl(w, b, q, limit)
        p, top = impl(w, b, q, 3)  # all logits equal: uniform, the first
        assert p.tolist() == [1 / 3] * 3
        assert top == 0


def test_the_largest_twins_give_what_sorting_gives() -> None:
    rng = np.random.default_rng(20261210)
    for n in (0, 1, 5, 9, 10, 200, 512):
        values = rng.standard_normal(n).astype(np.float32)
        if n > 4:
            values[3] = values[1]  # (ties)
        for count in {0, 1, 9, max(n - 1, 0), n, n + 3}:
            want = sorted(values.tolist(), reverse=True)[:count]
            assert native.largest(values, count) == want
            assert _prototypes._largest_numpy(values, count) == want
    for impl in (native.largest, _prototypes._largest_numpy):
        with pytest.raises(ValueError, match="count must be >= 0"):
            impl(np.zeros(3, dtype=np.float32), -1)
    assert _prototypes._LARGEST is (_prototypes._largest_numpy if _PURE else native.largest)


def test_the_rivals_standing_is_the_same_with_and_without_c(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``Prototypes.standing`` takes the nearest prototypes in C where built, else by
    NumPy's partition (``_largest_numpy``): the same floats."""
    from semcache import SemanticCache
    from semcache._cache import engine_of

    rng = np.random.default_rng(5)
    rows = rng.standard_normal((300, 16)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    with SemanticCache(index_backend="flat") as cache:
        cache.put_many(
            [f"prompt {i}" for i in range(300)],
            [f"answer {i % 30}" for i in range(300)],
            embeddings=rows,
        )
        prototypes = engine_of(cache).prototypes
        assert prototypes is not None
        keys = [_agreement.answer_digest(f"answer {i}") for i in (0, 0, 7, 12)]
        sims = [0.9, 0.85, 0.8, 0.7]
        got = []
        for q in rows[:20]:
            got.append(
                (
                    prototypes.standing("default", q, keys, sims),
                    prototypes.declined("default", q, keys, sims),
                )
            )
        monkeypatch.setattr(_prototypes, "_LARGEST", _prototypes._largest_numpy)
        for q, want in zip(rows[:20], got, strict=True):
            assert (
                prototypes.standing("default", q, keys, sims),
                prototypes.declined("default", q, keys, sims),
            ) == want
    assert any(0.0 < s < 1.0 for standing, _ in got for s in standing)  # (rivals weighed)
