"""Stores: where entries live (the source of truth)."""

from __future__ import annotations

from ._base import Change, Limits, NewEntry, PutResult, Store, StoredEntry, VectorBatch
from ._memory import MemoryStore
from ._sqlite import SQLiteStore

__all__ = [
    "Change",
    "Limits",
    "MemoryStore",
    "NewEntry",
    "PutResult",
    "SQLiteStore",
    "Store",
    "StoredEntry",
    "VectorBatch",
]
