"""Any LangChain ``Embeddings`` as a semcache embedder (extra ``langchain``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from .._errors import ConfigurationError, EmbedderError

__all__ = ["AsyncLangChainEmbedder", "LangChainEmbedder"]

#: Attributes of LangChain embedding classes that name the model and its settings.
_IDENTITY: Final = ("model", "model_name", "model_id", "deployment", "dimensions", "size")


def _fingerprint(embeddings: Any, dim: int) -> str | None:
    parts = []
    for attr in _IDENTITY:
        value = getattr(embeddings, attr, None)
        if isinstance(value, str | int) and not isinstance(value, bool) and value != "":
            parts.append(f"{attr}={value}")
    if not parts:
        return None
    return f"langchain:{type(embeddings).__name__}:{','.join(parts)}:dim={dim}"


def _rows(value: Any, n: int) -> npt.NDArray[np.float32]:
    try:
        rows = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise EmbedderError(f"the LangChain embeddings returned no vectors: {exc}") from exc
    if rows.ndim != 2 or rows.shape[0] != n:
        raise EmbedderError(f"the LangChain embeddings returned {rows.shape} for {n} texts")
    return rows


class _Base:
    def __init__(self, embeddings: Any, fingerprint: str | None, dim: int) -> None:
        self._embeddings = embeddings
        self._dim = dim
        fp = fingerprint if fingerprint is not None else _fingerprint(embeddings, dim)
        if not isinstance(fp, str) or not fp.strip():
            raise ConfigurationError(
                f"cannot tell which model {type(embeddings).__name__} runs (no model, "
                "model_name or model_id attribute); pass fingerprint= naming the model "
                "and its settings"
            )
        self._fingerprint = fp

    @property
    def dim(self) -> int:
        """Vector length (learnt from one embedding at construction)."""
        return self._dim

    @property
    def fingerprint(self) -> str:
        """The given fingerprint, or ``langchain:<class>:<model settings>:dim=<n>``."""
        return self._fingerprint

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._fingerprint!r}>"


class LangChainEmbedder(_Base):
    """An embedder on a LangChain ``Embeddings`` (``embed_documents``).

    Args:
        embeddings: e.g. ``OpenAIEmbeddings(model=...)``, ``HuggingFaceEmbeddings(...)``.
        fingerprint: a stable name for the model and its settings; None derives it from
            the class and its ``model`` / ``model_name`` / ``model_id`` / ``deployment``
            / ``dimensions`` / ``size`` attributes (never from keys or URLs).

    The constructor embeds one short text to learn the dimension.

    Raises:
        ConfigurationError: no fingerprint given and none can be derived.
        EmbedderError: the probe returned no vectors.
    """

    def __init__(self, embeddings: Any, fingerprint: str | None = None) -> None:
        probe = _rows(embeddings.embed_documents(["dimension probe"]), 1)
        super().__init__(embeddings, fingerprint, int(probe.shape[1]))

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Vectors of shape ``(len(texts), dim)``.

        Raises:
            EmbedderError: the embeddings returned the wrong shape.
        """
        items = list(texts)
        if not items:
            return np.zeros((0, self._dim), dtype=np.float32)
        return _rows(self._embeddings.embed_documents(items), len(items))


class AsyncLangChainEmbedder(_Base):
    """:class:`LangChainEmbedder` on ``aembed_documents``, for
    :class:`~semcache.AsyncSemanticCache`. Build it with :meth:`create`.

    Raises:
        ConfigurationError, EmbedderError: as :class:`LangChainEmbedder`.
    """

    @classmethod
    async def create(
        cls, embeddings: Any, fingerprint: str | None = None
    ) -> AsyncLangChainEmbedder:
        """Probe the dimension (awaited) and build the embedder.

        Raises:
            ConfigurationError, EmbedderError: as :class:`LangChainEmbedder`.
        """
        probe = _rows(await embeddings.aembed_documents(["dimension probe"]), 1)
        return cls(embeddings, fingerprint, int(probe.shape[1]))

    async def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Vectors of shape ``(len(texts), dim)``.

        Raises:
            EmbedderError: the embeddings returned the wrong shape.
        """
        items = list(texts)
        if not items:
            return np.zeros((0, self._dim), dtype=np.float32)
        return _rows(await self._embeddings.aembed_documents(items), len(items))
