"""semcache: a semantic cache for LLM applications."""

from __future__ import annotations

from ._errors import (
    CacheClosedError,
    ConfigurationError,
    DimensionMismatchError,
    EmbedderError,
    EmbedderMismatchError,
    InputTooLargeError,
    InvalidEmbeddingError,
    InvalidInputError,
    InvalidMetadataError,
    InvalidNamespaceError,
    InvalidTextError,
    InvalidThresholdError,
    InvalidTTLError,
    MetadataTooLargeError,
    QueryTooLargeError,
    ResponseTooLargeError,
    SchemaVersionError,
    SemanticCacheError,
    StoreCorruptError,
    StoreError,
)
from ._index import FlatIndex, VectorIndex

__version__ = "0.1.0.dev0"

__all__ = [
    "CacheClosedError",
    "ConfigurationError",
    "DimensionMismatchError",
    "EmbedderError",
    "EmbedderMismatchError",
    "FlatIndex",
    "InputTooLargeError",
    "InvalidEmbeddingError",
    "InvalidInputError",
    "InvalidMetadataError",
    "InvalidNamespaceError",
    "InvalidTTLError",
    "InvalidTextError",
    "InvalidThresholdError",
    "MetadataTooLargeError",
    "QueryTooLargeError",
    "ResponseTooLargeError",
    "SchemaVersionError",
    "SemanticCacheError",
    "StoreCorruptError",
    "StoreError",
    "VectorIndex",
    "__version__",
]
