"""The checks every shipped store (Memory, SQLite, Redis, PostgreSQL, DynamoDB) makes on
the error budget's state before it writes any of it: entries' records (``write_records``, and
those a put stores with its entries, ``check_new_records``) and a namespace's counters
(``add_counts``) and its outcome log (``add_outcomes``). See ``docs/stores.md`` ("The error budget's
state")."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from .._checks import show
from .._errors import InputTooLargeError, InvalidInputError, InvalidNamespaceError

if TYPE_CHECKING:
    from ._base import NewEntry

__all__ = [
    "MAX_COUNTER_NAME",
    "MAX_OUTCOMES",
    "MAX_OUTCOME_BYTES",
    "MAX_RECORD_BYTES",
    "check_counts",
    "check_counts_namespace",
    "check_new_records",
    "check_outcomes",
    "check_records",
    "record_ids",
]

#: The largest record accepted (an EntryRecord is about 300 bytes).
MAX_RECORD_BYTES: Final = 16_384
#: The longest counter name accepted (names are short ASCII such as ``n/2/17``).
MAX_COUNTER_NAME: Final = 64
#: The longest outcome row accepted (a risk model's row is about 400 bytes).
MAX_OUTCOME_BYTES: Final = 4096
#: The most rows a namespace's outcome log may be asked to keep.
MAX_OUTCOMES: Final = 100_000


def check_records(records: Mapping[int, str]) -> list[tuple[int, str]]:
    """``records`` as ``(id, text)`` pairs in ascending id, checked; ids no entry can
    have (below 1 or beyond a signed 64-bit int) left out.

    Raises:
        InvalidInputError: an id that is not an int, a record that is not a str (or
            cannot be encoded as UTF-8).
        InputTooLargeError: a record over :data:`MAX_RECORD_BYTES` bytes (UTF-8).
    """
    out: list[tuple[int, str]] = []
    raw: Mapping[Any, Any] = records  # checked here: anything may come in
    for entry_id, text in raw.items():
        if isinstance(entry_id, bool) or not isinstance(entry_id, numbers.Integral):
            raise InvalidInputError(f"a record's entry id must be an int, got {show(entry_id)}")
        _check_record(text, f"entry {entry_id}'s record")
        if 0 < int(entry_id) < 2**63:
            out.append((int(entry_id), text))
    out.sort()
    return out


def record_ids(ids: Iterable[int]) -> list[int]:
    """The distinct ids of ``ids`` an entry can have (1 to a signed 64-bit int), in
    ascending order: what ``update_records`` reads and locks, in that order."""
    return sorted({int(i) for i in ids if 0 < int(i) < 2**63})


def check_new_records(entries: Sequence[NewEntry]) -> None:
    """Check the records a put stores with its entries (``NewEntry.record``; None: none)
    by the rules of :func:`check_records`.

    Raises:
        InvalidInputError: a record that is not a str (or cannot be encoded as UTF-8).
        InputTooLargeError: a record over :data:`MAX_RECORD_BYTES` bytes (UTF-8).
    """
    for e in entries:
        if e.record is not None:
            _check_record(e.record, "a new entry's record")


def _check_record(text: object, what: str) -> None:
    if not isinstance(text, str):
        raise InvalidInputError(f"a record must be a str, got {show(text)}")
    try:
        size = len(text.encode())
    except UnicodeEncodeError as exc:
        raise InvalidInputError(f"{what} is not valid text: {exc}") from None
    if size > MAX_RECORD_BYTES:
        raise InputTooLargeError(what, size, MAX_RECORD_BYTES)


def check_counts_namespace(namespace: object) -> str:
    """``namespace``, a str.

    Raises:
        InvalidNamespaceError: it is not a str.
    """
    if not isinstance(namespace, str):
        raise InvalidNamespaceError(f"namespace must be a str, got {show(namespace)}")
    return namespace


def check_counts(namespace: str, deltas: Mapping[str, float]) -> list[tuple[str, float]]:
    """``deltas`` as ``(name, delta)`` pairs in name order (the order every store locks
    or writes them in), zero deltas left out, checked.

    Raises:
        InvalidNamespaceError: ``namespace`` is not a str.
        InvalidInputError: a name that is not a non-empty printable ASCII str of at most
            :data:`MAX_COUNTER_NAME` characters, a delta that is not a finite number.
    """
    check_counts_namespace(namespace)
    out: list[tuple[str, float]] = []
    raw: Mapping[Any, Any] = deltas  # checked here: anything may come in
    for name, delta in raw.items():
        if (
            not isinstance(name, str)
            or not 0 < len(name) <= MAX_COUNTER_NAME
            or not (name.isascii() and name.isprintable())
        ):
            raise InvalidInputError(
                f"a counter name is 1 to {MAX_COUNTER_NAME} printable ASCII characters, "
                f"got {show(name)}"
            )
        if isinstance(delta, bool) or not isinstance(delta, numbers.Real):
            raise InvalidInputError(
                f"counter {name!r}: a delta must be a number, got {show(delta)}"
            )
        try:
            value = float(delta)
        except OverflowError:
            value = math.inf
        if not math.isfinite(value):
            raise InvalidInputError(f"counter {name!r}: a delta must be finite, got {value}")
        if value != 0.0:
            out.append((name, value))
    out.sort()
    return out


def check_outcomes(namespace: str, rows: Sequence[str], keep: int) -> list[str]:
    """``rows`` as a list, checked with ``namespace`` and ``keep`` (``add_outcomes``).

    Raises:
        InvalidNamespaceError: ``namespace`` is not a str.
        InvalidInputError: ``rows`` not a sequence of printable ASCII str, or ``keep``
            not an int in 1 to :data:`MAX_OUTCOMES`.
        InputTooLargeError: a row over :data:`MAX_OUTCOME_BYTES` bytes.
    """
    check_counts_namespace(namespace)
    raw: Any = keep  # checked here: anything may come in
    if (
        isinstance(raw, bool)
        or not isinstance(raw, numbers.Integral)
        or not 1 <= int(raw) <= MAX_OUTCOMES
    ):
        raise InvalidInputError(f"keep must be an int in 1 to {MAX_OUTCOMES}, got {show(raw)}")
    given: Any = rows
    if isinstance(given, (str, bytes)) or not isinstance(given, Sequence):
        raise InvalidInputError(f"rows must be a sequence of str, got {show(given)}")
    out: list[str] = []
    for row in given:
        if not isinstance(row, str) or not (row.isascii() and row.isprintable()):
            raise InvalidInputError(f"an outcome row is printable ASCII text, got {show(row)}")
        if len(row) > MAX_OUTCOME_BYTES:
            raise InputTooLargeError("an outcome row", len(row), MAX_OUTCOME_BYTES)
        out.append(row)
    return out
