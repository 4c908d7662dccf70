"""The answer model (``semcache._answer_model``): a classifier of the stored answers
fitted per namespace, read by a get (``semcache._get._supported``)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from test_answer_support_replay import _embed, _served_by_the_cache

from semcache import SemanticCache
from semcache import _answer_model as am
from semcache._agreement import answer_digest
from semcache._cache import engine_of
from semcache.quality._clusters import ClusterSet, shipped_defaults, static_replay
from semcache.quality._replay import Rule

DIM = 24


def _unit(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _far_asked(seed: int) -> tuple[ClusterSet, dict[str, npt.NDArray[np.float32]]]:
    """Eight clusters, 4 stored each, their asked texts scattered wider than the stored
    ones: many asked have no stored prompt at or above the support floor near them."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, DIM))
    texts: list[str] = []
    clusters: list[str] = []
    splits: list[str] = []
    vectors: dict[str, npt.NDArray[np.float32]] = {}
    for c in range(8):
        for k in range(12):
            text = f"intent {c} phrasing {k}"
            scale = 0.5 if k < 4 else 1.3
            texts.append(text)
            clusters.append(f"c{c}")
            splits.append("train" if k < 4 else "test")
            vectors[text] = _unit(centres[c] + rng.normal(scale=scale, size=DIM))
    for k in range(6):
        text = f"out of scope {k}"
        texts.append(text)
        clusters.append(f"oos:{k}")
        splits.append("oos_test")
        vectors[text] = _unit(rng.normal(size=DIM))
    return ClusterSet(texts=texts, clusters=clusters, splits=splits), vectors


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_record_serves_what_the_cache_serves_beyond_the_candidates(seed: int) -> None:
    clusters, vectors = _far_asked(seed)
    record = static_replay(clusters, _embed(vectors))
    assert record.model is not None
    wide = record.model.wide_similarity > -np.inf
    assert wide.sum() >= 5  # the model's answer from beyond the candidates is in play
    view = record.supported()
    served_wide = 0
    for threshold in (0.55, 0.6, 0.65, 0.7, 0.75, 0.8):
        served, right = view._served(Rule(threshold))
        cache = _served_by_the_cache(clusters, vectors, threshold)
        assert [s for s, _ in cache] == served.tolist(), threshold
        assert [r for _, r in cache] == right.tolist(), threshold
        served_wide += int((served & wide & (view.similarity[:, 0] >= threshold)).sum())
    assert served_wide > 0


def test_the_record_guards_the_answer_from_beyond_as_the_cache_does() -> None:
    """Every text holds numbers ("intent 3 phrasing 7"): the shipped numbers guard
    rejects a candidate whose numbers differ unless the head's evidence overrules it;
    the answer from beyond the candidates has no evidence to yield to."""
    clusters, vectors = _far_asked(0)
    guard = shipped_defaults()[1]
    assert guard is not None
    record = static_replay(clusters, _embed(vectors), guards={"default": guard})
    assert record.model is not None
    wide = record.model.wide_similarity > -np.inf
    assert wide.any()
    assert not record.model.wide_guards["default"][wide].all()  # some rejected
    view = record.supported(yielding={"default": guard})
    for threshold in (0.6, 0.7, 0.8):
        served, right = view._served(Rule(threshold, None, ("default",)))
        cache = _served_by_the_cache(clusters, vectors, threshold, guards="default")
        assert [s for s, _ in cache] == served.tolist(), threshold
        assert [r for _, r in cache] == right.tolist(), threshold


def test_the_softmax_fit_learns_the_classes() -> None:
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(5, DIM))
    y = np.repeat(np.arange(5), 6)
    x = _unit(centres[y] + rng.normal(scale=0.4, size=(30, DIM)))
    w, b = am.fit_softmax(x, y, 5)
    z = x @ w + b
    assert w.shape == (DIM, 5)
    assert b.shape == (5,)
    assert (z.argmax(axis=1) == y).all()


def _store(cache: SemanticCache, groups: dict[str, npt.NDArray[np.float32]]) -> None:
    for answer, rows in groups.items():
        cache.put_many(
            [f"{answer} prompt {k}" for k in range(len(rows))],
            [answer] * len(rows),
            embeddings=rows,
        )


def _groups(seed: int, n: int = 3, members: int = 5) -> dict[str, npt.NDArray[np.float32]]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n, DIM))
    return {
        f"answer {c}": _unit(centres[c] + rng.normal(scale=0.3, size=(members, DIM)))
        for c in range(n)
    }


def _toward(target: npt.NDArray[np.float32], cosine: float, seed: int) -> npt.NDArray[np.float32]:
    """A unit vector at ``cosine`` to the unit ``target``."""
    other = np.random.default_rng(seed).normal(size=DIM)
    other -= (other @ target) * target
    other /= np.linalg.norm(other)
    return _unit(cosine * target + np.sqrt(1 - cosine**2) * other)


def test_the_models_answer_needs_the_neighbourhood_too() -> None:
    """A query the model is sure of (an answer's own direction) but that no stored
    prompt is near: not served at the shipped threshold (the model's score is averaged
    with the candidate's own), served where the threshold lets a weaker neighbourhood
    through."""
    groups = _groups(0)
    centre = _unit(groups["answer 0"].sum(axis=0))
    query = _toward(centre, 0.45, seed=9)
    with SemanticCache(index_backend="flat", guards=None) as cache:
        _store(cache, groups)
        assert cache.get("a new question", embedding=query) is None
        model = engine_of(cache).answer_models
        assert model is not None
        fitted = model.model("default")
        assert fitted is not None
        assert fitted.read(query).top == answer_digest("answer 0")
        cache.set_similarity_threshold(0.6)
        hit = cache.get("a new question", embedding=query)
        assert hit is not None
        assert hit.response == "answer 0"
        assert hit.score is not None
        assert hit.score > hit.similarity + 0.1


def _fitted_with_a_lone_answer() -> tuple[dict[str, npt.NDArray[np.float32]], am.Fitted]:
    """The groups of ``_groups(5)`` stored, one answer stored once more: a fitted model
    with the unique answers' class."""
    groups = _groups(5)
    with SemanticCache(index_backend="flat", guards=None) as cache:
        _store(cache, groups)
        cache.put("a lone prompt", "stored once", embedding=_toward(groups["answer 0"][0], 0.2, 1))
        fitted = engine_of(cache).answer_models.fit("default")  # type: ignore[union-attr]
    assert fitted is not None
    return groups, fitted


def test_one_answers_probability_is_the_readings_and_none_for_no_class() -> None:
    # (the error budget's features read one answer's probability: the same float as
    # the whole reading gives, and nothing computed for an answer that is no class)
    groups, fitted = _fitted_with_a_lone_answer()
    for seed in range(5):
        query = _toward(groups[f"answer {seed % 3}"][0], 0.8, seed)
        reading = fitted.read(query)
        for answer in groups:
            key = answer_digest(answer)
            assert fitted.probability(query, key) == reading.of(key)
        assert fitted.probability(query, answer_digest("stored once")) is None
        assert fitted.probability(query, am.UNIQUE) is None
        assert fitted.probability(query, answer_digest("never stored")) is None


def test_the_reading_in_c_and_in_numpy_agree_to_rounding(monkeypatch: pytest.MonkeyPatch) -> None:
    # (the C softmax, where the extension is built, against NumPy's, where it is not:
    # the same probabilities to float32 rounding, the same answer on top, the unique
    # answers' class never on top)
    if am._SOFTMAX is am._softmax_numpy:
        pytest.skip("the native extension is not built")
    groups, fitted = _fitted_with_a_lone_answer()
    assert fitted.keys[-1] == am.UNIQUE
    readings = []
    for seed in range(8):
        query = _toward(groups[f"answer {seed % 3}"][0], 0.3 + 0.08 * seed, seed)
        readings.append((query, fitted.read(query)))
    monkeypatch.setattr(am, "_SOFTMAX", am._softmax_numpy)
    for query, reading in readings:
        numpy = fitted.read(query)
        assert numpy.top == reading.top != am.UNIQUE
        np.testing.assert_allclose(numpy.p, reading.p, rtol=1e-5, atol=1e-9)
        assert fitted.probabilities(query).tolist() == numpy.p.tolist()


def test_one_repeated_answer_alone_fits_no_model() -> None:
    rows = _groups(1, n=1)["answer 0"]
    with SemanticCache(index_backend="flat", guards=None) as cache:
        _store(cache, {"answer 0": rows})
        cache.get("q", embedding=_unit(rows.sum(axis=0)))
        assert cache.stats()["answer_model"]["models"] == {}
        # an answer stored once makes a second class: the answers stored once
        cache.put("alone", "something else", embedding=_unit(-rows.sum(axis=0)))
        cache.get("q", embedding=_unit(rows.sum(axis=0)))
        assert cache.stats()["answer_model"]["models"] == {"default": 2}


def test_answers_that_never_repeat_fit_no_model() -> None:
    """Free-text answers (and the pair files' replay: each stored text its own answer):
    nothing to learn, the gets as without the model."""
    rows = _groups(7, n=4, members=3)
    with SemanticCache(index_backend="flat", guards=None) as cache:
        for answer, vectors in rows.items():
            for k, row in enumerate(vectors):
                cache.put(f"{answer} prompt {k}", f"{answer}, said the {k}th way", embedding=row)
        for vectors in rows.values():
            cache.get("q", embedding=_unit(vectors.sum(axis=0)))
        assert cache.stats()["answer_model"] == {"models": {}, "fits": 0, "failed": 0}


def test_the_model_is_refit_once_an_eighth_of_the_entries_changed() -> None:
    groups = _groups(2, n=4, members=8)  # 32 entries: a refit after 4 changes
    probe = _unit(groups["answer 0"].sum(axis=0))
    extra = _groups(20, n=1, members=4)["answer 0"]
    with SemanticCache(index_backend="flat", guards=None) as cache:
        _store(cache, groups)
        cache.get("q", embedding=probe)
        assert cache.stats()["answer_model"]["fits"] == 1
        cache.put_many(["n1", "n2", "n3"], ["new"] * 3, embeddings=extra[:3])
        cache.get("q", embedding=probe)
        assert cache.stats()["answer_model"]["fits"] == 1
        cache.put("n4", "new", embedding=extra[3])
        cache.get("q", embedding=probe)
        stats = cache.stats()["answer_model"]
        assert stats["fits"] == 2
        assert stats["models"] == {"default": 5}


def test_a_cleared_namespace_keeps_no_model() -> None:
    groups = _groups(4)
    probe = _unit(groups["answer 1"].sum(axis=0))
    with SemanticCache(index_backend="flat", guards=None) as cache:
        _store(cache, groups)
        assert cache.get("q", embedding=probe) is not None
        cache.clear_namespace("default")
        assert cache.get("q", embedding=probe) is None
        assert cache.stats()["answer_model"]["models"] == {}


def test_under_an_error_budget_the_model_is_the_budgets_not_the_gets() -> None:
    # with a budget the model's reading is two features of the budget's risk model
    # (tests/test_risk_model.py); the get's scores are not raised by it (the budget's
    # path never reads them), and answer_model=False keeps none
    with SemanticCache(index_backend="flat", error_budget=0.01) as cache:
        eng = engine_of(cache)
        assert eng.answer_models is not None
        assert eng.budgets is not None
        assert eng.budgets.models is eng.answer_models
    with SemanticCache(index_backend="flat", error_budget=0.01, answer_model=False) as cache:
        assert engine_of(cache).answer_models is None
        assert cache.stats()["answer_model"] is None


@pytest.fixture
def on_a_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """Fits on their own thread, each held until the event is set."""
    monkeypatch.setattr(am.AnswerModels, "background", True)
    release = threading.Event()
    fit = am.fit_softmax

    def held(*args):  # type: ignore[no-untyped-def]
        release.wait()
        return fit(*args)

    monkeypatch.setattr(am, "fit_softmax", held)
    yield release
    release.set()


def _join_fits() -> None:
    for thread in threading.enumerate():
        if thread.name == "semcache-answer-model":
            thread.join()


def test_the_fit_runs_on_a_thread_of_its_own(on_a_thread: threading.Event) -> None:
    groups = _groups(5)
    centre = _unit(groups["answer 2"].sum(axis=0))
    query = _toward(centre, 0.45, seed=4)  # no stored prompt near: the model decides
    with SemanticCache(index_backend="flat", guards=None, similarity_threshold=0.6) as cache:
        _store(cache, groups)
        assert cache.get("q", embedding=query) is None  # the fit is held: no model yet
        assert cache.stats()["answer_model"]["fits"] == 0
        on_a_thread.set()
        _join_fits()
        assert cache.stats()["answer_model"]["fits"] == 1
        hit = cache.get("q", embedding=query)
        assert hit is not None
        assert hit.response == "answer 2"


def test_one_thread_fits_the_namespaces_one_after_another(
    on_a_thread: threading.Event,
) -> None:
    groups = _groups(8)
    probe = _unit(groups["answer 0"].sum(axis=0))
    with SemanticCache(index_backend="flat", guards=None) as cache:
        for namespace in ("a", "b", "c"):
            for answer, rows in groups.items():
                cache.put_many(
                    [f"{answer} prompt {k}" for k in range(len(rows))],
                    [answer] * len(rows),
                    embeddings=rows,
                    namespace=namespace,
                )
            cache.get("q", embedding=probe, namespace=namespace)
        fitting = [t for t in threading.enumerate() if t.name == "semcache-answer-model"]
        assert len(fitting) == 1
        on_a_thread.set()
        _join_fits()
        assert cache.stats()["answer_model"]["models"] == {"a": 3, "b": 3, "c": 3}


def test_a_fit_that_fails_leaves_the_cache_serving(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args):  # type: ignore[no-untyped-def]
        raise MemoryError("no room for the weights")

    monkeypatch.setattr(am, "fit_softmax", broken)
    groups = _groups(6)
    with SemanticCache(index_backend="flat", guards=None) as cache:
        _store(cache, groups)
        row = groups["answer 1"][0]
        with caplog.at_level(logging.ERROR, logger="semcache"):
            hit = cache.get("answer 1 prompt 0 again", embedding=row)
        assert hit is not None
        assert hit.response == "answer 1"
        assert cache.stats()["answer_model"] == {"models": {}, "fits": 0, "failed": 1}
        assert "fitting the answer model failed" in caplog.text
        cache.get("answer 1 prompt 0 again", embedding=row)
        assert cache.stats()["answer_model"]["failed"] == 1  # not tried at every get
        cache.put_many(["x1", "x2"], ["answer 0", "answer 0"], embeddings=groups["answer 0"][:2])
        cache.get("answer 1 prompt 0 again", embedding=row)
        assert cache.stats()["answer_model"]["failed"] == 2  # tried once an eighth changed


# -- the real default embedder --------------------------------------------------------------
ASKED_BEFORE = {
    "4": ["What is 2+2?", "2 + 2 = ?", "how much is 2 plus 2", "add 2 and 2"],
    "Paris": [
        "What is the capital of France?",
        "capital city of france",
        "which city is france's capital",
        "tell me the capital of France",
    ],
    "Go to Settings, then Reset password.": [
        "How do I reset my password?",
        "I forgot my password",
        "password reset steps",
        "change my password please",
    ],
}


def test_with_the_default_embedder_other_questions_get_no_stored_answer(tmp_path: Path) -> None:
    """As a new user would see it (the shipped settings, the default embedder): the
    answer model is fitted, paraphrases are served, and questions the stored answers do
    not answer are not, the issue's "What is 2+3?" among them."""
    from semcache.embedders import default_embedder

    with SemanticCache(tmp_path / "c.db", default_embedder()) as cache:
        for answer, prompts in ASKED_BEFORE.items():
            cache.put_many(prompts, [answer] * len(prompts))
        for question in (
            "What is 2+3?",
            "what's 3 times 3",
            "capital of Germany",
            "reset my router",
            "how do I bake sourdough bread",
        ):
            assert cache.get(question) is None, question
        assert cache.stats()["answer_model"]["models"] == {"default": 3}
        for question, answer in (
            ("name the French capital", "Paris"),
            ("I can't remember my login password", "Go to Settings, then Reset password."),
            ("sum of 2 and 2", "4"),
        ):
            hit = cache.get(question)
            assert hit is not None, question
            assert hit.response == answer, question


def test_a_number_spelt_out_in_a_stored_prompt_does_not_open_the_guard(tmp_path: Path) -> None:
    """The issue's example through a side door: "what's two plus two" beside "What is
    2+2?" differ in digits, but they are no evidence that a number changed and the
    answer held, so the numbers guard does not yield to them (it had: "4" to "What is
    2+3?"); and the guard reads numbers spelt out ("what is two plus three", 0.85 to
    "what's two plus two", had been served "4"). The paraphrases are still served."""
    from semcache.embedders import default_embedder

    with SemanticCache(tmp_path / "c.db", default_embedder()) as cache:
        cache.put_many(["What is 2+2?", "what's two plus two"], ["4", "4"])
        assert cache.get("What is 2+3?") is None
        assert cache.get("what is two plus three") is None
        hit = cache.get("what's 2+2")
        assert hit is not None
        assert hit.response == "4"


def test_the_stream_replay_fits_the_answer_model_in_the_get() -> None:
    """``semcache eval``'s stream replay measures what the cache serves without timing
    in it: a fit there runs in the get that starts it."""
    from semcache.quality._clusters import StreamVectors, stream_replay

    clusters, vectors = _far_asked(1)
    made: list[SemanticCache] = []

    def make() -> SemanticCache:
        made.append(SemanticCache(index_backend="flat", guards=None))
        return made[-1]

    data = StreamVectors(clusters, _embed(vectors))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(am.AnswerModels, "background", True)
        stream_replay(data, make, label="t")
    models = engine_of(made[0]).answer_models
    assert models is not None
    assert models.background is False
    assert models.fits > 0
