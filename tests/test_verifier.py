"""The verifier: boosted trees in NumPy, the JSON file, the cache hook, calibration."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from test_quality_fixtures import synthetic_set

from semcache import ConfigurationError, InvalidInputError, SemanticCache
from semcache.embedders import HashingEmbedder
from semcache.quality import (
    FEATURE_NAMES,
    BoostedTrees,
    Verifier,
    calibrate,
    fit_boosted_trees,
    pair_features,
)


def _embed(texts: Sequence[str]) -> npt.NDArray[np.float32]:
    return HashingEmbedder().embed(list(texts))


def _xor_data(n: int, seed: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(n, len(FEATURE_NAMES)))
    y = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).astype(np.float64)
    return x, y


def test_trees_learn_an_interaction_and_score_one_row_like_many() -> None:
    x, y = _xor_data(3000, 0)
    model = fit_boosted_trees(x, y, trees=40, depth=2, learning_rate=0.3)
    xt, yt = _xor_data(500, 1)
    scores = model.decision(xt)
    assert ((scores > 0) == (yt > 0)).mean() > 0.85
    one = np.array([model.decision_one(row) for row in xt[:50]])
    np.testing.assert_allclose(one, scores[:50])
    assert model.depth == 2
    # deterministic
    again = fit_boosted_trees(x, y, trees=40, depth=2, learning_rate=0.3)
    np.testing.assert_array_equal(again.leaf, model.leaf)


def test_trees_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="labels"):
        fit_boosted_trees(np.zeros((3, 2)), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="x must"):
        fit_boosted_trees(np.zeros((0, 2)), np.zeros(0))


def _verifier() -> Verifier:
    x, y = _xor_data(500, 2)
    model = fit_boosted_trees(x, y, trees=10, depth=3)
    return Verifier(model, threshold=0.6, min_similarity=0.3, info={"note": "test"})


def test_the_file_is_json_and_round_trips(tmp_path: Path) -> None:
    v = _verifier()
    path = tmp_path / "v.json"
    v.save(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == "semcache-verifier"
    assert data["features"] == list(FEATURE_NAMES)
    w = Verifier.load(path)
    assert (w.threshold, w.min_similarity, w.info) == (0.6, 0.3, {"note": "test"})
    args = ("How do I reset my password?", "how can i reset my password", 0.9, 0.5)
    assert w.score(*args) == v.score(*args)
    assert 0.0 <= v.score(*args) <= 1.0
    assert "Verifier" in repr(w)
    assert w.with_threshold(0.2).threshold == 0.2


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d: d.update(format="other"), "not a semcache verifier"),
        (lambda d: d.update(version=99), "version"),
        (lambda d: d.update(features=["cosine"]), "other features"),
        (lambda d: d["model"].update(feature=[[999] * 7] * 10), "malformed"),
        (lambda d: d["model"].update(leaf=[[0.0] * 3] * 10), "malformed"),
        (lambda d: d.pop("threshold"), "malformed"),
        (lambda d: d.update(threshold=1.5), "threshold"),
        (lambda d: d.update(info=[1]), "info"),
    ],
)
def test_a_bad_file_is_refused(tmp_path: Path, mutate: object, match: str) -> None:
    data = _verifier().to_json()
    mutate(data)  # type: ignore[operator]
    path = tmp_path / "v.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ConfigurationError, match=match):
        Verifier.load(path)


def test_not_json_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "v.json"
    path.write_text("{", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="not JSON"):
        Verifier.load(path)
    with pytest.raises(FileNotFoundError):
        Verifier.load(tmp_path / "missing.json")


def test_it_plugs_into_the_cache_and_sees_the_runner_up() -> None:
    seen: list[tuple[float, float | None]] = []
    v = _verifier()

    class Spy(Verifier):
        def __call__(self, query: str, hit: object) -> float:
            seen.append((hit.similarity, hit.runner_up))  # type: ignore[attr-defined]
            return super().__call__(query, hit)  # type: ignore[arg-type]

    spy = Spy(v.model, threshold=0.0, min_similarity=0.1)
    emb = HashingEmbedder()
    with SemanticCache(embedder=emb, **spy.cache_options()) as cache:
        cache.put("How do I reset my password?", "a")
        cache.put("How do I change my email?", "b")
        hit = cache.get("how can i reset my password")
        assert hit is not None
        assert hit.layer == "semantic"
        assert hit.confidence is not None
        assert 0.0 <= hit.confidence <= 1.0
        assert hit.runner_up is not None
        assert hit.runner_up < hit.similarity
        assert seen[0] == (hit.similarity, hit.runner_up)
        exact = cache.get("How do I reset my password?")
        assert exact is not None
        assert exact.runner_up is None
        assert spy.accepts("x", exact)
    options = v.cache_options()
    assert options["min_confidence"] == 0.6
    assert options["similarity_threshold"] == 0.3


def test_features_are_finite_and_named() -> None:
    f = pair_features("What is 2+2 in 2024?", "What's 2 + 3 in 2023, Paris?", 0.8, None)
    assert len(f) == len(FEATURE_NAMES)
    assert all(np.isfinite(f))
    named = dict(zip(FEATURE_NAMES, f, strict=True))
    assert named["margin"] == 1.0
    assert named["numbers_differ"] == 1.0
    assert named["years_or_months_differ"] == 1.0
    assert named["entities_only_cached"] == 1.0
    same = dict(zip(FEATURE_NAMES, pair_features("a b c", "a b c", 1.0, 0.5), strict=True))
    assert same["word_jaccard"] == 1.0
    assert same["margin"] == pytest.approx(0.5)


def test_calibrate_reaches_the_target_on_its_calibration_part() -> None:
    cal = calibrate(
        synthetic_set(repeats=6), _embed, target_precision=0.9, min_similarity=0.3, trees=30
    )
    v = cal.verifier
    assert 0.0 <= v.threshold <= 1.0
    assert v.info["target_precision"] == 0.9
    assert v.info["split"]["calibration_pairs"] == cal.calibration_pairs > 0
    if cal.chosen is not None:
        assert cal.chosen.precision >= 0.9
    with pytest.raises(InvalidInputError):
        calibrate(synthetic_set(), _embed, target_precision=0.0)
    with pytest.raises(InvalidInputError):
        calibrate(synthetic_set(), _embed, holdout=1.0)


def test_trees_from_json_checks_shapes() -> None:
    model = _verifier().model
    data = model.to_json()
    assert isinstance(BoostedTrees.from_json(data, len(FEATURE_NAMES)), BoostedTrees)
    data["threshold"] = [[float("nan")] * 7] * 10
    with pytest.raises(ValueError, match="NaN"):
        BoostedTrees.from_json(data, len(FEATURE_NAMES))
