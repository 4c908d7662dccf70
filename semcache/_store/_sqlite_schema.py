"""The SQLite store's schema: its migrations, and the checks and facts of a copy of its
file (what checkpoints carry, see ``semcache._checkpoint``). The schema lives here and
nowhere else: the checks compare a copy with stores built by the code that builds them.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeAlias

import apsw

from .._errors import (
    CheckpointFormatError,
    CheckpointVersionError,
    SchemaVersionError,
    StoreError,
)

__all__ = [
    "COUNT_TABLE",
    "COUNT_TRIGGERS",
    "COUNT_VIEW",
    "DEFAULT_PRAGMAS",
    "LRU_INDEXES",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "backup",
    "check_copy",
    "inspect_copy",
    "migrate",
]

#: Per-connection settings, applied on every open.
DEFAULT_PRAGMAS: Final[Mapping[str, str | int]] = {
    "journal_mode": "wal",
    "synchronous": "normal",
    "temp_store": "memory",
    "cache_size": -65536,  # KiB: 64 MiB of page cache
    "mmap_size": 1 << 28,
    "foreign_keys": 0,
}

# Ordered migrations: (version, description, SQL). Never edit a released one; append.
MIGRATIONS: Final[tuple[tuple[int, str, str], ...]] = (
    (
        1,
        "entries, namespaces, change log, settings",
        """
        CREATE TABLE meta(name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
        CREATE TABLE entries(
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            key BLOB NOT NULL UNIQUE,
            namespace TEXT NOT NULL,
            query TEXT NOT NULL,
            response TEXT NOT NULL,
            metadata TEXT,
            created_at REAL NOT NULL,
            expires_at REAL,
            last_access REAL NOT NULL,
            vector BLOB
        );
        CREATE INDEX entries_expiry ON entries(expires_at) WHERE expires_at IS NOT NULL;
        CREATE INDEX entries_ns_expiry ON entries(namespace, expires_at)
            WHERE expires_at IS NOT NULL;
        CREATE TABLE namespaces(name TEXT PRIMARY KEY, entries INTEGER NOT NULL) WITHOUT ROWID;
        CREATE TABLE changes(
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            op INTEGER NOT NULL,
            entry_id INTEGER NOT NULL,
            namespace TEXT NOT NULL
        );
        CREATE TRIGGER entries_insert AFTER INSERT ON entries BEGIN
            INSERT INTO namespaces(name, entries) VALUES (new.namespace, 1)
                ON CONFLICT(name) DO UPDATE SET entries = entries + 1;
            INSERT INTO changes(op, entry_id, namespace) VALUES (1, new.id, new.namespace);
        END;
        CREATE TRIGGER entries_delete AFTER DELETE ON entries BEGIN
            UPDATE namespaces SET entries = entries - 1 WHERE name = old.namespace;
            INSERT INTO changes(op, entry_id, namespace) VALUES (0, old.id, old.namespace);
        END;
        """,
    ),
    (
        2,
        "namespace counts kept by triggers of their own (only once a limit needs them)",
        # The change log stays in the entry triggers; the counts move to COUNT_TRIGGERS.
        # SQLiteStore creates those when it migrates a version 1 file (its counts are
        # right: it keeps counting, and a process of an older semcache that still has it
        # open reads right counts); a new file gets the view instead (see COUNT_VIEW).
        """
        DROP TRIGGER entries_insert;
        DROP TRIGGER entries_delete;
        CREATE TRIGGER entries_insert AFTER INSERT ON entries BEGIN
            INSERT INTO changes(op, entry_id, namespace) VALUES (1, new.id, new.namespace);
        END;
        CREATE TRIGGER entries_delete AFTER DELETE ON entries BEGIN
            INSERT INTO changes(op, entry_id, namespace) VALUES (0, old.id, old.namespace);
        END;
        """,
    ),
    (
        3,
        "the error budget's state: a record per entry, counters per namespace",
        # A column added to entries (NULL: no record) and a table of
        # counters that are only ever added to (see semcache._store._base.QualityState).
        # Neither is touched by the triggers: writing a record logs no change.
        """
        ALTER TABLE entries ADD COLUMN record TEXT;
        CREATE TABLE quality_counts(
            namespace TEXT NOT NULL,
            name TEXT NOT NULL,
            value REAL NOT NULL,
            PRIMARY KEY(namespace, name)
        ) WITHOUT ROWID;
        """,
    ),
    (
        4,
        "the error budget's outcome log: the newest rows per namespace",
        # Rows appended in seq order and trimmed from the oldest (see
        # semcache._store._base.OutcomeLog); untouched by the entries' triggers.
        """
        CREATE TABLE quality_outcomes(
            seq INTEGER PRIMARY KEY,
            namespace TEXT NOT NULL,
            row TEXT NOT NULL
        );
        CREATE INDEX quality_outcomes_ns ON quality_outcomes(namespace, seq);
        """,
    ),
)
SCHEMA_VERSION: Final[int] = MIGRATIONS[-1][0]
#: Recency indexes, created by the first put that enforces the limit needing them (each
#: costs every put and touch about 5 us, so a cache without limits does not keep them).
LRU_INDEXES: Final[Mapping[str, str]] = {
    "global": "CREATE INDEX IF NOT EXISTS entries_lru ON entries(last_access, id)",
    "namespace": "CREATE INDEX IF NOT EXISTS entries_ns_lru ON entries(namespace, last_access, id)",
}

#: Namespace counts. A store that no limit has needed has ``namespaces`` as a view that
#: counts the rows when read (every put then writes no count page; reading counts scans
#: the rows). The first put that enforces ``max_entries`` or a namespace quota (its
#: eviction reads the counts on every put) turns it into the table that schema version
#: 1 always had, filled from the rows, kept by the triggers of :data:`COUNT_TRIGGERS`, in
#: its own transaction (:func:`start_counts`); it stays a table (a process with limits
#: may share the file). Readers see the same name and columns either way.
COUNT_TABLE: Final = (
    "CREATE TABLE namespaces(name TEXT PRIMARY KEY, entries INTEGER NOT NULL) WITHOUT ROWID"
)
COUNT_VIEW: Final = (
    "CREATE VIEW namespaces(name, entries) AS "
    "SELECT namespace, count(*) FROM entries GROUP BY namespace"
)
COUNT_TRIGGERS: Final[tuple[str, ...]] = (
    """CREATE TRIGGER entries_count_insert AFTER INSERT ON entries BEGIN
            INSERT INTO namespaces(name, entries) VALUES (new.namespace, 1)
                ON CONFLICT(name) DO UPDATE SET entries = entries + 1;
        END""",
    """CREATE TRIGGER entries_count_delete AFTER DELETE ON entries BEGIN
            UPDATE namespaces SET entries = entries - 1 WHERE name = old.namespace;
        END""",
)


def counts_kept(conn: Any) -> bool:
    """Whether ``namespaces`` is the kept table (not the counting view)."""
    kind = conn.execute("SELECT type FROM sqlite_master WHERE name = 'namespaces'").get
    return bool(kind == "table")


def stop_counts(conn: Any) -> None:
    """A new store's ``namespaces``: the view (in the caller's write transaction)."""
    conn.execute("DROP TABLE namespaces")
    conn.execute(COUNT_VIEW)


def start_counts(conn: Any) -> None:
    """Replace the view with the table of the rows' counts and its triggers (in the
    caller's write transaction; ``namespaces`` must be the view)."""
    conn.execute("DROP VIEW namespaces")
    conn.execute(COUNT_TABLE)
    conn.execute(
        "INSERT INTO namespaces(name, entries) SELECT namespace, count(*) FROM entries "
        "GROUP BY namespace"
    )
    for sql in COUNT_TRIGGERS:
        conn.execute(sql)


def migrate(conn: Any, path: str) -> None:
    """Bring the file open on ``conn`` to :data:`SCHEMA_VERSION` (call in a write
    transaction), and give it an identity if it has none.

    Raises:
        SchemaVersionError: the file was written by a newer semcache.
    """
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations("
        "version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at REAL NOT NULL)"
    )
    current = conn.execute("SELECT max(version) FROM schema_migrations").get or 0
    if current > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{path}: schema version {current} was written by a newer semcache "
            f"(this one reads up to {SCHEMA_VERSION}); upgrade semcache"
        )
    for version, description, sql in MIGRATIONS:
        if version > current:
            conn.execute(sql)
            conn.execute(
                "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                (version, description, time.time()),
            )
    if current == 0:  # a new file: counts are read from the rows (COUNT_VIEW)
        stop_counts(conn)
    elif current == 1:  # its counts are right: it keeps counting (see MIGRATIONS)
        for sql in COUNT_TRIGGERS:
            conn.execute(sql)
    # The store's identity, created with its data (an older file has one already: the
    # cache wrote it under the same name).
    conn.execute(
        "INSERT INTO meta(name, value) VALUES ('store_id', ?) ON CONFLICT(name) DO NOTHING",
        (uuid.uuid4().hex,),
    )


def backup(source: str, dest: Path, busy_timeout: float) -> None:
    """Copy the database at ``source`` into a new file ``dest`` in one backup step, in
    rollback-journal mode (one self-contained file).

    Raises:
        StoreError: the copy failed.
    """
    try:
        src = apsw.Connection(source, flags=apsw.SQLITE_OPEN_READWRITE)
        try:
            src.set_busy_timeout(int(busy_timeout * 1000))
            dst = apsw.Connection(str(dest))
            try:
                with dst.backup("main", src, "main") as backup:
                    while not backup.step(-1):
                        pass
                dst.pragma("journal_mode", "delete")  # one self-contained file
            finally:
                dst.close()
        finally:
            src.close()
    except apsw.Error as exc:
        raise StoreError(f"could not copy {source}: {exc}") from exc


def inspect_copy(path: Path) -> dict[str, Any]:
    """Settings, change sequence and counts of a store copy (which must be healthy).

    Raises:
        CheckpointFormatError: not a healthy semcache store.
    """
    try:
        conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
        try:
            check = conn.execute("PRAGMA quick_check").fetchall()
            if check != [("ok",)]:
                raise CheckpointFormatError(f"the store copy fails PRAGMA quick_check: {check}")
            meta = {str(k): str(v) for k, v in conn.execute("SELECT name, value FROM meta")}
            counts = {
                str(ns): int(n)
                for ns, n in conn.execute(
                    "SELECT name, entries FROM namespaces WHERE entries > 0 ORDER BY name"
                )
            }
            seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'changes'").get
        finally:
            conn.close()
    except apsw.Error as exc:
        raise CheckpointFormatError(f"the store copy is not a semcache store: {exc}") from exc
    return {
        "fingerprint": meta.get("fingerprint"),
        "dim": int(meta["dim"]) if "dim" in meta else None,
        "dtype": meta.get("vector_dtype", "float32"),
        "store_id": meta.get("store_id"),
        "seq": int(seq or 0),
        "entries": counts,
        "total_entries": sum(counts.values()),
    }


#: The SQLite file header of a copy ``dumps`` writes: the magic string, then (bytes 18
#: and 19) the rollback-journal file format versions (a WAL file would say 2).
_SQLITE_MAGIC: Final = b"SQLite format 3\x00"

#: One ``sqlite_master`` row: type, name, table, SQL (the root page differs by file).
_SchemaRow: TypeAlias = "tuple[str, str, str, str | None]"
_SCHEMA_QUERY: Final = "SELECT type, name, tbl_name, sql FROM sqlite_master"


@dataclass(frozen=True)
class _Schema:
    """What a fresh store of one schema version holds: the objects it always has, the
    ones semcache may add later (recency indexes, the planner's statistics), and its
    header fields."""

    required: frozenset[_SchemaRow]
    optional: frozenset[_SchemaRow]
    pragmas: tuple[tuple[str, object], ...]
    #: Objects of which a store holds one set or the other, whole (version 2 on: the
    #: counting view, or the kept table and its triggers).
    variants: tuple[frozenset[_SchemaRow], ...] = ()


_PRAGMAS: Final = ("user_version", "application_id", "encoding")


def _expected_schema(version: int, create: Callable[[str], None]) -> _Schema:
    """The schema of a store at ``version``, read from stores built by the code that
    builds them (so it cannot drift from it).

    The current version is a fresh store that ``create`` makes in a temporary file; an
    older one replays the migrations up to it. Cached per version.
    """
    cached = _SCHEMAS.get(version)
    if cached is not None:
        return cached
    with tempfile.TemporaryDirectory(prefix="semcache-schema-") as tmp:
        fresh = os.path.join(tmp, "fresh.db")
        create(fresh)
        conn = apsw.Connection(fresh)
        try:
            if version != SCHEMA_VERSION:
                # The table of applied migrations as the store creates it, then the
                # migrations up to ``version`` on an empty database.
                ddl = conn.execute(
                    "SELECT sql FROM sqlite_master WHERE name = 'schema_migrations'"
                ).get
                conn.close()
                conn = apsw.Connection(":memory:")
                conn.execute(str(ddl))
                for number, _, sql in MIGRATIONS:
                    if number <= version:
                        conn.execute(sql)
                if version >= 2:  # what SQLiteStore._migrate does to a new file
                    stop_counts(conn)
            # Closing the fresh store ran PRAGMA optimize: its statistics are optional.
            rows = _schema_rows(conn)
            required = frozenset(r for r in rows if not r[1].startswith("sqlite_stat"))
            pragmas = tuple((p, conn.execute(f"PRAGMA {p}").get) for p in _PRAGMAS)
            for sql in LRU_INDEXES.values():
                conn.execute(sql)
            conn.execute("ANALYZE")  # sqlite_stat1 (and sqlite_stat4 where compiled in)
            optional = frozenset(_schema_rows(conn)) - required
            variants: tuple[frozenset[_SchemaRow], ...] = ()
            if not counts_kept(conn):  # the view; the table is the other variant
                before = frozenset(_schema_rows(conn))
                start_counts(conn)
                after = frozenset(_schema_rows(conn))
                variants = (before - after, after - before)
                required -= variants[0]
        finally:
            conn.close()
    schema = _SCHEMAS[version] = _Schema(required, optional, pragmas, variants)
    return schema


_SCHEMAS: dict[int, _Schema] = {}


def _schema_rows(conn: Any) -> list[_SchemaRow]:
    return [
        (str(t), str(n), str(tb), None if q is None else str(q))
        for t, n, tb, q in conn.execute(_SCHEMA_QUERY)
    ]


def check_copy(path: Path, create: Callable[[str], None]) -> None:
    """Refuse a store copy that is not exactly what semcache writes: a rollback-journal
    SQLite file whose tables, indexes, triggers and views are those of its recorded
    schema version (names and SQL; nothing else: no trigger, view or table of its own),
    with the header fields a fresh store has, namespace counts equal to its rows, vectors
    of the recorded size, and change sequences no lower than the ids in use. Cheap next
    to the SHA-256 already computed: a few scans of the rows, no content compared.

    Raises:
        CheckpointFormatError: anything else.
        CheckpointVersionError: a schema version newer than this semcache's.
    """
    with open(path, "rb") as fh:
        header = fh.read(100)
    if len(header) < 100 or not header.startswith(_SQLITE_MAGIC):
        raise CheckpointFormatError("the store copy is not a SQLite database")
    if header[18:20] != b"\x01\x01":
        raise CheckpointFormatError(
            "the store copy is not in rollback-journal mode (dumps never writes a WAL file)"
        )
    try:
        conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
        try:
            _check_store_conn(conn, create)
        finally:
            conn.close()
    except apsw.Error as exc:
        raise CheckpointFormatError(f"the store copy is not a semcache store: {exc}") from exc


def _check_store_conn(conn: Any, create: Callable[[str], None]) -> None:
    # integrity_check, not quick_check: it also proves every index agrees with its table
    # (a key index pointing at another row would serve another entry's answer); on a
    # 105 MB store it costs 0.17 s against quick_check's 0.09 s.
    check = conn.execute("PRAGMA integrity_check").fetchall()
    if check != [("ok",)]:
        raise CheckpointFormatError(f"the store copy fails PRAGMA integrity_check: {check[:5]}")
    names = {row[1] for row in conn.execute(_SCHEMA_QUERY)}
    if "schema_migrations" not in names:
        raise CheckpointFormatError("the store copy is not a semcache store: no schema version")
    versions = [int(v) for (v,) in conn.execute("SELECT version FROM schema_migrations")]
    version = max(versions, default=0)
    if version > SCHEMA_VERSION:
        raise CheckpointVersionError(
            f"the checkpoint's store has schema version {version}; this semcache reads up "
            f"to {SCHEMA_VERSION}: upgrade semcache"
        )
    if version < 1 or sorted(versions) != list(range(1, version + 1)):
        raise CheckpointFormatError(f"the store copy has schema versions {sorted(versions)}")
    expected = _expected_schema(version, create)
    rows = set(_schema_rows(conn))
    # the variant present whole (else the first: what it lacks is missing)
    chosen = next(
        (v for v in expected.variants if v <= rows),
        expected.variants[0] if expected.variants else frozenset(),
    )
    required = expected.required | chosen
    missing = required - rows
    extra = rows - required - expected.optional
    if missing or extra:
        what = sorted(f"{r[0]} {r[1]!r}" for r in extra) or ["changed or missing objects"]
        raise CheckpointFormatError(
            f"the store copy's schema is not the one semcache creates (schema version "
            f"{version}): {', '.join(what)}"
        )
    for name, value in expected.pragmas:
        found = conn.execute(f"PRAGMA {name}").get
        if found != value:
            raise CheckpointFormatError(f"the store copy has PRAGMA {name} = {found!r}")
    counts = {
        str(ns): int(n)
        for ns, n in conn.execute("SELECT namespace, count(*) FROM entries GROUP BY namespace")
    }
    recorded = {str(ns): n for ns, n in conn.execute("SELECT name, entries FROM namespaces")}
    if {ns: n for ns, n in recorded.items() if n != 0} != counts:
        raise CheckpointFormatError(
            "the store copy's namespace counts do not match its rows: the checkpoint was altered"
        )
    meta = {str(k): v for k, v in conn.execute("SELECT name, value FROM meta")}
    vectors = conn.execute("SELECT count(*) FROM entries WHERE vector IS NOT NULL").get
    dim, dtype = meta.get("dim"), meta.get("vector_dtype", "float32")
    if dtype not in ("float32", "float16"):
        raise CheckpointFormatError(f"the store copy records vector dtype {dtype!r}")
    if dim is not None or vectors:
        if not (
            isinstance(dim, str) and dim.isascii() and dim.isdigit() and 0 < int(dim) < 1 << 20
        ):
            raise CheckpointFormatError(f"the store copy records dimension {dim!r}")
        size = int(dim) * (2 if dtype == "float16" else 4)
        bad = conn.execute(
            "SELECT count(*) FROM entries WHERE vector IS NOT NULL AND length(vector) != ?",
            (size,),
        ).get
        if bad:
            raise CheckpointFormatError(
                f"{bad} vectors in the store copy are not {dim} {dtype} values"
            )
    sequences = {str(n): s for n, s in conn.execute("SELECT name, seq FROM sqlite_sequence")}
    for table, column in (("entries", "id"), ("changes", "seq")):
        top = conn.execute(f"SELECT max({column}) FROM {table}").get
        if top is not None and not (
            isinstance(sequences.get(table), int) and sequences[table] >= top
        ):
            raise CheckpointFormatError(f"the store copy's sequence of {table} is behind its rows")
