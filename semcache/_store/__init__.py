"""Stores: where entries live (the source of truth)."""

from __future__ import annotations

from ._base import Change, Limits, NewEntry, PutResult, Store, StoredEntry, VectorBatch
from ._dynamodb import DynamoDBStore
from ._memory import MemoryStore
from ._postgres import PostgresStore
from ._redis import RedisStore
from ._search import SearchableStore, StoreSearchIndex
from ._sqlite import SQLiteStore

__all__ = [
    "Change",
    "DynamoDBStore",
    "Limits",
    "MemoryStore",
    "NewEntry",
    "PostgresStore",
    "PutResult",
    "RedisStore",
    "SQLiteStore",
    "SearchableStore",
    "Store",
    "StoreSearchIndex",
    "StoredEntry",
    "VectorBatch",
]
