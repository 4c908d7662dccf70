"""Where ``semcache eval`` and ``semcache calibrate`` get their vectors: the embedder
named on the command line, through an embedding file when one is given; and the guards
``--guards`` knows. Shared by the pair commands (``_commands``) and the cluster
commands (``_cluster_commands``), which import this module and not each other's."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from .._errors import ConfigurationError
from .._progress import ProgressCallback
from ..embedders import Embedder, HashingEmbedder
from ._embedding_cache import EmbeddingFile
from ._replay import Embed

__all__ = ["GUARD_NAMES", "Source"]

#: The guards ``--guards`` knows (``all``: every one).
GUARD_NAMES = ("numbers", "negation", "order")


def _embedder(name: str) -> Embedder:
    if name == "minilm":
        from ..embedders import default_embedder

        return default_embedder()
    if name == "onnx":
        from ..embedders import OnnxEmbedder

        return OnnxEmbedder()
    if name == "st":
        from ..embedders import SentenceTransformerEmbedder

        return SentenceTransformerEmbedder(batch_size=64)
    if name == "hashing":
        return HashingEmbedder()
    raise ConfigurationError(f"unknown embedder {name!r}")


class _LoadsWithProgress:
    """An embedder whose model loads, drawing its progress, on its first ``embed`` (never
    when an embedding file already holds every vector)."""

    def __init__(self, embedder: Embedder, progress: ProgressCallback) -> None:
        self._embedder = embedder
        self._progress = progress
        self._loaded = False

    @property
    def dim(self) -> int:
        return int(self._embedder.dim)

    @property
    def fingerprint(self) -> str:
        return self._embedder.fingerprint

    def embed(self, texts: Sequence[str]) -> Any:
        if not self._loaded:
            self._loaded = True
            load = getattr(self._embedder, "load", None)
            if callable(load):
                load(progress=self._progress)
        return self._embedder.embed(texts)


class Source:
    """The vectors of one command run: ``embed`` (through the embedding file
    ``--embedding-cache`` when given, the embedder ``--embedder`` otherwise; a model loads
    on the first call, drawing ``progress``) and ``save`` (writes the file back).

    Raises:
        ConfigurationError: ``--embedder`` names no embedder this command knows.
    """

    def __init__(self, args: argparse.Namespace, progress: ProgressCallback | None) -> None:
        self.embedder = _embedder(args.embedder)
        loading: Embedder = (
            self.embedder if progress is None else _LoadsWithProgress(self.embedder, progress)
        )
        self.file = (
            None if args.embedding_cache is None else EmbeddingFile(loading, args.embedding_cache)
        )
        self.embed: Embed = loading.embed if self.file is None else self.file.embed

    def save(self) -> None:
        if self.file is not None:
            self.file.save()
