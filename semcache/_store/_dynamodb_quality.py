"""DynamoDBStore's error-budget state (see ``_dynamodb``): an entry's record is the
attribute ``o`` of both its items (under its id ``e#I`` / ``0`` and under its key
``k#H`` / ``0``), and a namespace's counters are the Number attributes ``q:NAME`` of one
item (``q`` / ``NS``).

The item under the id holds the record as written; each write adds 1 to its version
(the Number ``ov``, absent: 0), and the item under the key takes a record only with a
higher version than its own, so that two writers' copies land in their order, whatever
order their second calls arrive in.

A namespace's outcome log is a partition of its own, ``o#NS``: one item per row (the
String ``v``) under a sort key of its sequence number, zero-padded to 20 digits, so a
``Query`` reads the rows in order. The namespace's last sequence number is the Number
``n`` of the item ``o`` / ``NS``; an add reserves as many numbers as it has rows in
one ``UpdateItem ... ADD`` (so an add's rows are consecutive, after those of every add
that reserved before it), writes its rows (``BatchWriteItem``), reads the last number
again and deletes the rows at or below it less ``keep``. Every add trims after its own
rows are written, with a number read after that, so once concurrent adds have all
returned the log holds exactly the newest ``keep`` rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

from .._errors import InvalidInputError, InvalidNamespaceError, StoreError
from ._base import RecordChange
from ._dynamodb_codec import (
    MAX_NAMESPACE_BYTES,
    Item,
    Key,
    attr_n,
    attr_s,
    get_int,
    get_str,
    item_key,
    pad_id,
)
from ._dynamodb_table import Table
from ._quality_checks import (
    check_counts,
    check_counts_namespace,
    check_outcomes,
    check_records,
    record_ids,
)

__all__ = ["COUNTER_PREFIX", "COUNTS_PK", "OUTCOMES_PK", "DynamoQuality"]

#: The partition of the counters' items (sort key: the namespace).
COUNTS_PK: Final = "q"
#: The partition of the outcome logs' sequence items (sort key: the namespace); a
#: namespace's rows are in the partition ``OUTCOMES_PK + "#" + NS``.
OUTCOMES_PK: Final = "o"
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
    process loses another's updates. An outcome log's add reserves its rows' sequence
    numbers with an ``ADD`` too (see the module docstring).
    """

    def write_records(self, records: Mapping[int, str]) -> None:
        """Set the error-budget record of existing entries by id; an id with no entry is
        skipped. Nothing else of the entry changes.

        The record goes on both items of the entry (under its id, read by
        ``get_by_ids``, and under its key, read by ``get_by_key``): one
        ``BatchGetItem`` of the entries' states (their key hashes), then per entry one
        conditional ``UpdateItem`` of the item under its id (which must exist; its
        version goes up by 1) and one of the item under its key (which must still hold
        this id, at a lower version), up to 8 entries in flight (DynamoDB has no batch
        of conditional updates). A deleted or replaced entry does not come back. Each
        entry is written or not on its own: a call that raises may have written some.

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
        writes: list[tuple[int, str, str, str | None]] = []
        for entry_id, text in items:
            state = states.get((f"e#{pad_id(entry_id)}", "a"))
            if state is not None:  # else no such entry
                writes.append((entry_id, str(get_str(state, "h")), text, None))
        self._write_all(writes, only_from=False)

    def update_records(self, ids: Sequence[int], change: RecordChange) -> None:
        """Change records in place (see :class:`~semcache._store._base.RecordUpdate`):
        the entries are read (one ``BatchGetItem``, consistent), and each record
        ``change`` returns is written to the item under the entry's id only if its
        record is still the one read (a conditional ``UpdateItem``), then copied to the
        item under its key (at its version, as :meth:`write_records` does). An entry
        whose record another writer changed since the read is read again and changed
        again, until one write lands or the entry is gone.

        Raises:
            InvalidInputError, InputTooLargeError: ``change`` returned a text
                ``write_records`` would refuse; nothing of that round is written.
            StoreUnavailableError: DynamoDB cannot be reached.
            StoreError: another DynamoDB error.
        """
        wanted = record_ids(ids)
        self._check_open()
        while wanted:
            live = self._records_of(wanted)
            texts: dict[int, str] = {}
            for entry_id, (response, created_at, record, _) in live.items():
                text = change(entry_id, response, created_at, record)
                if text is not None:
                    texts[entry_id] = text
            items = check_records(texts)
            writes = [(i, live[i][3], text, live[i][2]) for i, text in items]
            wanted = self._write_all(writes, only_from=True)

    def _records_of(self, ids: Sequence[int]) -> dict[int, tuple[str, float, str | None, str]]:
        """Per live entry of ``ids``: its response, created_at, record and key hash
        (``DynamoDBStore`` reads them)."""
        raise NotImplementedError

    def _write_all(
        self, writes: Sequence[tuple[int, str, str, str | None]], *, only_from: bool
    ) -> list[int]:
        """Write each ``(entry id, key hash, record, record read)`` (the record read
        is the condition when ``only_from``), up to 8 entries in flight; the ids whose
        record had changed since it was read."""
        if not writes:
            return []
        with ThreadPoolExecutor(min(_RECORDS_IN_FLIGHT, len(writes))) as pool:
            futures = [pool.submit(self._write_record, *w, only_from) for w in writes]
        # (once every call has ended: result() raises the first failure)
        return [w[0] for w, f in zip(writes, futures, strict=True) if not f.result()]

    def _write_record(
        self, entry_id: int, key_hash_: str, text: str, read: str | None, only_from: bool
    ) -> bool:
        """Set the record of the entry's item under its id (which must exist, and hold
        ``read`` as its record when ``only_from``), then copy it to the item under its
        key at the new version. False when the condition failed with ``only_from``
        (the record changed since, or the entry is gone: the next read tells); True
        otherwise (written, or no such entry)."""
        names = {"#o": "o", "#v": "ov", "#pk": "pk"}
        values: dict[str, Any] = {":o": attr_s(text), ":one": attr_n(1)}
        condition = "attribute_exists(#pk)"
        if only_from and read is not None:
            condition += " AND #o = :read"
            values[":read"] = attr_s(read)
        elif only_from:
            condition += " AND attribute_not_exists(#o)"
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": item_key(f"e#{pad_id(entry_id)}", "0"),
            "UpdateExpression": "SET #o = :o ADD #v :one",
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ReturnValues": "UPDATED_NEW",
        }
        try:
            out = self._call(lambda: self._client.update_item(**kwargs))
        except StoreError as exc:
            if not self._is_conditional_failure(exc):
                raise
            return not only_from
        version = get_int(out.get("Attributes", {}), "ov")
        copy: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": item_key(f"k#{key_hash_}", "0"),
            "UpdateExpression": "SET #o = :o, #v = :v",
            "ConditionExpression": "#i = :i AND (attribute_not_exists(#v) OR #v < :v)",
            "ExpressionAttributeNames": {"#o": "o", "#v": "ov", "#i": "i"},
            "ExpressionAttributeValues": {
                ":o": attr_s(text),
                ":v": attr_n(version),
                ":i": attr_n(entry_id),
            },
        }
        try:
            self._call(lambda: self._client.update_item(**copy))
        except StoreError as exc:  # replaced, or a later version is there already
            if not self._is_conditional_failure(exc):
                raise
        return True

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

    @staticmethod
    def _check_log_namespace(namespace: str) -> None:
        if not namespace or len(namespace.encode()) > MAX_NAMESPACE_BYTES:
            raise InvalidNamespaceError(
                f"DynamoDBStore namespaces are 1 to {MAX_NAMESPACE_BYTES} bytes (UTF-8)"
            )

    def _outcome_seq(self, namespace: str, reserve: int) -> int:
        """The namespace's last outcome sequence number, after adding ``reserve`` to it
        (an ``UpdateItem ... ADD``, atomic; 0 reads it without creating the item)."""
        if not reserve:
            item = self._get((OUTCOMES_PK, namespace))
            return 0 if item is None else get_int(item, "n")
        out = self._call(
            lambda: self._client.update_item(
                TableName=self.table_name,
                Key=item_key(OUTCOMES_PK, namespace),
                UpdateExpression="ADD #n :k",
                ExpressionAttributeNames={"#n": "n"},
                ExpressionAttributeValues={":k": attr_n(reserve)},
                ReturnValues="UPDATED_NEW",
            )
        )
        return get_int(out.get("Attributes", {}), "n")

    def add_outcomes(self, namespace: str, rows: Sequence[str], keep: int) -> None:
        """Append ``rows`` to the namespace's outcome log and keep its newest ``keep``
        (see the module docstring and :class:`~semcache._store._base.OutcomeLog`): one
        ``UpdateItem`` reserves the rows' sequence numbers, ``BatchWriteItem`` calls of
        25 write them, one ``GetItem`` and a ``Query`` of keys find the rows beyond the
        newest ``keep``, and ``BatchWriteItem`` calls delete them.

        DynamoDB has no transaction this fits in (and the emulator the tests use none
        at all): a reader may see an add's rows before all of them are written, and a
        call that raises may have kept some of its rows (those it wrote are deleted
        again where DynamoDB still answers). Sequence numbers are never reused, so rows
        are kept in order and each add's together all the same.

        Raises:
            InvalidNamespaceError: ``namespace`` is not a str, is empty or is over 1000
                bytes (UTF-8).
            InvalidInputError: a row that is not printable ASCII text, or a bad ``keep``.
            InputTooLargeError: a row over 4 KiB.
            CacheClosedError: the store is closed.
            StoreUnavailableError: DynamoDB cannot be reached.
            StoreError: another DynamoDB error.
        """
        checked = check_outcomes(namespace, rows, keep)  # before anything is written
        self._check_log_namespace(namespace)
        self._check_open()
        if not checked:
            return
        pk = f"{OUTCOMES_PK}#{namespace}"
        last = self._outcome_seq(namespace, len(checked))
        first = last - len(checked) + 1
        writes: dict[Key, Item | None] = {
            (pk, pad_id(first + j)): {**item_key(pk, pad_id(first + j)), "v": attr_s(row)}
            for j, row in enumerate(checked)
        }
        try:
            self._batch_write(writes, None)
        except StoreError:
            try:  # (best effort: what was written of the add goes again)
                self._batch_write(dict.fromkeys(writes), None)
            except StoreError:
                pass
            raise
        # Trim below the last number as it is now, not as this add reserved it: an add
        # that reserved after this one but trimmed before these rows were written is
        # covered (see the module docstring).
        upto = self._outcome_seq(namespace, 0) - int(keep)
        if upto > 0:
            old = [(pk, sk) for sk in self._query_keys(pk, upper=pad_id(upto))]
            self._batch_write(dict.fromkeys(old), None)

    def read_outcomes(self, namespace: str) -> list[str]:
        """The namespace's outcome log, oldest first (a ``Query`` of its partition, page
        after page of up to 1 MB).

        Raises:
            InvalidNamespaceError: ``namespace`` is not a str.
            CacheClosedError: the store is closed.
            StoreUnavailableError: DynamoDB cannot be reached.
            StoreError: another DynamoDB error.
        """
        if not check_counts_namespace(namespace):
            self._check_open()
            return []
        return [str(get_str(item, "v")) for item in self._query(f"{OUTCOMES_PK}#{namespace}")]

    def _clear_outcomes(self, namespace: str | None) -> None:
        """Delete the outcome log (its rows, then its sequence item) of one namespace, or
        of all."""
        if namespace is None:
            spaces = list(self._query_keys(OUTCOMES_PK))
        else:
            spaces = [namespace] if namespace else []
        for ns in spaces:
            pk = f"{OUTCOMES_PK}#{ns}"
            self._batch_write(dict.fromkeys((pk, sk) for sk in self._query_keys(pk)), None)
            self._batch_write({(OUTCOMES_PK, ns): None}, None)
