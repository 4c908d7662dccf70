"""DynamoDBStore's error-budget state (see ``_dynamodb``): an entry's record is the
attribute ``o`` of both its items (under its id ``e#I`` / ``0`` and under its key
``k#H`` / ``0``), and a namespace's counters are the Number attributes ``q:NAME`` of one
item (``q`` / ``NS``)."""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

from .._errors import InvalidInputError, InvalidNamespaceError, StoreError
from ._dynamodb_codec import (
    MAX_NAMESPACE_BYTES,
    Key,
    attr_n,
    attr_s,
    get_str,
    item_key,
    pad_id,
)
from ._dynamodb_table import Table
from ._quality_checks import check_counts, check_counts_namespace, check_records

__all__ = ["COUNTER_PREFIX", "COUNTS_PK", "DynamoQuality"]

#: The partition of the counters' items (sort key: the namespace).
COUNTS_PK: Final = "q"
#: The prefix of a counter's attribute name (so that no name is ``pk`` or ``sk``).
COUNTER_PREFIX: Final = "q:"
#: Records written at once (each its own ``UpdateItem``).
_RECORDS_IN_FLIGHT: Final = 8
#: Counters added per ``UpdateItem`` (an update expression is at most 4 KB).
_COUNTS_PER_UPDATE: Final = 50
#: DynamoDB numbers hold 38 significant digits: deltas are rounded to this many
#: decimal places, and a counter stays below 10**23.
_DECIMALS: Final = 15
_MAX_DELTA: Final = 1e20


def _number(delta: float) -> str:
    """``delta`` rounded to :data:`_DECIMALS` places, as a DynamoDB Number ('0' if it
    rounds to nothing)."""
    text = f"{delta:.{_DECIMALS}f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-", "-0") else text


class DynamoQuality(Table):
    """The error-budget half of :class:`~semcache._store._dynamodb.DynamoDBStore`.

    Neither takes the table's writer lock. A record is a conditional ``UpdateItem`` of
    each of the entry's two items (an entry deleted or replaced meanwhile is not
    brought back), which leaves the entry's state (recency, expiry), the counts and the
    change log alone; a counter is an ``ADD``, which DynamoDB applies atomically, so no
    process loses another's updates.
    """

    def write_records(self, records: Mapping[int, str]) -> None:
        """Set the error-budget record of existing entries by id; an id with no entry is
        skipped. Nothing else of the entry changes.

        The record goes on both items of the entry (under its id, read by
        ``get_by_ids``, and under its key, read by ``get_by_key``): one
        ``BatchGetItem`` of the entries' states (their key hashes), then one conditional
        ``UpdateItem`` per item, up to 8 in flight (DynamoDB has no batch of conditional
        updates). The conditions (the item under the id exists; the item under the key
        still holds this id) keep a deleted or replaced entry from coming back. Each
        item is written or not on its own: a call that raises may have written some.

        Raises:
            InvalidInputError: a record or id of the wrong type (nothing is written).
            StoreUnavailableError: DynamoDB cannot be reached.
            StoreError: another DynamoDB error.
        """
        items = check_records(records)
        self._check_open()
        if not items:
            return
        states = self._batch_get([(f"e#{pad_id(i)}", "a") for i, _ in items])
        writes: list[tuple[Key, str, int | None]] = []
        for entry_id, text in items:
            state = states.get((f"e#{pad_id(entry_id)}", "a"))
            if state is not None:  # else no such entry
                writes.append(((f"e#{pad_id(entry_id)}", "0"), text, None))
                writes.append(((f"k#{get_str(state, 'h')}", "0"), text, entry_id))
        if not writes:
            return
        with ThreadPoolExecutor(min(_RECORDS_IN_FLIGHT, len(writes))) as pool:
            futures = [pool.submit(self._write_record, *w) for w in writes]
        for future in futures:
            future.result()  # the first failure, once every call has ended

    def _write_record(self, key: Key, text: str, owner: int | None) -> None:
        """Set ``o`` on the item ``key`` if it exists (``owner`` None) or holds the
        entry ``owner``."""
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": item_key(*key),
            "UpdateExpression": "SET #o = :o",
            "ExpressionAttributeNames": {"#o": "o"},
            "ExpressionAttributeValues": {":o": attr_s(text)},
        }
        if owner is None:
            kwargs["ConditionExpression"] = "attribute_exists(#pk)"
            kwargs["ExpressionAttributeNames"]["#pk"] = "pk"
        else:
            kwargs["ConditionExpression"] = "#i = :i"
            kwargs["ExpressionAttributeNames"]["#i"] = "i"
            kwargs["ExpressionAttributeValues"][":i"] = attr_n(owner)
        try:
            self._call(lambda: self._client.update_item(**kwargs))
        except StoreError as exc:
            if not self._is_conditional_failure(exc):
                raise

    def add_counts(self, namespace: str, deltas: Mapping[str, float]) -> None:
        """Add each delta to the namespace's named counter (``ADD``, up to 50 counters
        per ``UpdateItem``): concurrent adds from any number of processes all count.
        DynamoDB keeps exact decimals: each delta is rounded to 15 decimal places.

        Raises:
            InvalidNamespaceError: an empty namespace or one over 1000 bytes.
            InvalidInputError: a bad name, a delta that is not a finite number or
                whose size is 1e20 or more.
            StoreUnavailableError: DynamoDB cannot be reached.
            StoreError: another DynamoDB error.
        """
        items = check_counts(namespace, deltas)
        if not namespace or len(namespace.encode()) > MAX_NAMESPACE_BYTES:
            raise InvalidNamespaceError(
                f"DynamoDBStore namespaces are 1 to {MAX_NAMESPACE_BYTES} bytes (UTF-8)"
            )
        for name, delta in items:
            if abs(delta) >= _MAX_DELTA:
                raise InvalidInputError(
                    f"counter {name!r}: DynamoDBStore adds deltas below {_MAX_DELTA:g} "
                    f"in size, got {delta!r}"
                )
        numbers = [(n, _number(d)) for n, d in items]
        numbers = [(n, v) for n, v in numbers if v != "0"]
        self._check_open()
        for lo in range(0, len(numbers), _COUNTS_PER_UPDATE):
            chunk = numbers[lo : lo + _COUNTS_PER_UPDATE]
            kwargs: dict[str, Any] = {
                "TableName": self.table_name,
                "Key": item_key(COUNTS_PK, namespace),
                "UpdateExpression": "ADD " + ", ".join(f"#a{i} :v{i}" for i in range(len(chunk))),
                "ExpressionAttributeNames": {
                    f"#a{i}": COUNTER_PREFIX + n for i, (n, _) in enumerate(chunk)
                },
                "ExpressionAttributeValues": {f":v{i}": {"N": v} for i, (_, v) in enumerate(chunk)},
            }
            self._call(lambda kwargs=kwargs: self._client.update_item(**kwargs))  # type: ignore[misc]

    def read_counts(self, namespace: str) -> dict[str, float]:
        """The namespace's counters (empty when it has none).

        Raises:
            InvalidNamespaceError: ``namespace`` is not a str.
            StoreUnavailableError: DynamoDB cannot be reached.
            StoreError: another DynamoDB error.
        """
        if not check_counts_namespace(namespace):
            self._check_open()
            return {}
        item = self._get((COUNTS_PK, namespace)) or {}
        return {
            name.removeprefix(COUNTER_PREFIX): float(value["N"])
            for name, value in item.items()
            if name.startswith(COUNTER_PREFIX)
        }

    def _clear_counts(self, namespace: str | None) -> None:
        """Delete the counters of one namespace, or of all."""
        if namespace is None:
            keys: list[Key] = [(COUNTS_PK, sk) for sk in self._query_keys(COUNTS_PK)]
        else:
            keys = [(COUNTS_PK, namespace)] if namespace else []
        self._batch_write(dict.fromkeys(keys), None)
