"""Embedders: the protocol and the implementations semcache ships."""

from __future__ import annotations

from ._base import Embedder
from ._hashing import HashingEmbedder

__all__ = ["Embedder", "HashingEmbedder"]
