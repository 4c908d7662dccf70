"""Embeddings kept in a file between evaluation runs (outside the repository: they are
derived from the evaluation data), so that a sweep or a calibration does not re-embed
tens of thousands of texts."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .._errors import ConfigurationError
from .._text import normalize_text
from ..embedders import Embedder

__all__ = ["EmbeddingFile"]


class EmbeddingFile:
    """``embed(texts)`` through a file of vectors keyed by normalized text.

    Texts found in the file are not embedded again; new ones are embedded with
    ``embedder`` and added when :meth:`save` is called. The file (``.npz``, no pickle)
    records the embedder's fingerprint and is refused for another embedder.

    Args:
        embedder: makes the missing vectors.
        path: the ``.npz`` file (created by :meth:`save` if missing).

    Raises:
        ConfigurationError: the file was made by another embedder or is malformed.
    """

    def __init__(self, embedder: Embedder, path: str | os.PathLike[str]) -> None:
        self._embedder = embedder
        self._path = Path(path)
        self._rows: dict[str, int] = {}
        self._vectors: list[npt.NDArray[np.float32]] = []
        self._added = 0
        if self._path.exists():
            self._read()

    def _read(self) -> None:
        try:
            with np.load(self._path, allow_pickle=False) as data:
                fingerprint = bytes(data["fingerprint"]).decode()
                keys = bytes(data["keys"]).decode().split("\n") if data["keys"].size else []
                vectors = np.asarray(data["vectors"], dtype=np.float32)
        except (OSError, KeyError, ValueError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"{self._path}: not an embedding file ({exc})") from None
        if fingerprint != self._embedder.fingerprint:
            raise ConfigurationError(
                f"{self._path} holds vectors of {fingerprint!r}, not "
                f"{self._embedder.fingerprint!r}; use another file"
            )
        if len(keys) != len(vectors):
            raise ConfigurationError(f"{self._path}: keys and vectors disagree")
        self._rows = {k: i for i, k in enumerate(keys)}
        self._vectors = [vectors]

    def __len__(self) -> int:
        return len(self._rows)

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """The vectors of ``texts`` (from the file, or embedded now)."""
        keys = [normalize_text(t) for t in texts]
        missing: dict[str, str] = {}
        for key, text in zip(keys, texts, strict=True):
            if key not in self._rows:
                missing.setdefault(key, text)
        if missing:
            new = np.asarray(self._embedder.embed(list(missing.values())), dtype=np.float32)
            start = len(self._rows)
            for i, key in enumerate(missing):
                self._rows[key] = start + i
            self._vectors.append(new)
            self._added += len(missing)
        if len(self._vectors) > 1:
            self._vectors = [np.concatenate(self._vectors)]
        table = self._vectors[0] if self._vectors else np.zeros((0, self._embedder.dim))
        out: npt.NDArray[np.float32] = table[[self._rows[k] for k in keys]].astype(np.float32)
        return out

    def save(self) -> None:
        """Write the file if vectors were added (atomically).

        Raises:
            OSError: it cannot be written.
        """
        if not self._added:
            return
        if len(self._vectors) > 1:
            self._vectors = [np.concatenate(self._vectors)]
        keys = sorted(self._rows, key=self._rows.__getitem__)
        payload: dict[str, Any] = {
            "fingerprint": np.frombuffer(self._embedder.fingerprint.encode(), dtype=np.uint8),
            "keys": np.frombuffer("\n".join(keys).encode(), dtype=np.uint8),
            "vectors": self._vectors[0],
        }
        tmp = self._path.with_name(self._path.name + ".tmp.npz")
        np.savez(tmp, **payload)
        os.replace(tmp, self._path)
        self._added = 0
