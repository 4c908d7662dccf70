"""Stores: where entries live (the source of truth)."""

from __future__ import annotations

from ._base import (
    AnswerBatch,
    AnswerScan,
    Change,
    FileBackup,
    Limits,
    LocalFile,
    NewEntry,
    NoLocalFile,
    PutResult,
    QualityState,
    SearchIndexFactory,
    ServerSearch,
    Store,
    StoredEntry,
    VectorBatch,
    answer_scan,
    claim_settings,
    claim_store,
    file_backup,
    local_path,
    quality_state,
)
from ._dynamodb import DynamoDBStore
from ._memory import MemoryStore
from ._postgres import PostgresStore
from ._redis import RedisStore
from ._search import SearchableStore, StoreSearchIndex, search_index_factory
from ._sqlite import SQLiteStore

__all__ = [
    "AnswerBatch",
    "AnswerScan",
    "Change",
    "DynamoDBStore",
    "FileBackup",
    "Limits",
    "LocalFile",
    "MemoryStore",
    "NewEntry",
    "NoLocalFile",
    "PostgresStore",
    "PutResult",
    "QualityState",
    "RedisStore",
    "SQLiteStore",
    "SearchIndexFactory",
    "SearchableStore",
    "ServerSearch",
    "Store",
    "StoreSearchIndex",
    "StoredEntry",
    "VectorBatch",
    "answer_scan",
    "claim_settings",
    "claim_store",
    "file_backup",
    "local_path",
    "quality_state",
    "search_index_factory",
]
