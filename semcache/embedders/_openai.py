"""Embeddings from the OpenAI API, or any OpenAI-compatible one (extra ``openai``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final
from urllib.parse import urlsplit

import numpy as np
import numpy.typing as npt

from .._dist import install_hint
from .._errors import ConfigurationError, EmbedderError, MissingDependencyError

__all__ = ["AsyncOpenAIEmbedder", "OpenAIEmbedder"]

#: Vector lengths of OpenAI's embedding models (without ``dimensions``).
KNOWN_DIMS: Final = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
_DEFAULT_HOST: Final = "api.openai.com"
#: Inputs per request (the API accepts up to 2048).
_BATCH: Final = 2048


def _client(client: Any, async_: bool) -> Any:
    if client is not None:
        return client
    try:
        import openai
    except ImportError as exc:
        raise MissingDependencyError(
            f"OpenAIEmbedder needs the 'openai' package: {install_hint('openai')}"
        ) from exc
    return openai.AsyncOpenAI() if async_ else openai.OpenAI()


class _OpenAIBase:
    def __init__(self, client: Any, model: str, dimensions: int | None, async_: bool) -> None:
        if not isinstance(model, str) or not model:
            raise ConfigurationError(f"model must be a non-empty str, got {model!r}")
        if dimensions is not None and (
            isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1
        ):
            raise ConfigurationError(f"dimensions must be None or an int >= 1, got {dimensions!r}")
        self._client = _client(client, async_)
        self._model = model
        self._dimensions = dimensions
        self._dim: int | None = dimensions if dimensions is not None else KNOWN_DIMS.get(model)
        host = urlsplit(str(getattr(self._client, "base_url", ""))).netloc or _DEFAULT_HOST
        self._host = host

    @property
    def dim(self) -> int:
        """Vector length."""
        raise NotImplementedError

    @property
    def fingerprint(self) -> str:
        """``openai:<model>:dim=<n>``, with ``@<host>`` for another server than OpenAI's
        (the same model name elsewhere may make other vectors)."""
        where = "" if self._host == _DEFAULT_HOST else f"@{self._host}"
        return f"openai:{self._model}{where}:dim={self.dim}"

    def _params(self, texts: list[str]) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": self._model,
            "input": texts,
            "encoding_format": "float",
        }
        if self._dimensions is not None:
            params["dimensions"] = self._dimensions
        return params

    def _rows(self, response: Any, n: int) -> npt.NDArray[np.float32]:
        data = sorted(response.data, key=lambda item: item.index)
        rows = np.asarray([item.embedding for item in data], dtype=np.float32)
        if rows.ndim != 2 or rows.shape[0] != n:
            raise EmbedderError(f"the embeddings API returned {rows.shape} for {n} texts")
        if self._dim is None:
            self._dim = int(rows.shape[1])
        elif rows.shape[1] != self._dim:
            raise EmbedderError(
                f"the embeddings API returned {rows.shape[1]} dimensions; expected {self._dim}"
            )
        return rows

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._model!r} dim={self._dim}>"


class OpenAIEmbedder(_OpenAIBase):
    """An embedder on the OpenAI embeddings API (``client.embeddings.create``).

    Args:
        client: an ``openai.OpenAI`` client (default: ``openai.OpenAI()``, configured from
            the environment); any OpenAI-compatible server works through its ``base_url``.
        model: the embedding model.
        dimensions: ask for shorter vectors (``text-embedding-3-*``); None: the model's.

    The fingerprint (``openai:<model>:dim=<n>``, plus ``@host`` for a server other than
    OpenAI's) is derived automatically. ``dim`` is known for OpenAI's models; for another
    model it is learnt from one embedding call the first time it is needed.

    Raises:
        MissingDependencyError: no ``client`` and the ``openai`` package is missing.
        ConfigurationError: an empty ``model`` or a bad ``dimensions``.
    """

    def __init__(
        self,
        client: Any = None,
        model: str = "text-embedding-3-small",
        dimensions: int | None = None,
    ) -> None:
        super().__init__(client, model, dimensions, async_=False)

    @property
    def dim(self) -> int:
        """Vector length (one API call the first time for an unknown model)."""
        if self._dim is None:
            self.embed(["dimension probe"])
        assert self._dim is not None
        return self._dim

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Vectors of shape ``(len(texts), dim)``.

        Raises:
            EmbedderError: the API returned the wrong shape.
            openai.OpenAIError: the API call failed.
        """
        items = list(texts)
        parts = [
            self._rows(self._client.embeddings.create(**self._params(chunk)), len(chunk))
            for chunk in (items[i : i + _BATCH] for i in range(0, len(items), _BATCH))
        ]
        if not parts:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


class AsyncOpenAIEmbedder(_OpenAIBase):
    """:class:`OpenAIEmbedder` on an ``openai.AsyncOpenAI`` client, awaited on the event
    loop by :class:`~semcache.AsyncSemanticCache`.

    ``dim`` must be known before the first embedding: pass ``dimensions`` for a model
    that is not one of OpenAI's.

    Raises:
        MissingDependencyError, ConfigurationError: as :class:`OpenAIEmbedder`; also a
            model of unknown dimension without ``dimensions``.
    """

    def __init__(
        self,
        client: Any = None,
        model: str = "text-embedding-3-small",
        dimensions: int | None = None,
    ) -> None:
        super().__init__(client, model, dimensions, async_=True)
        if self._dim is None:
            raise ConfigurationError(f"the dimension of {model!r} is not known; pass dimensions=")

    @property
    def dim(self) -> int:
        """Vector length."""
        assert self._dim is not None
        return self._dim

    async def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Vectors of shape ``(len(texts), dim)``.

        Raises:
            EmbedderError: the API returned the wrong shape.
            openai.OpenAIError: the API call failed.
        """
        items = list(texts)
        parts = []
        for i in range(0, len(items), _BATCH):
            chunk = items[i : i + _BATCH]
            response = await self._client.embeddings.create(**self._params(chunk))
            parts.append(self._rows(response, len(chunk)))
        if not parts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)
