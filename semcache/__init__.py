"""semcache: a semantic cache for LLM applications."""

from __future__ import annotations

from ._async import AsyncSemanticCache
from ._cache import SemanticCache
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
    MissingDependencyError,
    QueryTooLargeError,
    ResponseTooLargeError,
    SchemaVersionError,
    SemanticCacheError,
    StoreCorruptError,
    StoreError,
    StoreUnavailableError,
)
from ._index import FlatIndex, VectorIndex, available_kernels, kernel_name
from ._store import MemoryStore, PostgresStore, RedisStore, SQLiteStore, Store
from ._types import MISS_REASONS, Hit, MetricsEvent
from .embedders import (
    AsyncCallableEmbedder,
    AsyncEmbedder,
    CallableEmbedder,
    Embedder,
    HashingEmbedder,
    SentenceTransformerEmbedder,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "MISS_REASONS",
    "AsyncCallableEmbedder",
    "AsyncEmbedder",
    "AsyncSemanticCache",
    "CacheClosedError",
    "CallableEmbedder",
    "ConfigurationError",
    "DimensionMismatchError",
    "Embedder",
    "EmbedderError",
    "EmbedderMismatchError",
    "FlatIndex",
    "HashingEmbedder",
    "Hit",
    "InputTooLargeError",
    "InvalidEmbeddingError",
    "InvalidInputError",
    "InvalidMetadataError",
    "InvalidNamespaceError",
    "InvalidTTLError",
    "InvalidTextError",
    "InvalidThresholdError",
    "MemoryStore",
    "MetadataTooLargeError",
    "MetricsEvent",
    "MissingDependencyError",
    "PostgresStore",
    "QueryTooLargeError",
    "RedisStore",
    "ResponseTooLargeError",
    "SQLiteStore",
    "SchemaVersionError",
    "SemanticCache",
    "SemanticCacheError",
    "SentenceTransformerEmbedder",
    "Store",
    "StoreCorruptError",
    "StoreError",
    "StoreUnavailableError",
    "VectorIndex",
    "__version__",
    "available_kernels",
    "kernel_name",
]
