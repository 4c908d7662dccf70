"""PostgresStore's server-side search (pgvector): setting it up, the backfill of rows
written without it, the HNSW index, and the search itself (see ``_postgres``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

import numpy as np
import numpy.typing as npt

from .._errors import ConfigurationError, StoreError
from ._postgres_schema import MIGRATION_LOCK, vector_text

_T = TypeVar("_T")
_SIZE_TTL: Final = 1.0  # seconds a namespace size picked for a search stays good


class PgvectorSearch:
    """The search half of :class:`~semcache._store._postgres.PostgresStore` (which
    sets these attributes and provides the connection helpers below)."""

    schema: str
    _s: str
    _pg: Any
    _search: bool
    _unavailable: str | None
    _dim: int | None
    _dtype: np.dtype[Any] | None
    _hnsw_dims: set[int]
    _hnsw_m: int
    _hnsw_ef: int
    _exact_below: int
    _sizes: dict[str, tuple[int, float]]

    if TYPE_CHECKING:

        def _run(self, fn: Callable[[Any], _T], *, write: bool) -> _T: ...
        def _read(self, fn: Callable[[Any], _T]) -> _T: ...
        def _write(self, fn: Callable[[Any], _T]) -> _T: ...
        def _fetchall(self, sql: str, args: Any) -> list[Any]: ...
        def _discard_all(self) -> None: ...
        def _load_settings(self) -> None: ...
        def count(self, namespace: str | None = None) -> int: ...

    def _enable_search(self) -> str | None:
        """Set up server-side search; return why it is unavailable, or None."""
        s = self._s

        def run(conn: Any) -> str | None:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                installed = conn.execute(
                    "SELECT extnamespace::regnamespace::text FROM pg_extension "
                    "WHERE extname = 'vector'"
                ).fetchone()
                if installed is None:
                    available = conn.execute(
                        "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"
                    ).fetchone()
                    if available is None:
                        return "the pgvector extension is not installed on the server"
                    try:
                        with conn.transaction():
                            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                    except self._pg.Error as exc:
                        return f"CREATE EXTENSION vector failed ({exc}); ask an admin to run it"
                    installed = ("public",)
                ext_schema = str(installed[0])
                if ext_schema not in ("public", self.schema):
                    raise ConfigurationError(
                        f"pgvector lives in schema {ext_schema!r}; semcache expects public"
                    )
                conn.execute(
                    f"ALTER TABLE {s}.entries ADD COLUMN IF NOT EXISTS embedding public.vector"
                )
                # Keep embeddings in the row (the bytea copy goes to TOAST instead): an
                # exact scan or an index scan's recheck then reads no TOAST pages.
                conn.execute(f"ALTER TABLE {s}.entries ALTER COLUMN embedding SET STORAGE MAIN")
                return None

        reason = self._run(run, write=True)
        if reason is None:
            self._search = True
            self._discard_all()  # reconnect with the search settings
            self._load_settings()
            if self._backfill() and self._dim is not None:
                # Built in bulk over the backfilled rows: much faster than row by row.
                dim = self._dim

                def build(conn: Any) -> None:
                    # Room for the graph in memory: a build that spills is much slower.
                    conn.execute("SET LOCAL maintenance_work_mem = '256MB'")
                    self._create_index(conn, dim)

                self._write(build)
                self._hnsw_dims.add(dim)
        return reason

    def _backfill(self) -> int:
        """Give entries written without server-side search their pgvector column;
        return how many were given one.

        To load a large cache fast, write it with ``vector_search=False`` and open it
        once with search on: the backfill fills the column and the HNSW index is then
        built in one pass (inserting row by row into the index costs milliseconds each).
        """
        after = done = 0
        while True:
            rows = self._fetchall(
                "SELECT id, vector FROM entries WHERE embedding IS NULL AND "
                "vector IS NOT NULL AND id > %s ORDER BY id LIMIT 1000",
                (after,),
            )
            if not rows:
                return done
            after = int(rows[-1][0])
            updates = [(e, i) for i, v in rows if (e := self._embedding(bytes(v))) is not None]
            if updates:

                def run(conn: Any, updates: list[tuple[str, int]] = updates) -> None:
                    with conn.cursor() as cur:
                        cur.executemany(
                            "UPDATE entries SET embedding = %s::vector WHERE id = %s", updates
                        )

                self._write(run)
                done += len(updates)
            if len(rows) < 1000:
                return done

    def _embedding(self, blob: bytes | None) -> str | None:
        """The pgvector text of a stored vector, or None if it cannot be one (unknown
        dtype or dimension, a length that does not match, NaN/inf or zero)."""
        if blob is None or self._dtype is None or self._dim is None:
            return None
        if len(blob) != self._dim * self._dtype.itemsize:
            return None
        vec = np.frombuffer(blob, dtype=self._dtype)
        if not np.all(np.isfinite(vec)) or not np.any(vec):
            return None
        return vector_text(vec)

    # -- server-side search -----------------------------------------------------------
    @property
    def can_search(self) -> bool:
        """Whether :meth:`search` works (pgvector is installed and enabled)."""
        return self._search

    @property
    def search_unavailable(self) -> str | None:
        """Why :meth:`search` does not work (None when it does)."""
        return self._unavailable

    def search(
        self,
        namespace: str,
        vector: npt.ArrayLike,
        k: int,
        *,
        now: float | None = None,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """The ``k`` entries of ``namespace`` nearest to ``vector`` by cosine similarity.

        Namespaces of at most ``exact_search_below`` entries are scanned exactly; larger
        ones go through the HNSW index, which with pgvector >= 0.8 keeps scanning
        (``hnsw.iterative_scan``) until ``k`` entries of the namespace are found.

        Args:
            namespace: where to search (no other namespace is ever returned).
            vector: the query vector (any length matching the stored dimension).
            k: how many results at most.
            now: leave out entries with ``expires_at <= now``.

        Returns:
            ``(ids, similarities)``, best first.

        Raises:
            StoreError: search is unavailable (see :attr:`search_unavailable`) or the
                database failed.
        """
        if not self._search:
            raise StoreError(f"server-side search is unavailable: {self.search_unavailable}")
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        dim = len(query)
        empty = (np.empty(0, np.int64), np.empty(0, np.float32))
        if k <= 0 or not np.all(np.isfinite(query)) or not np.any(query):
            self._read(lambda c: None)
            return empty
        text = vector_text(query)
        ns = namespace.encode()
        expiry = "" if now is None else " AND (expires_at IS NULL OR expires_at > %s)"
        tail: tuple[Any, ...] = () if now is None else (now,)

        size = self._namespace_size(namespace)
        if size == 0:
            return empty

        def run(conn: Any) -> list[Any]:
            if size <= self._exact_below:
                # The uncast column does not match the index expression: an exact scan
                # of the namespace's rows (found through its btree index).
                dist = "embedding <=> %s::vector"
                match = "namespace = %s"
            else:
                # Through the HNSW index, the namespace filtered inside the index scan
                # (iterative scan). Written so no btree index can serve it: with stale
                # statistics the planner would otherwise read and sort the namespace.
                dist = f"embedding::vector({dim}) <=> %s::vector({dim})"
                match = "(namespace || ''::bytea) = %s"
            sql = (
                f"SELECT id, 1 - ({dist}) FROM entries WHERE {match} AND "
                f"embedding IS NOT NULL AND vector_dims(embedding) = {dim}{expiry} "
                f"ORDER BY {dist} LIMIT %s"
            )
            return list(conn.execute(sql, (text, ns, *tail, text, int(k))).fetchall())

        rows = self._read(run)
        if not rows:
            return empty
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        sims = np.fromiter((r[1] for r in rows), dtype=np.float32, count=len(rows))
        return ids, sims

    def _namespace_size(self, namespace: str) -> int:
        """The namespace's entry count, read at most once per :data:`_SIZE_TTL` seconds
        (it only picks the exact or the HNSW path; both answer correctly)."""
        now = time.monotonic()
        cached = self._sizes.get(namespace)
        if cached is not None and now - cached[1] < _SIZE_TTL and cached[0] > 0:
            return cached[0]
        size = self.count(namespace)
        self._sizes[namespace] = (size, now)
        return size

    def _create_index(self, conn: Any, dim: int | None) -> None:
        """The HNSW index (cosine) over the embeddings of dimension ``dim`` (the cache's
        one); a partial index, so a stray row of another length cannot break inserts."""
        conn.execute(
            f"CREATE INDEX IF NOT EXISTS entries_hnsw_{int(dim or 0)} ON entries USING hnsw "
            f"((embedding::vector({dim})) vector_cosine_ops) WITH (m = {self._hnsw_m}, "
            f"ef_construction = {self._hnsw_ef}) WHERE vector_dims(embedding) = {dim}"
        )
