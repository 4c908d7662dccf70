"""PostgresStore's schema: its migrations, the column list of an entry, and the
conversions of rows and vectors (see ``_postgres``)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from .._dist import install_hint
from .._errors import MissingDependencyError, SchemaVersionError
from ._base import Change, StoredEntry

__all__ = [
    "COLUMNS",
    "MIGRATIONS",
    "MIGRATION_LOCK",
    "SCHEMA_VERSION",
    "entry_of",
    "evict",
    "import_psycopg",
    "migrate",
    "read_changes",
    "row_pairs",
    "vector_text",
]

#: Serializes schema migrations of every semcache schema in a database.
MIGRATION_LOCK: Final = 0x53454D43  # "SEMC"

# Ordered migrations: (version, description, SQL with {s} = the quoted schema). Never
# edit a released one; append.
MIGRATIONS: Final[tuple[tuple[int, str, str], ...]] = (
    (
        1,
        "entries, namespaces, change log, settings",
        """
        CREATE TABLE {s}.meta(name text PRIMARY KEY, value text NOT NULL);
        CREATE SEQUENCE {s}.entry_ids;
        CREATE TABLE {s}.entries(
            id bigint PRIMARY KEY DEFAULT nextval('{s}.entry_ids'),
            key bytea NOT NULL UNIQUE,
            namespace bytea NOT NULL,
            query bytea NOT NULL,
            response bytea NOT NULL,
            metadata bytea,
            created_at double precision NOT NULL,
            expires_at double precision,
            last_access double precision NOT NULL,
            vector bytea
        );
        CREATE INDEX entries_ns ON {s}.entries(namespace, id);
        CREATE INDEX entries_lru ON {s}.entries(last_access, id);
        CREATE INDEX entries_ns_lru ON {s}.entries(namespace, last_access, id);
        CREATE INDEX entries_expiry ON {s}.entries(expires_at, id)
            WHERE expires_at IS NOT NULL;
        CREATE INDEX entries_ns_expiry ON {s}.entries(namespace, expires_at, id)
            WHERE expires_at IS NOT NULL;
        CREATE TABLE {s}.namespaces(name bytea PRIMARY KEY, entries bigint NOT NULL);
        CREATE TABLE {s}.log_state(
            one boolean PRIMARY KEY DEFAULT true CHECK (one), seq bigint NOT NULL);
        INSERT INTO {s}.log_state VALUES (true, 0);
        CREATE TABLE {s}.changes(
            seq bigint PRIMARY KEY,
            op smallint NOT NULL,
            entry_id bigint NOT NULL,
            namespace bytea NOT NULL
        );
        CREATE FUNCTION {s}.entries_log() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE s bigint;
        BEGIN
            IF TG_OP = 'INSERT' THEN
                INSERT INTO {s}.namespaces VALUES (NEW.namespace, 1)
                    ON CONFLICT (name) DO UPDATE SET entries = namespaces.entries + 1;
                UPDATE {s}.log_state SET seq = seq + 1 RETURNING seq INTO s;
                INSERT INTO {s}.changes VALUES (s, 1, NEW.id, NEW.namespace);
                RETURN NEW;
            END IF;
            UPDATE {s}.namespaces SET entries = entries - 1 WHERE name = OLD.namespace;
            UPDATE {s}.log_state SET seq = seq + 1 RETURNING seq INTO s;
            INSERT INTO {s}.changes VALUES (s, 0, OLD.id, OLD.namespace);
            RETURN OLD;
        END $$;
        CREATE TRIGGER entries_log AFTER INSERT OR DELETE ON {s}.entries
            FOR EACH ROW EXECUTE FUNCTION {s}.entries_log();
        """,
    ),
    (
        2,
        "error budget: entries.record, quality_counts",
        """
        ALTER TABLE {s}.entries ADD COLUMN IF NOT EXISTS record bytea;
        CREATE TABLE IF NOT EXISTS {s}.quality_counts(
            namespace bytea NOT NULL,
            name text NOT NULL,
            value double precision NOT NULL,
            PRIMARY KEY (namespace, name)
        );
        """,
    ),
    (
        3,
        "error budget: quality_outcomes",
        # The outcome log: rows appended in seq order per namespace and trimmed from the
        # oldest (see semcache._store._base.OutcomeLog and _postgres_quality).
        """
        CREATE TABLE IF NOT EXISTS {s}.quality_outcomes(
            seq bigserial PRIMARY KEY,
            namespace bytea NOT NULL,
            outcome text NOT NULL
        );
        CREATE INDEX IF NOT EXISTS quality_outcomes_ns ON {s}.quality_outcomes(namespace, seq);
        """,
    ),
)
SCHEMA_VERSION: Final[int] = MIGRATIONS[-1][0]

COLUMNS: Final = "id, key, namespace, query, response, metadata, created_at, expires_at, record"


def import_psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise MissingDependencyError(
            f"PostgresStore needs psycopg 3: {install_hint('postgres')}"
        ) from exc
    return psycopg


def entry_of(row: Sequence[Any]) -> StoredEntry:
    i, k, n, q, r, m, c, x, o = row[:9]
    return StoredEntry(
        int(i),
        bytes(k),
        bytes(n).decode(),
        bytes(q).decode(),
        bytes(r).decode(),
        None if m is None else bytes(m).decode(),
        float(c),
        None if x is None else float(x),
        None if len(row) < 10 or row[9] is None else bytes(row[9]),
        None if o is None else bytes(o).decode(),
    )


def row_pairs(rows: Sequence[Sequence[Any]]) -> list[tuple[int, str]]:
    return [(int(i), bytes(n).decode()) for i, n in rows]


def vector_text(vector: npt.NDArray[Any]) -> str:
    return "[" + ",".join(map(repr, vector.astype(np.float32).tolist())) + "]"


def migrate(conn: Any, s: str, schema: str) -> None:
    """Bring the schema ``s`` (quoted; ``schema`` for messages) to
    :data:`SCHEMA_VERSION` in one transaction under :data:`MIGRATION_LOCK`, and give
    the store an identity if it has none.

    Raises:
        SchemaVersionError: the schema was written by a newer semcache.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {s}.schema_migrations(version integer "
            "PRIMARY KEY, description text NOT NULL, applied_at double precision "
            "NOT NULL)"
        )
        row = conn.execute(f"SELECT max(version) FROM {s}.schema_migrations").fetchone()
        current = int(row[0] or 0)
        if current > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"schema {schema}: version {current} was written by a newer "
                f"semcache (this one reads up to {SCHEMA_VERSION}); upgrade semcache"
            )
        for version, description, sql in MIGRATIONS:
            if version > current:
                conn.execute(sql.format(s=s))
                conn.execute(
                    f"INSERT INTO {s}.schema_migrations VALUES (%s, %s, %s)",
                    (version, description, time.time()),
                )
        # The store's identity, created with its data (see Store.identity).
        conn.execute(
            f"INSERT INTO {s}.meta VALUES ('store_id', %s) ON CONFLICT (name) DO NOTHING",
            (uuid.uuid4().hex,),
        )


def evict(conn: Any, ns: bytes | None, limit: int, now: float) -> list[tuple[bool, Any]]:
    """Queue (in the pipeline) the deletes of entries of ``ns`` (or of all) beyond
    ``limit``: expired ones first (earliest expiry), then least recently used. Each
    statement computes the excess itself, after the statements before it."""
    if ns is None:
        size = "(SELECT coalesce(sum(entries), 0)::bigint FROM namespaces)"
        where, args = "", ()
    else:
        size = "(SELECT coalesce(max(entries), 0) FROM namespaces WHERE name = %s)"
        where, args = "namespace = %s AND ", (ns,)  # type: ignore[assignment]
    excess = f"greatest(0, {size} - %s)"
    expired = conn.execute(
        f"DELETE FROM entries WHERE id IN (SELECT id FROM entries WHERE {where}"
        f"expires_at <= %s ORDER BY expires_at, id LIMIT {excess}) RETURNING id, namespace",
        (*args, now, *args, limit),
    )
    lru_where = "WHERE namespace = %s " if ns is not None else ""
    lru = conn.execute(
        f"DELETE FROM entries WHERE id IN (SELECT id FROM entries {lru_where}"
        f"ORDER BY last_access, id LIMIT {excess}) RETURNING id, namespace",
        (*args, *args, limit),
    )
    return [(True, expired), (False, lru)]


def read_changes(conn: Any, seq: int, identity: str | None) -> list[Change] | None:
    """The change records after ``seq`` (see ``Store.changes_since``)."""
    # One statement: a single snapshot of the identity, the log and its bounds.
    rows = conn.execute(
        "SELECT l.seq, (SELECT min(seq) FROM changes), "
        "(SELECT value FROM meta WHERE name = 'store_id'), c.seq, c.op, c.entry_id, "
        "c.namespace FROM log_state AS l LEFT JOIN changes AS c ON c.seq > %s "
        "AND l.seq > %s ORDER BY c.seq",
        (seq, seq),
    ).fetchall()
    last, first, current = int(rows[0][0]), rows[0][1], rows[0][2]
    if seq > last or (identity is not None and current != identity):
        return None
    if seq == last:
        return []
    if first is None or seq + 1 < int(first):
        return None
    return [
        Change(int(s), "put" if op else "delete", int(i), bytes(n).decode())
        for _, _, _, s, op, i, n in rows
    ]
