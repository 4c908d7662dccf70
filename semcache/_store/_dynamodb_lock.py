"""The head item and the writer lock of a DynamoDBStore table (see ``_dynamodb``'s
module docstring for the protocol): taking the lock, rolling a dead writer's journal
forward, and running one mutation under the lock."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from .._errors import StoreError
from ._dynamodb_codec import (
    HEAD,
    HEAD_FIELDS,
    JOURNAL_INLINE,
    JOURNAL_PART,
    SET_HEAD,
    Item,
    Key,
    attr_b,
    attr_n,
    attr_s,
    decode_journal,
    encode_journal,
    get_bytes,
    get_int,
    get_str,
    item_key,
)
from ._dynamodb_plan import Plan
from ._dynamodb_table import Table

__all__ = ["LockedTable"]

_T = TypeVar("_T")


class LockedTable(Table):
    """The head and the writer lock :class:`~semcache._store._dynamodb.DynamoDBStore`
    builds on (it sets these attributes)."""

    _max_changes: int
    _lease: float
    _wlock: threading.Lock
    _dead_tokens: set[str]

    # -- the head and the lock --------------------------------------------------------
    def _update_head(
        self, expr: str, cond: str, values: Mapping[str, Any], *, new: bool = False
    ) -> Item:
        """A conditional ``UpdateItem`` of the head; ``#name`` in the expressions are
        attribute names (all aliased: DynamoDB reserves hundreds of words)."""
        names = {f"#{n}": n for n in HEAD_FIELDS if f"#{n}" in expr or f"#{n}" in cond}
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": item_key(*HEAD),
            "UpdateExpression": expr,
            "ConditionExpression": cond,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": dict(values),
        }
        if new:
            kwargs["ReturnValues"] = "ALL_NEW"
        got = self._call(lambda: self._client.update_item(**kwargs))
        attributes: Item = got.get("Attributes", {})
        return attributes

    def _head(self) -> Item | None:
        return self._get(HEAD)

    def _init_head(self) -> Item:
        """Create the head item of a new (or wiped) table: a new identity."""
        item = {
            **item_key(*HEAD),
            "gen": attr_s(uuid.uuid4().hex),
            "seq": attr_n(0),
            "id": attr_n(0),
            "low": attr_n(1),
            "gc": attr_n(1),
            "cnt": attr_n(0),
        }
        try:
            self._call(
                lambda: self._client.put_item(
                    TableName=self.table_name,
                    Item=item,
                    ConditionExpression="attribute_not_exists(pk)",
                )
            )
        except StoreError as exc:
            if not self._is_conditional_failure(exc):
                raise
        head = self._head()
        if head is None:  # deleted again at once: try once more on the next call
            raise StoreError(f"DynamoDB table {self.table_name!r}: its head item vanished")
        return head

    def _acquire(self) -> tuple[str, Item]:
        """Take the writer lock; returns ``(token, head)``. Finishes (rolls forward) the
        journal of a writer that died holding the lock."""
        token = uuid.uuid4().hex
        seen: str | None = None
        seen_at = 0.0
        delay = 0.002
        while True:
            try:
                head = self._update_head(
                    "SET #lk = :me",
                    "attribute_exists(#gen) AND attribute_not_exists(#lk)",
                    {":me": attr_s(token)},
                    new=True,
                )
                return token, head
            except StoreError as exc:
                if not self._is_conditional_failure(exc):
                    raise
            current = self._head()
            if current is None:
                self._init_head()
                continue
            holder = get_str(current, "lk")
            if holder is None:
                continue
            if holder == token:  # our update landed; its answer was lost
                return token, self._finish_or_mark(token, current)
            if holder != seen:
                seen, seen_at = holder, time.monotonic()
            if holder in self._dead_tokens or time.monotonic() - seen_at > self._lease:
                taken = self._take_over(holder, token)
                if taken is not None:
                    self._dead_tokens.discard(holder)
                    return token, taken
                seen = None
                continue
            time.sleep(delay)
            delay = min(delay * 1.5, 0.05)

    def _take_over(self, holder: str, token: str) -> Item | None:
        try:
            head = self._update_head(
                "SET #lk = :me",
                "#lk = :old",
                {":me": attr_s(token), ":old": attr_s(holder)},
                new=True,
            )
        except StoreError as exc:
            if self._is_conditional_failure(exc):
                return None
            raise
        return self._finish_or_mark(token, head)

    def _finish_or_mark(self, token: str, head: Item) -> Item:
        try:
            return self._finish(token, head)
        except BaseException:
            self._dead_tokens.add(token)  # ours: the next call takes it back at once
            raise

    def _finish(self, token: str, head: Item) -> Item:
        """Apply the journal found in ``head`` (a dead writer's), keeping the lock; like
        any writer, within a third of the lease from now."""
        deadline = time.monotonic() + self._lease / 3
        raw = get_bytes(head, "jn")
        if raw is None and "jc" in head:
            parts = [
                bytes(item["b"]["B"])
                for item in self._query(
                    "#j", after=f"{get_str(head, 'jt')}#", upper=f"{get_str(head, 'jt')}#~"
                )
            ]
            if len(parts) != get_int(head, "jc"):
                raise StoreError("DynamoDB journal is incomplete")
            raw = b"".join(parts)
        if raw is None:
            return head
        writes, values = decode_journal(raw)
        holders = {k: item for k, item in writes.items() if item is not None and _holds(k)}
        for k, item in holders.items():  # first, as a plan writes them
            self._put_unless_recorded(k, item, deadline)
        self._batch_write({k: v for k, v in writes.items() if k not in holders}, deadline)
        return self._update_head(
            SET_HEAD + " REMOVE #jn, #jc, #jt",
            "#lk = :me",
            {":me": attr_s(token), **{f":{k}": attr_n(v) for k, v in values.items()}},
            new=True,
        )

    def _put_unless_recorded(self, key: Key, item: Item, deadline: float) -> None:
        """Put a journal's entry item unless the dead writer wrote it already and a
        record was written on it since (its version ``ov`` set, lock-free, by
        ``update_records`` or ``write_records``): the item there is the journal's with a
        newer record, which a plain put would take back to the journal's."""
        self._check_deadline(deadline)
        try:
            self._call(
                lambda: self._client.put_item(
                    TableName=self.table_name,
                    Item=item,
                    ConditionExpression="attribute_not_exists(#v) OR #i <> :i",
                    ExpressionAttributeNames={"#v": "ov", "#i": "i"},
                    ExpressionAttributeValues={":i": item["i"]},
                )
            )
        except StoreError as exc:
            if not self._is_conditional_failure(exc):
                raise

    def _release(self, token: str, values: Mapping[str, int] | None) -> None:
        if values is None:
            expr, vals = "REMOVE #lk", {":me": attr_s(token)}
        else:
            expr = SET_HEAD + " REMOVE #lk, #jn, #jc, #jt"
            vals = {":me": attr_s(token), **{f":{k}": attr_n(v) for k, v in values.items()}}
        try:
            self._update_head(expr, "#lk = :me", vals)
        except StoreError as exc:
            if not self._is_conditional_failure(exc):
                self._dead_tokens.add(token)
                raise
            # A retry of an update that landed: the lock is no longer ours. Anything else
            # (our lock taken over) means our journal was applied by the taker.

    def _mutate(self, fn: Callable[[Plan], _T]) -> _T:
        """Run ``fn`` (planning) under the writer lock, then store, apply and commit."""
        self._check_open()
        with self._wlock:
            token, head = self._acquire()
            started = time.monotonic()
            deadline = started + self._lease / 3
            try:
                plan = Plan(self, head)
                result = fn(plan)
                plan.trim_log(self._max_changes)
            except BaseException:
                try:
                    self._release(token, None)
                except BaseException:
                    self._dead_tokens.add(token)
                raise
            values = plan.head_values()
            if not plan.writes and values == Plan(self, head).head_values():
                self._release(token, None)
                return result
            try:
                self._check_deadline(deadline)
                parts = self._store_journal(token, plan, values)
                self._batch_write(plan.writes, deadline)
                self._release(token, values)
            except BaseException:
                self._dead_tokens.add(token)
                raise
            if parts:  # a journal in parts: no longer needed (a leftover is harmless)
                self._batch_write(dict.fromkeys(parts), None)
            return result

    def _store_journal(self, token: str, plan: Plan, values: Mapping[str, int]) -> list[Key]:
        """Store the journal in the head (or in parts, named in the head); returns the
        parts, to delete once the mutation is committed."""
        raw = encode_journal(plan.writes, values)
        parts: dict[Key, Item | None] = {}
        if len(raw) <= JOURNAL_INLINE:
            expr, vals = "SET #jn = :j", {":j": attr_b(raw)}
        else:
            for i, lo in enumerate(range(0, len(raw), JOURNAL_PART)):
                sk = f"{token}#{i:06d}"
                parts[("#j", sk)] = {**item_key("#j", sk), "b": attr_b(raw[lo : lo + JOURNAL_PART])}
            self._batch_write(parts, None)
            expr = "SET #jc = :c, #jt = :t"
            vals = {":c": attr_n(len(parts)), ":t": attr_s(token)}
        self._update_head(expr, "#lk = :me", {":me": attr_s(token), **vals})
        return list(parts)


def _holds(key: Key) -> bool:
    """Whether ``key`` is an entry's item that holds its error-budget record (``e#I`` /
    ``0`` or ``k#H`` / ``0``: see ``_dynamodb``)."""
    pk, sk = key
    return sk == "0" and pk[:2] in ("e#", "k#")
