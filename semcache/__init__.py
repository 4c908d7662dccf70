"""semcache: a semantic cache for LLM applications."""

from __future__ import annotations

from . import _budgets
from ._async import AsyncSemanticCache
from ._cache import SemanticCache
from ._errors import (
    ArchiveMemberTooLargeError,
    CacheClosedError,
    CheckpointChecksumError,
    CheckpointError,
    CheckpointFormatError,
    CheckpointMismatchError,
    CheckpointVersionError,
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
    StoreLockedError,
    StoreUnavailableError,
    UnsafeArchiveError,
)
from ._index import FlatIndex, VectorIndex, available_kernels, kernel_name
from ._progress import ProgressBar, ProgressCallback
from ._store import DynamoDBStore, MemoryStore, PostgresStore, RedisStore, SQLiteStore, Store
from ._types import MISS_REASONS, Hit, MetricsEvent
from ._version import __version__
from .embedders import (
    AsyncCallableEmbedder,
    AsyncEmbedder,
    AsyncOnnxEmbedder,
    CallableEmbedder,
    Embedder,
    HashingEmbedder,
    OnnxEmbedder,
    SentenceTransformerEmbedder,
)
from .quality import _agreement, _budget

# The error budget's policy, for the engine (see semcache._budgets: the engine cannot
# import semcache.quality, whose modules import the cache).
_budgets.install_policy(
    _budgets.PolicyKit(
        error_budget=_budget.ErrorBudget,
        risk_table=_budget.RiskTable,
        entry_record=_budget.EntryRecord,
        candidate=_agreement.Candidate,
        agreement=_agreement.agreement,
        voted=_agreement.voted,
        same_answer=_agreement.same_answer,
    )
)

__all__ = [
    "MISS_REASONS",
    "ArchiveMemberTooLargeError",
    "AsyncCallableEmbedder",
    "AsyncEmbedder",
    "AsyncOnnxEmbedder",
    "AsyncSemanticCache",
    "CacheClosedError",
    "CallableEmbedder",
    "CheckpointChecksumError",
    "CheckpointError",
    "CheckpointFormatError",
    "CheckpointMismatchError",
    "CheckpointVersionError",
    "ConfigurationError",
    "DimensionMismatchError",
    "DynamoDBStore",
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
    "OnnxEmbedder",
    "PostgresStore",
    "ProgressBar",
    "ProgressCallback",
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
    "StoreLockedError",
    "StoreUnavailableError",
    "UnsafeArchiveError",
    "VectorIndex",
    "__version__",
    "available_kernels",
    "kernel_name",
]
