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
    OutcomeLog,
    PutResult,
    QualityState,
    RecordChange,
    RecordUpdate,
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
    outcome_log,
    quality_state,
    record_update,
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
    "OutcomeLog",
    "PostgresStore",
    "PutResult",
    "QualityState",
    "RecordChange",
    "RecordUpdate",
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
    "outcome_log",
    "quality_state",
    "record_update",
    "search_index_factory",
]
