"""A store in Redis, shared by many processes and hosts (``pip install 'semcache-engine[redis]'``).

Layout, every key under ``prefix`` (``P``); entry ids are zero-padded to 16 digits
(``I``) so that sorted-set members tie-break by id when scores are equal::

    P meta              hash   setting -> value (store_id: the store's identity)
    P id                string last entry id (INCR: ids increase, never reused)
    P seq               string last change sequence number (INCR)
    P log               stream change log, stream id "<seq>-0", fields op, id, ns
    P k                 hash   exact-layer key -> I
    P e:I               hash   the entry: k n q r [m] [v] c [x] [o]
    P ns                hash   namespace -> entry count
    P lru / P lru:NS    zset   I scored by last_access (global / one namespace)
    P exp / P exp:NS    zset   I scored by expires_at (entries that expire)
    P qc                set    namespaces that have error-budget counters
    P qc:NS             hash   a namespace's error-budget counters: name -> float
    P ql                set    namespaces that have an error-budget outcome log
    P ql:NS             list   a namespace's outcome log: rows, oldest first

An entry's error-budget record (``o``, JSON text) lives in its hash, so it goes with
the entry (delete, eviction, clear); a put writes it into the new hash in its own
script (none: the hash has no ``o``); :meth:`RedisStore.write_records` sets it only on
hashes that exist (a script), and touches nothing else. Counters are only ever added to
(``HINCRBYFLOAT``), so processes never lose each other's updates. An outcome log is
appended to and trimmed to its newest rows in one script (``RPUSH``, ``LTRIM``), so
each add's rows stay together and in order whatever other processes add meanwhile.

Every mutation is one Lua script, so Redis runs it as a unit: no other client sees an
entry half-written, and the change log, the counts and the recency sets move with the
entries (scripts validate their input before they write, so an error cannot stop one
half-way). With AOF persistence Redis logs a script's effects as one MULTI/EXEC block,
which a crash cannot split either. Entries carry no Redis expiry (``EXPIRE``): a key
that vanished by itself would leave its id in the sets and counts and log no delete, so
expired entries are removed by :meth:`RedisStore.delete_expired` (``cache.vacuum()``)
and by eviction, expired ones first, exactly as the other stores do.

The scripts touch keys they do not declare, which standalone Redis (and Sentinel)
allows; Redis Cluster does not, so use one primary per cache.

These are all the keys of a store (:meth:`RedisStore.drop` deletes exactly them), so
prefixes may nest (``app:`` and ``app:v2:``) unless one is another followed by
``lru:``, ``exp:``, ``e:``, ``qc:`` or ``ql:``, whose keys would be the other's.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final, TypeVar

from .._checks import check_int, check_seconds, show
from .._dist import install_hint
from .._errors import (
    CacheClosedError,
    ConfigurationError,
    MissingDependencyError,
    StoreError,
    StoreUnavailableError,
)
from . import _redis_lua as lua
from ._base import (
    AnswerBatch,
    Change,
    Limits,
    NewEntry,
    NoLocalFile,
    PutResult,
    RecordChange,
    StoredEntry,
    VectorBatch,
    claim_settings,
)
from ._quality_checks import (
    check_counts,
    check_counts_namespace,
    check_new_records,
    check_outcomes,
    check_records,
    record_ids,
)

__all__ = ["RedisStore"]

_T = TypeVar("_T")
_CHUNK: Final = 1000  # commands per pipeline round trip

#: Keys a store has once, after its prefix (see the module docstring).
_FIXED_KEYS: Final = (
    b"meta",
    b"id",
    b"seq",
    b"log",
    b"k",
    b"ns",
    b"lru",
    b"exp",
    b"qc",
    b"ql",
)

_ENTRY_FIELDS: Final = ("k", "n", "q", "r", "m", "c", "x", "o")
_ENTRY_FIELDS_V: Final = (*_ENTRY_FIELDS, "v")


def _import_redis() -> Any:
    try:
        import redis
    except ImportError as exc:
        raise MissingDependencyError(f"RedisStore needs redis-py: {install_hint('redis')}") from exc
    return redis


def _member(entry_id: int) -> str:
    return f"{int(entry_id):016d}"


def _float_arg(value: float) -> str:
    # repr round-trips a float exactly (Lua's tostring would keep 14 digits only).
    return repr(float(value))


class RedisStore(NoLocalFile):
    """A :class:`~semcache.Store` in a Redis server, shared by processes and hosts.

    Every mutation is one atomic Lua script (see the module docstring for the key
    layout); reads are single commands, a pipeline, or a read-only script where they
    must see one instant. Use it with ``SemanticCache(store=RedisStore(url),
    multi_process_mode="shared")``: each process keeps its own index and catches up
    from the change log, while ``max_entries`` and namespace quotas are enforced inside
    the scripts, so they hold across every process and host.

    Connection loss and timeouts raise :class:`~semcache.StoreUnavailableError`;
    redis-py reconnects on the next call, and nothing the server acknowledged is lost.
    The store owns (and closes) a client it created from ``url``, never one passed in.

    Args:
        url: a ``redis://`` or ``rediss://`` URL (or pass ``client``).
        client: an existing ``redis.Redis`` made with ``decode_responses=False``.
        prefix: the prefix of every key this store uses; caches with different
            prefixes share a server without seeing each other (a prefix may start with
            another, but not with another followed by ``lru:``, ``exp:``, ``e:``,
            ``qc:`` or ``ql:``).
        max_changes: change-log records kept for :meth:`changes_since`.
        socket_timeout: seconds a command may take before it fails (with ``url``).
        connect_timeout: seconds to connect (with ``url``).

    Raises:
        MissingDependencyError: redis-py is not installed.
        ConfigurationError: neither or both of ``url`` and ``client``, an empty prefix,
            or a client that decodes responses; a bad argument (``max_changes`` not an
            int >= 0, a timeout not finite seconds > 0), named in the message.
        StoreUnavailableError: the server cannot be reached.
    """

    persistent = True

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        prefix: str = "semcache:",
        max_changes: int = 100_000,
        socket_timeout: float = 5.0,
        connect_timeout: float = 2.0,
    ) -> None:
        redis = _import_redis()
        self._redis = redis
        if (url is None) == (client is None):
            raise ConfigurationError("RedisStore needs exactly one of url and client")
        if url is not None and not isinstance(url, str):
            raise ConfigurationError(f"url must be a str, got {show(url)}")
        if not isinstance(prefix, str) or not prefix:
            raise ConfigurationError(
                f"RedisStore prefix must be a non-empty str, got {show(prefix)}"
            )
        max_changes = check_int(max_changes, "max_changes", 0)
        socket_timeout = check_seconds(socket_timeout, "socket_timeout")
        connect_timeout = check_seconds(connect_timeout, "connect_timeout")
        self.prefix = prefix
        self._p = prefix.encode()
        self._max_changes = int(max_changes)
        self._owns_client = client is None
        if client is None:
            from redis.backoff import ExponentialBackoff
            from redis.retry import Retry

            # Retry a dropped connection (reconnect), never a timeout: a script that ran
            # but answered late must not run twice.
            client = redis.Redis.from_url(
                url,
                socket_timeout=socket_timeout,
                socket_connect_timeout=connect_timeout,
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2, (redis.ConnectionError,)),
                health_check_interval=30,
            )
        elif client.connection_pool.connection_kwargs.get("decode_responses"):
            raise ConfigurationError("RedisStore needs a client made with decode_responses=False")
        self._client = client
        self._lock = threading.Lock()
        self._closed = False
        self._put = client.register_script(lua.PUT)
        self._delete = client.register_script(lua.DELETE)
        self._delete_expired = client.register_script(lua.DELETE_EXPIRED)
        self._clear = client.register_script(lua.CLEAR)
        self._touch = client.register_script(lua.TOUCH)
        self._prune = client.register_script(lua.PRUNE)
        self._get_key = client.register_script(lua.GET_BY_KEY)
        self._changes = client.register_script(lua.CHANGES)
        self._identity = client.register_script(lua.IDENTITY)
        self._write_records = client.register_script(lua.WRITE_RECORDS)
        self._add_counts = client.register_script(lua.ADD_COUNTS)
        self._add_outcomes = client.register_script(lua.ADD_OUTCOMES)
        try:
            self._call(client.ping)
        except BaseException:
            self._release()
            raise

    # -- plumbing ---------------------------------------------------------------------
    def _call(self, fn: Callable[[], _T]) -> _T:
        """Run one Redis call, translating redis-py's errors at the boundary."""
        if self._closed:
            raise CacheClosedError("store is closed")
        redis = self._redis
        try:
            return fn()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreUnavailableError(f"Redis is unreachable: {exc}") from exc
        except redis.RedisError as exc:
            raise StoreError(f"Redis failed: {exc}") from exc

    def _check_open(self) -> None:
        if self._closed:
            raise CacheClosedError("store is closed")

    def _args(self) -> list[Any]:
        return [self._p, self._max_changes]

    def _hmget_many(
        self, ids: Sequence[int], fields: Sequence[str], exists: str = ""
    ) -> list[list[Any]]:
        """``HMGET`` of ``fields`` of each entry, in pipelines of :data:`_CHUNK`; with
        ``exists``, each row ends with ``HEXISTS`` of that field (1 or 0)."""
        self._check_open()
        p = self._p + b"e:"
        out: list[list[Any]] = []
        for lo in range(0, len(ids), _CHUNK):
            chunk = ids[lo : lo + _CHUNK]

            def run(chunk: Sequence[int] = chunk) -> list[list[Any]]:
                pipe = self._client.pipeline(transaction=False)
                for entry_id in chunk:
                    key = p + _member(entry_id).encode()
                    pipe.hmget(key, fields)
                    if exists:
                        pipe.hexists(key, exists)
                got = list(pipe.execute())
                if not exists:
                    return got
                return [[*got[j], got[j + 1]] for j in range(0, len(got), 2)]

            out.extend(self._call(run))
        return out

    def _zrange_all(self, name: bytes) -> list[bytes]:
        return list(self._call(lambda: self._client.zrange(name, 0, -1)))

    @staticmethod
    def _pairs(rows: Sequence[Sequence[Any]]) -> list[tuple[int, str]]:
        return [(int(i), bytes(ns).decode()) for i, ns in rows]

    @staticmethod
    def _entry(entry_id: int, f: Sequence[Any]) -> StoredEntry:
        # HMGET of _ENTRY_FIELDS (or _ENTRY_FIELDS_V): k, n, q, r and c are always set;
        # m, x, o and v may be None.
        k, n, q, r, m, c, x, o = f[:8]
        return StoredEntry(
            entry_id,
            bytes(k),
            n.decode(),
            q.decode(),
            r.decode(),
            None if m is None else m.decode(),
            float(c),
            None if x is None else float(x),
            None if len(f) < 9 or f[8] is None else bytes(f[8]),
            None if o is None else o.decode(),
        )

    # -- settings ---------------------------------------------------------------------
    def get_meta(self, name: str) -> str | None:
        value = self._call(lambda: self._client.hget(self._p + b"meta", name))
        return None if value is None else bytes(value).decode()

    def set_meta(self, values: Mapping[str, str]) -> None:
        if not values:
            self._call(lambda: None)
            return
        self._call(lambda: self._client.hset(self._p + b"meta", mapping=dict(values)))

    # -- reads ------------------------------------------------------------------------
    def get_by_key(self, key: bytes) -> StoredEntry | None:
        got = self._call(lambda: self._get_key(args=[self._p, key]))
        if not got:
            return None
        return self._entry(int(got[0]), got[1:])

    def get_by_ids(self, ids: Sequence[int], *, vectors: bool = False) -> dict[int, StoredEntry]:
        wanted = list(dict.fromkeys(int(i) for i in ids if int(i) > 0))
        rows = self._hmget_many(wanted, _ENTRY_FIELDS_V if vectors else _ENTRY_FIELDS)
        return {i: self._entry(i, f) for i, f in zip(wanted, rows, strict=True) if f[0] is not None}

    def count(self, namespace: str | None = None) -> int:
        if namespace is None:
            return int(self._call(lambda: self._client.zcard(self._p + b"lru")))
        value = self._call(lambda: self._client.hget(self._p + b"ns", namespace))
        return int(value or 0)

    def namespace_counts(self) -> dict[str, int]:
        raw = self._call(lambda: self._client.hgetall(self._p + b"ns"))
        counts = {bytes(k).decode(): int(v) for k, v in raw.items()}
        return {ns: counts[ns] for ns in sorted(counts) if counts[ns] > 0}

    def iter_vectors(
        self, *, now: float | None = None, batch_size: int = 65536
    ) -> Iterator[VectorBatch]:
        for ns, ids, values in self._live(("v", "x"), now, batch_size):
            yield VectorBatch(ns, ids, [bytes(v) for v in values])

    def iter_answers(
        self, *, now: float | None = None, batch_size: int = 4096
    ) -> Iterator[AnswerBatch]:
        """See :meth:`~semcache._store.AnswerScan.iter_answers` (whether an entry has a
        vector is asked, ``HEXISTS``, not read)."""
        for ns, ids, values in self._live(("r", "x"), now, batch_size, exists="v"):
            yield AnswerBatch(ns, ids, [bytes(v).decode() for v in values])

    def _live(
        self, fields: tuple[str, str], now: float | None, size: int, *, exists: str = ""
    ) -> Iterator[tuple[str, list[int], list[Any]]]:
        """``(namespace, ids, values of fields[0])`` of the entries with a vector (not
        expired at ``now`` if given; ``fields[1]`` is the expiry), namespace by namespace,
        ascending id, ``size`` entries per read (those with ``fields[0]`` unset and,
        given ``exists``, without that field, left out)."""
        for ns in self.namespace_counts():
            members = self._zrange_all(self._p + b"lru:" + ns.encode())
            ids = sorted(int(m) for m in members)
            for lo in range(0, len(ids), size):
                chunk = ids[lo : lo + size]
                out_ids: list[int] = []
                values: list[Any] = []
                for entry_id, (value, exp, *has) in zip(
                    chunk, self._hmget_many(chunk, fields, exists), strict=True
                ):
                    if value is None or (has and not has[0]):
                        continue
                    if now is not None and exp is not None and float(exp) <= now:
                        continue
                    out_ids.append(entry_id)
                    values.append(value)
                if out_ids:
                    yield ns, out_ids, values

    def get_vectors(self, ids: Sequence[int]) -> dict[int, tuple[str, bytes]]:
        wanted = list(dict.fromkeys(int(i) for i in ids if int(i) > 0))
        rows = self._hmget_many(wanted, ("n", "v"))
        return {
            i: (bytes(ns).decode(), bytes(v))
            for i, (ns, v) in zip(wanted, rows, strict=True)
            if ns is not None and v is not None
        }

    # -- writes -----------------------------------------------------------------------
    def put_many(
        self,
        entries: Sequence[NewEntry],
        *,
        now: float,
        limits: Limits | None = None,
        touches: Mapping[int, float] | None = None,
        meta: Mapping[str, str] | None = None,
    ) -> PutResult:
        check_new_records(entries)  # before anything is written
        quota = "" if limits is None or limits.namespace_quota is None else limits.namespace_quota
        cap = "" if limits is None or limits.max_entries is None else limits.max_entries
        args: list[Any] = [*self._args(), _float_arg(now), quota, cap]
        touches = touches or {}
        args.append(len(touches))
        for entry_id, when in touches.items():
            args += [_member(entry_id), _float_arg(when)]
        meta = meta or {}
        args.append(len(meta))
        for name, value in meta.items():
            args += [name, value]
        args.append(len(entries))
        for e in entries:
            args += [
                e.key,
                e.namespace,
                e.query,
                e.response,
                0 if e.metadata is None else 1,
                e.metadata or "",
                0 if e.vector is None else 1,
                e.vector or b"",
                _float_arg(e.created_at),
                "" if e.expires_at is None else _float_arg(e.expires_at),
                0 if e.record is None else 1,
                b"" if e.record is None else e.record.encode(),
            ]
        got = self._call(lambda: self._put(args=args))
        if got and got[0] == b"meta":  # the script wrote nothing
            claim_settings(meta, {bytes(got[1]).decode(): bytes(got[2]).decode()})
        ids, replaced, expired, lru = got
        evicted_expired = self._pairs(expired)
        return PutResult(
            ids=[int(i) for i in ids],
            replaced=self._pairs(replaced),
            evicted=evicted_expired + self._pairs(lru),
            expired_evicted=len(evicted_expired),
        )

    def delete_by_key(self, key: bytes) -> tuple[int, str] | None:
        rows = self._call(lambda: self._delete(args=[*self._args(), "key", key]))
        pairs = self._pairs(rows)
        return pairs[0] if pairs else None

    def delete_ids(self, ids: Sequence[int]) -> list[tuple[int, str]]:
        members = [_member(i) for i in dict.fromkeys(int(i) for i in ids) if i > 0]
        if not members:
            self._call(lambda: None)
            return []
        rows = self._call(lambda: self._delete(args=[*self._args(), "ids", *members]))
        return self._pairs(rows)

    def delete_expired(self, now: float, namespace: str | None = None) -> list[tuple[int, str]]:
        args = [*self._args(), _float_arg(now), namespace or "", 0 if namespace is None else 1]
        return self._pairs(self._call(lambda: self._delete_expired(args=args)))

    def clear(self, namespace: str | None = None) -> int:
        args = [*self._args(), namespace or "", 0 if namespace is None else 1]
        return int(self._call(lambda: self._clear(args=args)))

    def touch(self, access: Mapping[int, float]) -> None:
        args: list[Any] = self._args()
        for entry_id, when in access.items():
            if int(entry_id) > 0:
                args += [_member(entry_id), _float_arg(when)]
        if len(args) == 2:
            self._call(lambda: None)
            return
        self._call(lambda: self._touch(args=args))

    # -- the error budget's state (see the module docstring) --------------------------
    def write_records(self, records: Mapping[int, str]) -> None:
        """Set the error-budget record of existing entries by id, in one script; an id
        with no entry is skipped. Nothing else of the entry changes (recency, expiry,
        counts, the change log).

        Raises:
            InvalidInputError: a record or id of the wrong type (nothing is written).
            StoreUnavailableError: the server cannot be reached.
        """
        args: list[Any] = [self._p]
        for entry_id, text in check_records(records):
            args += [_member(entry_id), text.encode()]
        if len(args) == 1:
            self._call(lambda: None)
            return
        self._call(lambda: self._write_records(args=args))

    def update_records(self, ids: Sequence[int], change: RecordChange) -> None:
        """Change records in place (see :class:`~semcache._store._base.RecordUpdate`):
        the entries' hashes are watched (``WATCH``), read, and their records set in one
        ``MULTI``/``EXEC``, which Redis refuses if another client changed or deleted one
        of them since the read; then it starts again from the read.

        Raises:
            InvalidInputError, InputTooLargeError: ``change`` returned a text
                ``write_records`` would refuse; nothing is written.
            StoreUnavailableError: the server cannot be reached.
            StoreError: another Redis error.
        """
        keys = {i: self._p + b"e:" + _member(i).encode() for i in record_ids(ids)}
        watch_error = self._redis.WatchError

        def run() -> None:
            with self._client.pipeline() as pipe:
                while True:
                    try:
                        pipe.watch(*keys.values())
                        texts: dict[int, str] = {}
                        for i, key in keys.items():
                            r, c, o = pipe.hmget(key, ("r", "c", "o"))
                            if r is None:
                                continue  # no entry
                            old = None if o is None else bytes(o).decode()
                            text = change(i, bytes(r).decode(), float(c), old)
                            if text is not None:
                                texts[i] = text
                        items = check_records(texts)
                        pipe.multi()
                        for i, text in items:
                            pipe.hset(keys[i], "o", text.encode())
                        pipe.execute()
                        return
                    except watch_error:
                        continue  # changed by another client since the read: again

        if keys:
            self._call(run)
        else:
            self._call(lambda: None)

    def add_counts(self, namespace: str, deltas: Mapping[str, float]) -> None:
        """Add each delta to the namespace's named counter (``HINCRBYFLOAT``, all in one
        script): concurrent adds from any number of processes all count.

        Raises:
            InvalidNamespaceError: ``namespace`` is not a str.
            InvalidInputError: a bad name or a delta that is not a finite number.
            StoreUnavailableError: the server cannot be reached.
        """
        args: list[Any] = [self._p, namespace]
        for name, delta in check_counts(namespace, deltas):
            args += [name, _float_arg(delta)]
        if len(args) == 2:
            self._call(lambda: None)
            return
        self._call(lambda: self._add_counts(args=args))

    def read_counts(self, namespace: str) -> dict[str, float]:
        """The namespace's counters (empty when it has none).

        Raises:
            InvalidNamespaceError: ``namespace`` is not a str.
            StoreUnavailableError: the server cannot be reached.
        """
        key = self._p + b"qc:" + check_counts_namespace(namespace).encode()
        raw = self._call(lambda: self._client.hgetall(key))
        return {bytes(k).decode(): float(v) for k, v in raw.items()}

    def add_outcomes(self, namespace: str, rows: Sequence[str], keep: int) -> None:
        """Append ``rows`` to the namespace's outcome log (the list ``P ql:NS``) and keep
        its newest ``keep``, in one script (``RPUSH``, then ``LTRIM``): concurrent adds
        from any number of processes are all appended, each add's rows together (see
        :class:`~semcache._store._base.OutcomeLog`).

        Raises:
            InvalidNamespaceError: ``namespace`` is not a str.
            InvalidInputError: a row that is not printable ASCII text, or a bad ``keep``.
            InputTooLargeError: a row over 4 KiB.
            CacheClosedError: the store is closed.
            StoreUnavailableError: the server cannot be reached.
            StoreError: another Redis error (nothing of the add is kept).
        """
        checked = check_outcomes(namespace, rows, keep)  # before anything is written
        if not checked:
            self._call(lambda: None)  # (a closed store still refuses)
            return
        args: list[Any] = [self._p, namespace, int(keep), *checked]
        self._call(lambda: self._add_outcomes(args=args))

    def read_outcomes(self, namespace: str) -> list[str]:
        """The namespace's outcome log, oldest first (one ``LRANGE``).

        Raises:
            InvalidNamespaceError: ``namespace`` is not a str.
            CacheClosedError: the store is closed.
            StoreUnavailableError: the server cannot be reached.
            StoreError: another Redis error.
        """
        key = self._p + b"ql:" + check_counts_namespace(namespace).encode()
        raw = self._call(lambda: self._client.lrange(key, 0, -1))
        return [bytes(row).decode() for row in raw]

    # -- change log -------------------------------------------------------------------
    def seq(self) -> int:
        return int(self._call(lambda: self._client.get(self._p + b"seq")) or 0)

    def identity(self) -> str:
        # Created by the first call that finds none (a new or flushed server).
        token = uuid.uuid4().hex
        return bytes(self._call(lambda: self._identity(args=[self._p, token]))).decode()

    def changes_since(self, seq: int, identity: str | None = None) -> list[Change] | None:
        # One script: the identity, the bounds and the records in one snapshot (and one
        # round trip when nothing changed: shared mode asks before every get).
        args = [self._p, int(seq), 0 if identity is None else 1, identity or ""]
        got = self._call(lambda: self._changes(args=args))
        if int(got[0]) < 0:
            return None
        last, first, flat = got
        if int(seq) >= int(last):
            return []
        if not first or seq + 1 < int(first):
            return None
        return [
            Change(
                int(flat[j]),
                "put" if flat[j + 1] == b"p" else "delete",
                int(flat[j + 2]),
                bytes(flat[j + 3]).decode(),
            )
            for j in range(0, len(flat), 4)
        ]

    def prune_changes(self, keep_last: int) -> int:
        return int(self._call(lambda: self._prune(args=[self._p, max(0, int(keep_last))])))

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._release()

    def _release(self) -> None:
        if self._owns_client:
            try:
                self._client.close()
            except Exception:  # closing a broken connection must not raise
                pass

    # -- maintenance ------------------------------------------------------------------
    def drop(self) -> int:
        """Delete this store's keys (all its entries, settings and change log) and close
        the store; returns how many keys were deleted.

        Only this store's own keys go (see the module docstring): the fixed ones, its
        entries ``P e:<16 digits>``, ``P lru:NS`` / ``P exp:NS`` of its namespaces,
        ``P qc:NS`` of those with counters and ``P ql:NS`` of those with an outcome log.
        A store whose prefix merely starts with this one (``app:v2:`` under ``app:``)
        is left alone.

        Raises:
            StoreUnavailableError: the server cannot be reached.
        """
        p = self._p
        entry_key = re.compile(re.escape(p) + rb"e:[0-9]{16}\Z")

        def run() -> int:
            client = self._client
            n = 0
            batch: list[bytes] = []
            for name in client.scan_iter(match=_glob_escape(p) + b"e:*", count=1000):
                if entry_key.match(bytes(name)):
                    batch.append(name)
                if len(batch) >= 1000:
                    n += int(client.unlink(*batch))
                    batch = []
            names = [bytes(ns) for ns in client.hkeys(p + b"ns")]
            counted = [bytes(ns) for ns in client.smembers(p + b"qc")]
            logged = [bytes(ns) for ns in client.smembers(p + b"ql")]
            batch += [p + k for k in _FIXED_KEYS]
            batch += [p + kind + ns for ns in names for kind in (b"lru:", b"exp:")]
            batch += [p + b"qc:" + ns for ns in counted]
            batch += [p + b"ql:" + ns for ns in logged]
            for lo in range(0, len(batch), 1000):
                n += int(client.unlink(*batch[lo : lo + 1000]))
            return n

        count = self._call(run)
        self.close()
        return count


def _glob_escape(raw: bytes) -> bytes:
    out = bytearray()
    for byte in raw:
        if byte in b"*?[]\\":
            out += b"\\"
        out.append(byte)
    return bytes(out)
