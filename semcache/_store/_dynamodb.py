"""A store in one Amazon DynamoDB table, shared by many processes and hosts
(``pip install 'semcache-engine[dynamodb]'``).

Items. The table has a string partition key ``pk`` and a string sort key ``sk``. Entry
ids are zero-padded to 20 digits (``I``); times are kept as exact ``repr`` strings and,
in sort keys, as 16 hex digits that sort like the floats (``T``)::

    pk              sk          what
    #h              -           head: identity, seq, last id, count, log bounds, the
                                writer lock and the journal of the write in progress
    #m              NAME        a setting
    #j              TOKEN#n     a journal too large for the head, in parts
    k#H             0           the entry with key hash H (blake2b-128 of the key): id,
                                key, namespace, texts, vector, times (the exact layer)
    e#I             0           the same entry again, under its id (semantic
                                candidates); an entry over :data:`PART` bytes is split
                                over e#I / 0, 1, ... and k#H then says where it is;
                                k#H / 0 and e#I / 0 hold the error-budget record ``o``
                                and its version ``ov``
    e#I             a           the entry's state: key hash, namespace, last access,
                                expiry, parts
    m#NS            I           a namespace's member: vector, expiry (for the index)
    q               NS          a namespace's error-budget counters (Numbers ``q:NAME``)
    o               NS          a namespace's last outcome-log sequence number ``n``
    o#NS            S           a row ``v`` of a namespace's outcome log, S its sequence
                                number (20 digits)
    r / r#NS        T(a)#I      recency, all / one namespace (least recent first)
    x / x#NS        T(x)#I      expiry, all / one namespace (entries that expire)
    c               NS          a namespace's entry count
    l               seq         a change-log record: op, id, namespace

Writes. DynamoDB's transactions (``TransactWriteItems``) hold at most 100 items and 4 MB,
and the emulator the tests run against (dynalite) has none, so every mutation is
serialized by one conditional write instead: a writer takes the lock in the head item
(``SET lk`` if no one holds it), reads what it needs and plans every item it will write,
stores that plan (the *journal*) in the head under the lock, applies it (idempotent puts
and deletes, in ``BatchWriteItem`` calls), then moves the head forward (sequence number,
last id, counts) and releases the lock in one conditional update. Limits are therefore
exact across processes and hosts: the writer that counts and evicts is the only one.

A writer that dies keeps the lock. Another one that sees the same lock token for
``lock_lease`` seconds (its own monotonic clock, so clocks of other hosts do not matter)
takes the lock over and first applies the dead writer's journal, if it stored one: a
mutation is either wholly applied or not at all (a writer that dies before storing its
journal has written nothing that anything refers to). A live writer stops writing once
``lock_lease / 3`` seconds have passed since it took the lock (raising
:class:`~semcache.StoreUnavailableError`), so a takeover can never race a writer that is
still applying; this holds while one SDK call (with its retries) takes less than
``2 * lock_lease / 3``.

Readers take no lock. The change log's records are written while the journal is applied
but counted (``seq``) only when the head moves, so :meth:`DynamoDBStore.changes_since`
never returns a record before all of its mutation is in place; ``get_by_key`` may see an
entry a moment before the writer returns.

The error budget (``_dynamodb_quality``): a put writes an entry's first record with
the entry's items (in its journal); later ones are written with
conditional ``UpdateItem`` calls outside the lock (an entry deleted or replaced
meanwhile stays so) on both items that hold the entry, so ``get_by_ids`` and
``get_by_key`` return it: the item under the id first (``update_records``: only if
its record is still the one read), then the item under the key, at a version that only
rises. A journal rolled forward by another writer puts those two items only where no
record was written on them since (one conditional ``PutItem`` each), so a record written
on the items of a half-applied put is kept. Counters are ``ADD``-ed to one item per
namespace, atomically. An outcome log's add reserves its rows' sequence numbers with one
``ADD``, writes its rows, then deletes those beyond the newest ``keep``; none of it
takes the writer lock. ``clear`` deletes a namespace's counters and log (or all).

Expiry. DynamoDB's own TTL deletes items in the background, days late and without the
change log or the counts, so entries carry no TTL attribute: ``expires_at`` is checked
on every read (by the cache), and expired entries are removed by ``vacuum()`` and by
eviction, expired ones first, as in the other stores.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from itertools import islice
from typing import Any

from .._checks import check_flag, check_int, check_seconds, show
from .._errors import (
    ConfigurationError,
    InvalidNamespaceError,
    StoreError,
    StoreUnavailableError,
)
from ._base import (
    Change,
    Limits,
    NewEntry,
    NoLocalFile,
    PutResult,
    StoredEntry,
    VectorBatch,
    claim_settings,
)
from ._dynamodb_codec import (
    DELETE_CHUNK,
    MAX_NAMESPACE_BYTES,
    PUT_CHUNK,
    TABLE_NAME,
    Item,
    Key,
    attr_s,
    get_bytes,
    get_int,
    get_str,
    import_boto3,
    key_hash,
    pad_id,
    sortable,
    unpack_parts,
)
from ._dynamodb_lock import LockedTable
from ._dynamodb_plan import Plan
from ._dynamodb_quality import DynamoQuality
from ._quality_checks import check_new_records

__all__ = ["DynamoDBStore"]


class DynamoDBStore(LockedTable, DynamoQuality, NoLocalFile):
    """A :class:`~semcache.Store` in one DynamoDB table, shared by processes and hosts.

    Use it with ``SemanticCache(store=DynamoDBStore(...), multi_process_mode="shared")``:
    each process keeps its own index and catches up from the change log, while
    ``max_entries`` and namespace quotas are enforced by the one writer that holds the
    table's lock (see the module docstring for the items and the write protocol).

    Reads are strongly consistent ``GetItem`` / ``BatchGetItem`` / ``Query`` calls: an
    exact-layer lookup is one ``GetItem`` (the entry is kept under its key), semantic
    candidates one ``BatchGetItem`` (and under its id). A write takes five round trips
    or so, more when it evicts. Entries larger than 300 KB (texts, metadata and vector)
    are split over several items.

    Throttling and connection errors are retried by botocore (``retries`` with
    ``mode="standard"``); when the retries run out they raise
    :class:`~semcache.StoreUnavailableError` (the cache counts a miss on get), and a
    write that failed half-way is completed by the next writer from its journal.

    Args:
        table_name: the table (partition key ``pk``, sort key ``sk``, both strings).
        client: a ``boto3`` DynamoDB client; else one is made from ``region``,
            ``endpoint_url`` and the usual AWS configuration (environment, profile).
        region: the AWS region of the client this store makes.
        endpoint_url: another endpoint (DynamoDB Local, dynalite, a VPC endpoint).
        create: create the table (on-demand billing) when it does not exist.
        max_changes: change-log records kept for :meth:`changes_since`.
        lock_lease: seconds after which a writer that holds the lock without moving is
            presumed dead and its lock taken over (see the module docstring).
        connect_timeout: seconds to connect (client made here).
        read_timeout: seconds a call may take (client made here).
        max_attempts: attempts per call, retries included (client made here).

    Raises:
        MissingDependencyError: boto3 is not installed.
        ConfigurationError: an invalid option, a missing table without ``create``, or
            a table with another key schema.
        StoreUnavailableError: DynamoDB cannot be reached.
        StoreError: another DynamoDB error.
    """

    persistent = True

    def __init__(
        self,
        table_name: str,
        *,
        client: Any = None,
        region: str | None = None,
        endpoint_url: str | None = None,
        create: bool = False,
        max_changes: int = 100_000,
        lock_lease: float = 60.0,
        connect_timeout: float = 2.0,
        read_timeout: float = 5.0,
        max_attempts: int = 3,
    ) -> None:
        boto3 = import_boto3()
        import botocore.exceptions

        self._botocore_errors = botocore.exceptions
        if not isinstance(table_name, str) or not TABLE_NAME.fullmatch(table_name):
            raise ConfigurationError(
                "table_name must be 3 to 255 letters, digits, '_', '-' or '.', got "
                f"{show(table_name)}"
            )
        for name, value in (("region", region), ("endpoint_url", endpoint_url)):
            if value is not None and not isinstance(value, str):
                raise ConfigurationError(f"{name} must be a str or None, got {show(value)}")
        check_flag(create, "create", ConfigurationError)
        max_changes = check_int(max_changes, "max_changes", 0)
        lock_lease = check_seconds(lock_lease, "lock_lease")
        connect_timeout = check_seconds(connect_timeout, "connect_timeout")
        read_timeout = check_seconds(read_timeout, "read_timeout")
        max_attempts = check_int(max_attempts, "max_attempts", 1, 100)
        self.table_name = table_name
        self._max_changes = int(max_changes)
        self._lease = float(lock_lease)
        self._closed = False
        self._owns_client = client is None
        if client is None:
            from botocore.config import Config

            config = Config(
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                retries={"total_max_attempts": int(max_attempts), "mode": "standard"},
                max_pool_connections=32,
            )
            client = boto3.session.Session().client(
                "dynamodb", region_name=region, endpoint_url=endpoint_url, config=config
            )
        self._client = client
        self._wlock = threading.Lock()  # one writer per process at a time
        self._dead_tokens: set[str] = set()  # our locks left behind by a failed write
        try:
            self._open_table(create)
            if self._head() is None:  # a new table: its head, with a new identity
                self._init_head()
        except BaseException:
            self._release_client()
            raise

    # -- settings ---------------------------------------------------------------------
    def get_meta(self, name: str) -> str | None:
        item = self._get(("#m", name)) if name else None
        self._check_open()
        return None if item is None else get_str(item, "v")

    def set_meta(self, values: Mapping[str, str]) -> None:
        self._check_open()
        if not values:
            return

        def plan(p: Plan) -> None:
            for name, value in values.items():
                p.put(("#m", str(name)), {"v": attr_s(str(value))})

        self._mutate(plan)

    # -- reads ------------------------------------------------------------------------
    @staticmethod
    def _fields(item: Item, parts: Sequence[Item]) -> tuple[str, str, str | None, bytes | None]:
        """``(query, response, metadata, vector)`` of an entry's item (or, for a split
        entry, of its parts)."""
        if "np" in item:
            q, r, m, v = unpack_parts(b"".join(bytes(p["b"]["B"]) for p in parts), 4)
            return (q or b"").decode(), (r or b"").decode(), None if m is None else m.decode(), v
        return str(item["q"]["S"]), str(item["r"]["S"]), get_str(item, "m"), get_bytes(item, "v")

    def _entry(self, item: Item, *, vectors: bool = False) -> StoredEntry:
        query, response, metadata, vector = self._fields(item, self._parts(item))
        x = get_str(item, "x")
        return StoredEntry(
            get_int(item, "i"),
            bytes(item["k"]["B"]),
            str(item["n"]["S"]),
            query,
            response,
            metadata,
            float(str(get_str(item, "c"))),
            None if x is None else float(x),
            vector if vectors else None,
            get_str(item, "o"),
        )

    def _parts(self, item: Item) -> list[Item]:
        """All parts of a split entry, in order (none for an entry in one item)."""
        if "np" not in item:
            return []
        parts, entry_id = get_int(item, "np"), get_int(item, "i")
        # Parts carry the entry's id: a read that met a part of anything else (or not
        # all of them: the entry was deleted meanwhile) is noticed, never served.
        found = [
            p
            for p in self._query(f"e#{pad_id(entry_id)}")
            if p["sk"]["S"].isdigit() and int(p["sk"]["S"]) < parts and get_int(p, "i") == entry_id
        ]
        found.sort(key=lambda p: int(p["sk"]["S"]))
        if len(found) != parts:
            raise StoreUnavailableError("the entry changed while it was read; try again")
        return found

    def get_by_key(self, key: bytes) -> StoredEntry | None:
        item = self._get((f"k#{key_hash(key)}", "0"))
        if item is None or bytes(item["k"]["B"]) != bytes(key):
            return None
        return self._entry(item)

    def _contents(self, ids: Sequence[int]) -> dict[int, Item]:
        """The entries' items under their ids (one BatchGetItem per 100 ids)."""
        wanted = list(dict.fromkeys(int(i) for i in ids if int(i) > 0))
        self._check_open()
        got = self._batch_get([(f"e#{pad_id(i)}", "0") for i in wanted])
        return {get_int(item, "i"): item for item in got.values() if item is not None}

    def _records_of(self, ids: Sequence[int]) -> dict[int, tuple[str, float, str | None, str]]:
        out = {}
        for i, item in self._contents(ids).items():
            e = self._entry(item)
            out[i] = (e.response, e.created_at, e.record, key_hash(e.key))
        return out

    def get_by_ids(self, ids: Sequence[int], *, vectors: bool = False) -> dict[int, StoredEntry]:
        return {i: self._entry(item, vectors=vectors) for i, item in self._contents(ids).items()}

    def get_vectors(self, ids: Sequence[int]) -> dict[int, tuple[str, bytes]]:
        out: dict[int, tuple[str, bytes]] = {}
        for i, item in self._contents(ids).items():
            vector = self._fields(item, self._parts(item))[3]
            if vector is not None:
                out[i] = (str(item["n"]["S"]), vector)
        return out

    def count(self, namespace: str | None = None) -> int:
        if namespace is None:
            head = self._head()
            return 0 if head is None else get_int(head, "cnt")
        if not namespace:
            self._check_open()
            return 0
        item = self._get(("c", namespace))
        return 0 if item is None else get_int(item, "n")

    def namespace_counts(self) -> dict[str, int]:
        counts = {str(i["sk"]["S"]): get_int(i, "n") for i in self._query("c")}
        return {ns: counts[ns] for ns in sorted(counts) if counts[ns] > 0}

    def iter_vectors(
        self, *, now: float | None = None, batch_size: int = 65536
    ) -> Iterator[VectorBatch]:
        for ns in self.namespace_counts():
            ids: list[int] = []
            vectors: list[bytes] = []
            for item in self._query(f"m#{ns}"):
                vector = get_bytes(item, "v")
                if vector is None:
                    continue
                x = get_str(item, "x")
                if now is not None and x is not None and float(x) <= now:
                    continue
                ids.append(int(item["sk"]["S"]))
                vectors.append(vector)
                if len(ids) >= batch_size:
                    yield VectorBatch(ns, ids, vectors)
                    ids, vectors = [], []
            if ids:
                yield VectorBatch(ns, ids, vectors)

    # -- writes -----------------------------------------------------------------------
    @staticmethod
    def _check_namespace(namespace: str) -> None:
        if not namespace or len(namespace.encode()) > MAX_NAMESPACE_BYTES:
            raise InvalidNamespaceError(
                f"DynamoDBStore namespaces are 1 to {MAX_NAMESPACE_BYTES} bytes (UTF-8)"
            )

    @staticmethod
    def _claim(p: Plan, meta: Mapping[str, str]) -> dict[str, str]:
        """:func:`claim_settings` against the settings as the plan reads them (under the
        writer lock)."""
        keys = [("#m", str(name)) for name in meta]
        p.prefetch(keys)
        held = {}
        for key in keys:
            item = p.get(key)
            held[key[1]] = None if item is None else get_str(item, "v")
        return claim_settings(meta, held)

    def put_many(
        self,
        entries: Sequence[NewEntry],
        *,
        now: float,
        limits: Limits | None = None,
        touches: Mapping[int, float] | None = None,
        meta: Mapping[str, str] | None = None,
    ) -> PutResult:
        self._check_open()
        for e in entries:
            self._check_namespace(e.namespace)
        check_new_records(entries)  # before anything is written
        result = PutResult()
        expired_all: list[tuple[int, str]] = []
        lru_all: list[tuple[int, str]] = []
        chunks = [entries[lo : lo + PUT_CHUNK] for lo in range(0, len(entries), PUT_CHUNK)]
        for n, chunk in enumerate(chunks or [[]]):

            def plan(p: Plan, chunk: Sequence[NewEntry] = chunk, first: bool = n == 0) -> None:
                if first:
                    settings = self._claim(p, meta) if meta else {}  # before any write
                    touched = [(int(i), float(t)) for i, t in (touches or {}).items() if int(i) > 0]
                    p.prefetch([(f"e#{pad_id(i)}", "a") for i, _ in touched])
                    for i, t in touched:
                        p.touch(i, t)
                    for name, value in settings.items():
                        p.put(("#m", str(name)), {"v": attr_s(str(value))})
                # One read for the keys' current entries and the namespace's count.
                counts = [("c", chunk[0].namespace)] if chunk else []
                keys: list[Key] = [(f"k#{key_hash(e.key)}", "0") for e in chunk]
                p.prefetch([*keys, *counts])
                olds = [p.get((f"k#{key_hash(e.key)}", "0")) for e in chunk]
                p.prefetch([(f"e#{pad_id(get_int(o, 'i'))}", "a") for o in olds if o is not None])
                for e in chunk:
                    entry_id, replaced = p.insert(e)
                    result.ids.append(entry_id)
                    if replaced is not None:
                        result.replaced.append(replaced)
                if chunk and limits is not None:
                    ns = chunk[0].namespace
                    if limits.namespace_quota is not None:
                        exp, lru = p.evict(
                            f"r#{ns}", f"x#{ns}", p.count(ns), limits.namespace_quota, now
                        )
                        expired_all.extend(exp)
                        lru_all.extend(lru)
                    if limits.max_entries is not None:
                        exp, lru = p.evict("r", "x", p.total, limits.max_entries, now)
                        expired_all.extend(exp)
                        lru_all.extend(lru)

            self._mutate(plan)
        result.evicted = expired_all + lru_all
        result.expired_evicted = len(expired_all)
        return result

    def _delete_ids_mutation(self, ids: Sequence[int]) -> list[tuple[int, str]]:
        out: list[tuple[int, str]] = []

        def plan(p: Plan) -> None:
            p.prefetch([(f"e#{pad_id(i)}", "a") for i in ids])
            states = [p.state(i) for i in ids]
            p.prefetch([(f"k#{get_str(s, 'h')}", "0") for s in states if s is not None])
            for i in ids:
                ns = p.remove(i)
                if ns is not None:
                    out.append((i, ns))

        self._mutate(plan)
        return out

    def delete_by_key(self, key: bytes) -> tuple[int, str] | None:
        out: list[tuple[int, str]] = []
        h = key_hash(key)

        def plan(p: Plan) -> None:
            item = p.get((f"k#{h}", "0"))
            if item is None or bytes(item["k"]["B"]) != bytes(key):
                return
            entry_id = get_int(item, "i")
            ns = p.remove(entry_id)
            if ns is not None:
                out.append((entry_id, ns))

        self._mutate(plan)
        return out[0] if out else None

    def delete_ids(self, ids: Sequence[int]) -> list[tuple[int, str]]:
        self._check_open()
        wanted = list(dict.fromkeys(int(i) for i in ids if int(i) > 0))
        out: list[tuple[int, str]] = []
        for lo in range(0, len(wanted), DELETE_CHUNK):
            out += self._delete_ids_mutation(wanted[lo : lo + DELETE_CHUNK])
        return out

    def delete_expired(self, now: float, namespace: str | None = None) -> list[tuple[int, str]]:
        self._check_open()
        pk = "x" if namespace is None else f"x#{namespace}"
        upper = sortable(now) + "#~"
        out: list[tuple[int, str]] = []
        while True:
            rows = self._query(pk, upper=upper, projection=(), limit=DELETE_CHUNK)
            ids = [int(str(i["sk"]["S"]).rpartition("#")[2]) for i in islice(rows, DELETE_CHUNK)]
            if not ids:
                return out
            out += self._delete_ids_mutation(ids)

    def clear(self, namespace: str | None = None) -> int:
        self._check_open()
        spaces = list(self.namespace_counts()) if namespace is None else [namespace]
        n = 0
        for ns in spaces:
            if not ns:
                continue
            while True:
                rows = self._query(f"m#{ns}", projection=(), limit=DELETE_CHUNK)
                ids = [int(i["sk"]["S"]) for i in islice(rows, DELETE_CHUNK)]
                if not ids:
                    break
                n += len(self._delete_ids_mutation(ids))
        self._clear_counts(namespace)  # the error budget's counters and log go too
        self._clear_outcomes(namespace)
        return n

    def touch(self, access: Mapping[int, float]) -> None:
        self._check_open()
        items = [(int(i), float(t)) for i, t in access.items() if int(i) > 0]
        for lo in range(0, len(items), DELETE_CHUNK):
            chunk = items[lo : lo + DELETE_CHUNK]

            def plan(p: Plan, chunk: list[tuple[int, float]] = chunk) -> None:
                p.prefetch([(f"e#{pad_id(i)}", "a") for i, _ in chunk])
                for i, t in chunk:
                    p.touch(i, t)

            self._mutate(plan)

    # -- change log -------------------------------------------------------------------
    def seq(self) -> int:
        head = self._head()
        return 0 if head is None else get_int(head, "seq")

    def identity(self) -> str:
        """This store's identity: a random token made with the table's head item; a
        table that was emptied or recreated has another one.

        Raises:
            StoreUnavailableError: DynamoDB cannot be reached.
        """
        head = self._head() or self._init_head()
        return str(get_str(head, "gen"))

    def changes_since(self, seq: int, identity: str | None = None) -> list[Change] | None:
        head = self._head()
        if head is None:  # the table was emptied: a new identity on the next write
            return None if seq > 0 or identity is not None else []
        if identity is not None and get_str(head, "gen") != identity:
            return None
        last, low = get_int(head, "seq"), get_int(head, "low", 1)
        if seq > last:  # the store went backwards (a restore from an older backup)
            return None
        if seq == last:
            return []
        if seq + 1 < low:
            return None
        out = [
            Change(
                int(item["sk"]["S"]),
                "put" if item["o"]["S"] == "p" else "delete",
                get_int(item, "i"),
                str(item["n"]["S"]),
            )
            for item in self._query("l", after=pad_id(seq), upper=pad_id(last))
        ]
        if [c.seq for c in out] != list(range(seq + 1, last + 1)):
            return None  # pruned while we read
        return out

    def prune_changes(self, keep_last: int) -> int:
        lows: list[int] = []

        def plan(p: Plan) -> Plan:
            lows.append(p.low)
            p.trim_log(max(0, int(keep_last)))
            return p

        p = self._mutate(plan)
        return p.low - lows[0]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._release_client()

    def _release_client(self) -> None:
        if self._owns_client:
            try:
                self._client.close()
            except Exception:  # closing a broken connection must not raise
                pass

    # -- maintenance ------------------------------------------------------------------
    def drop(self) -> None:
        """Delete the table (every entry, setting and change record), wait until it is
        gone, and close the store.

        Raises:
            StoreUnavailableError: DynamoDB cannot be reached, or the table was still
                being deleted after 120 s.
        """
        gone = False
        deadline = time.monotonic() + 120
        while not gone:
            try:
                self._call(lambda: self._client.delete_table(TableName=self.table_name))
                time.sleep(0.01)
            except StoreError as exc:
                cause = exc.__cause__
                code = ""
                if isinstance(cause, self._botocore_errors.ClientError):
                    code = cause.response.get("Error", {}).get("Code", "")
                if code == "ResourceNotFoundException":
                    gone = True
                elif code == "ResourceInUseException":  # being deleted
                    if time.monotonic() > deadline:
                        raise StoreUnavailableError(
                            f"table {self.table_name!r} is still being deleted after 120 s"
                        ) from exc
                    time.sleep(0.05)
                else:
                    raise
        self.close()
