"""A DynamoDBStore mutation's plan: the writes one locked mutation makes, computed
before any is sent (see ``_dynamodb``)."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from ._base import NewEntry
from ._dynamodb_codec import (
    PART,
    Item,
    Key,
    attr_b,
    attr_f,
    attr_n,
    attr_s,
    get_int,
    get_str,
    item_key,
    key_hash,
    pack_parts,
    pad_id,
    sortable,
    time_key,
)

if TYPE_CHECKING:
    from ._dynamodb_table import Table


# -- a mutation's plan --------------------------------------------------------------------
class Plan:
    """The items one mutation writes, planned under the lock. Reads go through the plan,
    so later steps see earlier ones (a key repeated in a batch, the batch's own entries
    as eviction victims)."""

    def __init__(self, store: Table, head: Item) -> None:
        self.store = store
        self.writes: dict[Key, Item | None] = {}
        self.seq = get_int(head, "seq")
        self.last_id = get_int(head, "id")
        self.low = get_int(head, "low", 1)
        self.gc = get_int(head, "gc", 1)
        self.total = get_int(head, "cnt")
        self.start_seq = self.seq
        self._cache: dict[Key, Item | None] = {}
        self._counts: dict[str, int] = {}
        self.changed_head = False

    # reads, overlay first
    def prefetch(self, keys: Iterable[Key]) -> None:
        wanted = [k for k in dict.fromkeys(keys) if k not in self.writes and k not in self._cache]
        if wanted:
            self._cache.update(self.store._batch_get(wanted))

    def get(self, key: Key) -> Item | None:
        if key in self.writes:
            return self.writes[key]
        if key not in self._cache:
            self.prefetch([key])
        return self._cache.get(key)

    def put(self, key: Key, item: Item) -> None:
        self.writes[key] = {**item_key(*key), **item}

    def delete(self, key: Key) -> None:
        self.writes[key] = None

    def count(self, ns: str) -> int:
        if ns not in self._counts:
            item = self.get(("c", ns))
            self._counts[ns] = 0 if item is None else get_int(item, "n")
        return self._counts[ns]

    def _add_count(self, ns: str, delta: int) -> None:
        n = self.count(ns) + delta
        self._counts[ns] = n
        self.total += delta
        if n > 0:
            self.put(("c", ns), {"n": attr_n(n)})
        else:
            self.delete(("c", ns))

    def log(self, op: str, entry_id: int, ns: str) -> None:
        self.seq += 1
        self.put(("l", pad_id(self.seq)), {"o": attr_s(op), "i": attr_n(entry_id), "n": attr_s(ns)})

    # entries
    def state(self, entry_id: int) -> Item | None:
        return self.get((f"e#{pad_id(entry_id)}", "a"))

    def insert(self, e: NewEntry) -> tuple[int, tuple[int, str] | None]:
        h = key_hash(e.key)
        replaced = None
        head = self.get((f"k#{h}", "0"))
        if head is not None:
            old = get_int(head, "i")
            ns = self.remove(old)
            if ns is not None:
                replaced = (old, ns)
        self.last_id += 1
        entry_id = self.last_id
        ns = e.namespace
        fields = [
            e.query.encode(),
            e.response.encode(),
            None if e.metadata is None else e.metadata.encode(),
            None if e.vector is None else bytes(e.vector),
        ]
        item: Item = {
            "i": attr_n(entry_id),
            "k": attr_b(e.key),
            "n": attr_s(ns),
            "c": attr_f(e.created_at),
        }
        if e.expires_at is not None:
            item["x"] = attr_f(e.expires_at)
        if e.record is not None:  # the error budget's record, on both items (see _dynamodb)
            item["o"] = attr_s(e.record)
        parts = 1
        pad = pad_id(entry_id)
        if len(e.key) + sum(len(f) for f in fields if f is not None) <= PART:
            # The whole entry twice: under its key (the exact layer's one GetItem) and
            # under its id (a semantic candidate's one BatchGetItem).
            item["q"] = attr_s(e.query)
            item["r"] = attr_s(e.response)
            if e.metadata is not None:
                item["m"] = attr_s(e.metadata)
            if e.vector is not None:
                item["v"] = attr_b(e.vector)
            self.put((f"e#{pad}", "0"), item)
        else:
            # Split under its id only, parts written once and never overwritten (a new
            # entry has a new id); the key's item says where they are.
            blob = pack_parts(fields)
            chunks = [blob[lo : lo + PART] for lo in range(0, len(blob), PART)]
            parts = len(chunks)
            item["np"] = attr_n(parts)
            for i, chunk in enumerate(chunks):
                self.put(
                    (f"e#{pad}", str(i)),
                    {**item, "b": attr_b(chunk)}
                    if i == 0
                    else {"i": attr_n(entry_id), "b": attr_b(chunk)},
                )
        self.put((f"k#{h}", "0"), item)
        state: Item = {
            "h": attr_s(h),
            "n": attr_s(ns),
            "a": attr_f(e.created_at),
            "np": attr_n(parts),
        }
        member: Item = {}
        if e.vector is not None:
            member["v"] = attr_b(e.vector)
        if e.expires_at is not None:
            state["x"] = attr_f(e.expires_at)
            member["x"] = attr_f(e.expires_at)
            tk = time_key(e.expires_at, entry_id)
            self.put(("x", tk), {})
            self.put((f"x#{ns}", tk), {})
        self.put((f"e#{pad_id(entry_id)}", "a"), state)
        self.put((f"m#{ns}", pad_id(entry_id)), member)
        rk = time_key(e.created_at, entry_id)
        self.put(("r", rk), {})
        self.put((f"r#{ns}", rk), {})
        self._add_count(ns, 1)
        self.log("p", entry_id, ns)
        return entry_id, replaced

    def remove(self, entry_id: int) -> str | None:
        """Plan the delete of an entry; its namespace, or None if it does not exist."""
        state = self.state(entry_id)
        if state is None:
            return None
        h, ns, parts = get_str(state, "h"), str(get_str(state, "n")), get_int(state, "np", 1)
        pad = pad_id(entry_id)
        self.delete((f"e#{pad}", "a"))
        self.delete((f"m#{ns}", pad))
        rk = time_key(float(str(get_str(state, "a"))), entry_id)
        self.delete(("r", rk))
        self.delete((f"r#{ns}", rk))
        x = get_str(state, "x")
        if x is not None:
            tk = time_key(float(x), entry_id)
            self.delete(("x", tk))
            self.delete((f"x#{ns}", tk))
        for i in range(parts):
            self.delete((f"e#{pad}", str(i)))
        content = self.get((f"k#{h}", "0"))
        if content is not None and get_int(content, "i") == entry_id:
            self.delete((f"k#{h}", "0"))
        self._add_count(ns, -1)
        self.log("d", entry_id, ns)
        return ns

    def touch(self, entry_id: int, when: float) -> None:
        key = (f"e#{pad_id(entry_id)}", "a")
        state = self.get(key)
        if state is None:
            return
        old = float(str(get_str(state, "a")))
        if not when > old:
            return
        ns = str(get_str(state, "n"))
        for pk in ("r", f"r#{ns}"):
            self.delete((pk, time_key(old, entry_id)))
            self.put((pk, time_key(when, entry_id)), {})
        self.put(
            key, {**{k: v for k, v in state.items() if k not in ("pk", "sk")}, "a": attr_f(when)}
        )

    def scan(self, pk: str, upper: str | None = None) -> Iterator[str]:
        """Sort keys of partition ``pk`` (up to ``upper``) as the plan leaves them,
        ascending: the table's, less the plan's deletes, merged with the plan's puts."""
        mine = sorted(
            sk
            for (p, sk), item in self.writes.items()
            if p == pk and item is not None and (upper is None or sk <= upper)
        )
        table = (sk for sk in self.store._query_keys(pk, upper) if (pk, sk) not in self.writes)
        yield from heapq.merge(table, mine)

    def evict(
        self, pk_lru: str, pk_exp: str, size: int, limit: int, now: float
    ) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
        excess = size - limit
        expired: list[tuple[int, str]] = []
        lru: list[tuple[int, str]] = []
        if excess <= 0:
            return expired, lru
        upper = sortable(now) + "#~"
        for entry_id in self._victims(self.scan(pk_exp, upper), excess):
            ns = self.remove(entry_id)
            if ns is not None:
                expired.append((entry_id, ns))
        excess -= len(expired)
        if excess > 0:
            for entry_id in self._victims(self.scan(pk_lru), excess):
                ns = self.remove(entry_id)
                if ns is not None:
                    lru.append((entry_id, ns))
        return expired, lru

    def _victims(self, sort_keys: Iterator[str], n: int) -> list[int]:
        """The ids of the first ``n`` sort keys, their states and entries read in two
        batches (not two reads per victim)."""
        ids = [int(sk.rpartition("#")[2]) for sk in self._take(sort_keys, n)]
        self.prefetch([(f"e#{pad_id(i)}", "a") for i in ids])
        states = [self.state(i) for i in ids]
        self.prefetch([(f"k#{get_str(s, 'h')}", "0") for s in states if s is not None])
        return ids

    @staticmethod
    def _take(it: Iterator[str], n: int) -> Iterator[str]:
        for i, value in enumerate(it):
            if i >= n:
                return
            yield value

    def head_values(self) -> dict[str, int]:
        return {
            "seq": self.seq,
            "id": self.last_id,
            "low": self.low,
            "gc": self.gc,
            "cnt": self.total,
        }

    def trim_log(self, max_changes: int) -> None:
        """Move the log's lower bound up to keep ``max_changes`` records, and delete
        some records below it (at most a few per change, so no write grows large)."""
        self.low = max(self.low, self.seq - max_changes + 1)
        budget = 2 * (self.seq - self.start_seq) + 50
        stop = min(self.low, self.gc + budget)
        for s in range(self.gc, stop):
            self.delete(("l", pad_id(s)))
        self.gc = max(self.gc, stop)
