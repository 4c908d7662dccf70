"""The exact layer's memory: entries recently read or written, by key.

Only in single mode: there this process is the store's only writer, so it sees every
change and can keep the map exact by forgetting ids as they are removed. Bounded by
entries and by characters of text, least recently used out first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Final

from ._store import NewEntry, StoredEntry

__all__ = ["HOT_CHARS", "HOT_ENTRIES", "HotMap", "entry_size"]

#: Entries the map keeps (single mode only).
HOT_ENTRIES: Final = 16_384
#: ... and at most this many characters of text (entries over 1/64 of it are not kept).
HOT_CHARS: Final = 32 * 1048576


def entry_size(entry: StoredEntry) -> int:
    """What an entry counts against the map's character budget."""
    return 64 + len(entry.query) + len(entry.response) + len(entry.metadata or "")


class HotMap:
    """Entries by key (``entries``, an OrderedDict in recency order, read directly by
    the exact layer) and the key of each id (``keys``)."""

    __slots__ = ("capacity", "chars", "entries", "keys", "max_chars")

    def __init__(self, capacity: int, max_chars: int = HOT_CHARS) -> None:
        #: Entries kept at most; 0 turns the map off (shared mode).
        self.capacity = capacity
        self.max_chars = max_chars
        self.entries: OrderedDict[bytes, StoredEntry] = OrderedDict()
        self.keys: dict[int, bytes] = {}
        #: Characters held now (see :func:`entry_size`).
        self.chars = 0

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, key: bytes) -> StoredEntry | None:
        """The entry under ``key`` (now the most recent), or None."""
        entry = self.entries.get(key)
        if entry is not None:
            self.entries.move_to_end(key)
        return entry

    def by_id(self, entry_id: int) -> StoredEntry | None:
        """The entry with ``entry_id`` (now the most recent), or None."""
        key = self.keys.get(entry_id)
        if key is None:
            return None
        self.entries.move_to_end(key)
        return self.entries[key]

    def remember(self, key: bytes, entry: StoredEntry) -> None:
        """Keep ``entry`` under ``key`` (replacing what was there), evicting the least
        recently used past the bounds. An entry over 1/64 of the budget is not kept."""
        size = entry_size(entry)
        if size > self.max_chars // 64:
            return
        entries = self.entries
        old = entries.pop(key, None)
        if old is not None:
            self.keys.pop(old.id, None)
            self.chars -= entry_size(old)
        entries[key] = entry
        self.keys[entry.id] = key
        self.chars += size
        while len(entries) > self.capacity or self.chars > self.max_chars:
            _, out = entries.popitem(last=False)
            self.keys.pop(out.id, None)
            self.chars -= entry_size(out)

    def remember_new(
        self, entry_id: int, new: NewEntry, created_at: float, expires_at: float | None
    ) -> None:
        """Keep an entry just written (write-through: a put is usually read back soon)."""
        self.remember(
            new.key,
            StoredEntry(
                entry_id,
                new.key,
                new.namespace,
                new.query,
                new.response,
                new.metadata,
                created_at,
                expires_at,
                None,
                new.record,
            ),
        )

    def forget(self, ids: Iterable[int]) -> None:
        """Drop the entries with these ids (removed from the store)."""
        keys = self.keys
        for entry_id in ids:
            key = keys.pop(entry_id, None)
            if key is not None:
                self.chars -= entry_size(self.entries.pop(key))

    def clear(self) -> None:
        self.entries.clear()
        self.keys.clear()
        self.chars = 0
