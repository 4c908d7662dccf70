"""PostgresStore's schema: its migrations, the column list of an entry, and the
conversions of rows and vectors (see ``_postgres``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from .._dist import install_hint
from .._errors import MissingDependencyError
from ._base import StoredEntry

__all__ = [
    "COLUMNS",
    "MIGRATIONS",
    "MIGRATION_LOCK",
    "SCHEMA_VERSION",
    "entry_of",
    "import_psycopg",
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
)
SCHEMA_VERSION: Final[int] = MIGRATIONS[-1][0]

COLUMNS: Final = "id, key, namespace, query, response, metadata, created_at, expires_at"


def import_psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise MissingDependencyError(
            f"PostgresStore needs psycopg 3: {install_hint('postgres')}"
        ) from exc
    return psycopg


def entry_of(row: Sequence[Any]) -> StoredEntry:
    i, k, n, q, r, m, c, x = row[:8]
    return StoredEntry(
        int(i),
        bytes(k),
        bytes(n).decode(),
        bytes(q).decode(),
        bytes(r).decode(),
        None if m is None else bytes(m).decode(),
        float(c),
        None if x is None else float(x),
        None if len(row) < 9 or row[8] is None else bytes(row[8]),
    )


def row_pairs(rows: Sequence[Sequence[Any]]) -> list[tuple[int, str]]:
    return [(int(i), bytes(n).decode()) for i, n in rows]


def vector_text(vector: npt.NDArray[Any]) -> str:
    return "[" + ",".join(map(repr, vector.astype(np.float32).tolist())) + "]"
