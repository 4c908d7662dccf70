"""Every stored answer's prototype, per namespace, for ``answer_support``'s veto
(``semcache._get._supported``; docs/quality.md, "The prototype veto").

An answer's prototype is the normalized sum of the vectors of every stored prompt
that got it (answers fall together by :func:`~semcache._answer_memo.answer_digest`).
A get's candidate is declined when the prototype of another answer stored twice or
more is nearer the query than its own answer's: the 8 candidates of a get see the
neighbourhood of the query, the prototypes see each answer's whole cluster. An answer
stored once has no prototype: as a candidate it is judged at its own similarity, and
it declines no other (one row per stored entry would make every get a second full
scan).

The tables are built at the first get that needs them, from the store in one pass
(the answers' digests; then the vectors of the answers stored twice or more), and
kept in step: puts add their entries (:meth:`Prototypes.add`; another process's, from
the change log: :meth:`Prototypes.added`), removals take theirs out
(:meth:`Prototypes.remove`), anything that rereads the store drops the tables
(:meth:`Prototypes.reset`). A removed entry's vector is not known any more, so its
answer's sum keeps it as a *ghost* until the ghosts are more than
1/:data:`GHOST_SHARE` of its members; then the sum is reread from the store (at the next
get that needs it: a few rows read per removal, amortized).

Bounds: nothing is kept for a cache of more than :data:`PROTOTYPE_ENTRIES` entries
(then answer support runs without the veto); past :data:`PROTOTYPE_ROWS` prototypes in
a namespace, a get compares only those of its candidates' answers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from ._errors import StoreCorruptError
from ._store import Store, answer_scan

__all__ = ["GHOST_SHARE", "PROTOTYPE_ENTRIES", "PROTOTYPE_ROWS", "Prototypes"]

#: The most entries (all namespaces) a cache keeps prototypes for: an entry costs
#: about 400 bytes here (its digest and membership), a repeated answer its sum and row
#: (4.6 KiB at 384 dimensions). Building them at the first get that needs them reads
#: every entry's answer once (and the vectors of those whose answer repeats): about
#: 0.1 s at 10,000 entries, 0.4-0.6 s at 100,000 unique answers, 0.65-0.95 s at 100,000
#: entries of 100 answers (SQLite; ``benchmarks/prototype_build.py``).
PROTOTYPE_ENTRIES: Final = 100_000
#: The most prototypes a get compares with one matrix product; past it, only its
#: candidates' answers' prototypes. At 384 dimensions, float32, on the 2-core VM, the
#: product costs 9 / 15 / 33 / 65 us for 100 / 200 / 512 / 1,000 rows when the search
#: before it has left them out of the CPU's caches, as a get's does
#: (``benchmarks/prototype_build.py``).
PROTOTYPE_ROWS: Final = 512
#: An answer's sum is reread from the store once its ghosts (removed members still in
#: it) are more than 1/GHOST_SHARE of its members.
GHOST_SHARE: Final = 4
#: Entries read from the store per call while tables are built or sums reread.
_READ_BATCH: Final = 4096
#: Answers whose keys the build keeps by text, so that one stored many times is
#: normalized and hashed once (the first ones met; about 1 MB of text at 250
#: characters).
_KNOWN_ANSWERS: Final = 4096

#: ``decode(blobs)``: stored vectors (bytes) as rows (``IndexSet.decode``).
Decode = Callable[[Sequence[bytes]], npt.NDArray[Any]]
#: ``digest(response)``: a stored answer's key (``_answer_memo.answer_digest``).
Digest = Callable[[str], bytes]


class _Table:
    """One namespace's answers: membership, sums and the prototypes' matrix."""

    __slots__ = ("digest_of", "ghosts", "matrix", "members", "names", "rows", "stale", "sums")

    def __init__(self) -> None:
        self.digest_of: dict[int, bytes] = {}  # entry id -> its answer's digest
        self.members: dict[bytes, set[int]] = {}
        self.sums: dict[bytes, npt.NDArray[np.float64]] = {}  # answers stored twice or more
        self.ghosts: dict[bytes, int] = {}
        self.stale: set[bytes] = set()  # sums to (re)read from the store
        self.rows: dict[bytes, int] = {}  # a prototype's row in the matrix
        self.names: list[bytes] = []
        self.matrix: npt.NDArray[np.float32] | None = None

    def __len__(self) -> int:
        return len(self.digest_of)

    def add(self, entry_id: int, key: bytes, vector: npt.NDArray[Any] | None) -> bool:
        """Count an entry (``vector``: its stored vector, None if not at hand); False
        if it was counted already."""
        if entry_id in self.digest_of:
            return False
        self.digest_of[entry_id] = key
        members = self.members.get(key)
        if members is None:
            self.members[key] = {entry_id}
            return True
        members.add(entry_id)
        total = self.sums.get(key)
        if total is None or vector is None or key in self.stale:
            self.stale.add(key)  # (two members: the first one's vector is read then)
        else:
            total += vector
            self._set_row(key, total)
        return True

    def remove(self, entry_id: int) -> None:
        key = self.digest_of.pop(entry_id, None)
        if key is None:
            return
        members = self.members[key]
        members.discard(entry_id)
        if len(members) < 2:
            if not members:
                del self.members[key]
            self.sums.pop(key, None)
            self.ghosts.pop(key, None)
            self.stale.discard(key)
            self._drop_row(key)
            return
        ghosts = self.ghosts[key] = self.ghosts.get(key, 0) + 1
        if ghosts * GHOST_SHARE > len(members):
            self.stale.add(key)

    def _set_row(self, key: bytes, total: npt.NDArray[np.float64]) -> None:
        norm = float(np.sqrt(total @ total))
        if norm == 0.0:
            self._drop_row(key)
            return
        row = self.rows.get(key)
        matrix = self.matrix
        if row is None:
            row = len(self.names)
            if matrix is None or row == len(matrix):
                grown = np.zeros((max(16, 2 * row), len(total)), dtype=np.float32)
                if matrix is not None:
                    grown[:row] = matrix
                self.matrix = matrix = grown
            self.rows[key] = row
            self.names.append(key)
        assert matrix is not None
        matrix[row] = total / norm

    def _drop_row(self, key: bytes) -> None:
        row = self.rows.pop(key, None)
        if row is None:
            return
        assert self.matrix is not None
        last = self.names.pop()
        if last != key:  # the last row moves into the freed one
            self.names[row] = last
            self.rows[last] = row
            self.matrix[row] = self.matrix[len(self.names)]


class Prototypes:
    """The answers' prototypes of every namespace of one store (see the module
    docstring). Used under the engine's lock."""

    def __init__(
        self, store: Store, decode: Decode, digest: Digest, clock: Callable[[], float]
    ) -> None:
        self.store = store
        self._decode = decode
        self._digest = digest
        self._clock = clock
        self._tables: dict[str, _Table] | None = None  # None: not built
        #: The cache holds more than :data:`PROTOTYPE_ENTRIES` entries: none kept.
        self.off = False
        self._entries = 0

    # -- keeping in step ----------------------------------------------------------------
    def reset(self) -> None:
        """Forget everything (the store changed under the tables): the next get that
        needs them builds them again."""
        self._tables = None
        self.off = False
        self._entries = 0

    def summary(self) -> dict[str, Any]:
        """What is kept, for ``stats()``: ``state`` ("not read" until the first get
        that needs them, "kept", or "off": the cache holds more than
        :data:`PROTOTYPE_ENTRIES` entries), and per namespace the answers stored twice
        or more (its prototypes)."""
        tables = self._tables
        state = "off" if self.off else "not read" if tables is None else "kept"
        counts = {} if tables is None else {ns: len(t.names) for ns, t in sorted(tables.items())}
        return {"state": state, "prototypes": counts}

    def digest_of(self, namespace: str, entry_id: int) -> bytes | None:
        """The key of the entry's answer, if the tables hold it."""
        tables = self._tables
        table = None if tables is None else tables.get(namespace)
        return None if table is None else table.digest_of.get(entry_id)

    def drop(self, namespace: str) -> None:
        """Forget one namespace's table (its entries were all removed)."""
        tables = self._tables
        if tables is not None:
            table = tables.pop(namespace, None)
            if table is not None:
                self._entries -= len(table)

    def add(
        self,
        namespace: str,
        ids: Sequence[int],
        responses: Sequence[str],
        vectors: npt.NDArray[Any],
    ) -> None:
        """Entries this process wrote (rows of ``vectors``, the stored dtype)."""
        if self._tables is None:
            return
        table = self._tables.get(namespace)
        if table is None:
            table = self._tables[namespace] = _Table()
        digest = self._digest
        for i, (entry_id, response) in enumerate(zip(ids, responses, strict=True)):
            # (a row is added into its answer's float64 sum as it is: no copy per put)
            self._entries += table.add(entry_id, digest(response), vectors[i])
        self._check_size()

    def added(self, namespace: str, ids: Sequence[int], vectors: npt.NDArray[Any]) -> None:
        """Entries written since the tables were read, as the change log replays them:
        those not counted yet (another process's; this one's were counted at their
        put) have their answers read from the store."""
        if self._tables is None:
            return
        table = self._tables.get(namespace)
        new = [
            (i, row)
            for i, row in zip(ids, vectors, strict=True)
            if table is None or i not in table.digest_of
        ]
        if not new:
            return
        entries = self.store.get_by_ids([i for i, _ in new])
        known = [(i, row) for i, row in new if i in entries]
        self.add(
            namespace,
            [i for i, _ in known],
            [entries[i].response for i, _ in known],
            np.asarray([row for _, row in known]).reshape(len(known), vectors.shape[1]),
        )

    def remove(self, removed: Iterable[tuple[int, str]]) -> None:
        """Entries (``(id, namespace)`` pairs) that left the store."""
        tables = self._tables
        if tables is None:
            return
        for entry_id, namespace in removed:
            table = tables.get(namespace)
            if table is not None and entry_id in table.digest_of:
                table.remove(entry_id)
                self._entries -= 1

    # -- the veto -------------------------------------------------------------------------
    def declined(
        self,
        namespace: str,
        query: npt.NDArray[np.float32],
        keys: Sequence[bytes],
        sims: Sequence[float],
    ) -> list[bool] | None:
        """For each of a get's candidates (their answers' ``keys``, their similarities
        ``sims``): whether the prototype of another answer stored twice or more is
        nearer ``query`` than its own answer's (its prototype; an answer stored once:
        the candidate's similarity). None when no prototypes are kept (more than
        :data:`PROTOTYPE_ENTRIES` entries: no veto)."""
        if self._tables is None:
            if self.off:
                return None
            self._build()
            if self._tables is None:
                return None
        table = self._tables.get(namespace)
        if table is not None and table.stale:
            self._reread(table)
        if table is None or not table.names or table.matrix is None:
            return [False] * len(keys)
        rows, names, matrix = table.rows, table.names, table.matrix
        # The nearest prototype's answer declines every other answer whose own is
        # farther; its own candidates it cannot (their answer's is the nearest).
        if len(names) <= PROTOTYPE_ROWS:
            dots = matrix[: len(names)] @ query
            top = int(dots.argmax())
            first_key, first = names[top], float(dots[top])
        else:  # the candidates' answers' prototypes only
            first_key, first = b"", -np.inf
            for key in set(keys):
                row = rows.get(key)
                if row is not None:
                    dot = float(matrix[row] @ query)
                    if dot > first:
                        first_key, first = key, dot
            dots = None
        out = []
        for key, sim in zip(keys, sims, strict=True):
            if key == first_key:
                out.append(False)
                continue
            row = rows.get(key)
            if row is None:
                own = sim
            elif dots is not None:
                own = float(dots[row])
            else:
                own = float(matrix[row] @ query)
            out.append(first > own)
        return out

    # -- reading the store --------------------------------------------------------------
    def _build(self) -> None:
        """Every namespace's table from the store: the answers' digests, then the sums
        of those stored twice or more. Nothing when the store holds more than
        :data:`PROTOTYPE_ENTRIES` entries (:attr:`off`)."""
        store = self.store
        if store.count() > PROTOTYPE_ENTRIES:
            self.off = True
            return
        tables: dict[str, _Table] = {}
        digest, entries = self._digest, 0
        known: dict[str, bytes] = {}  # (answers that repeat are normalized once)
        for namespace, ids, responses in self._answers():
            table = tables.setdefault(namespace, _Table())
            for entry_id, response in zip(ids, responses, strict=True):
                key = known.get(response)
                if key is None:
                    key = digest(response)
                    if len(known) < _KNOWN_ANSWERS:
                        known[response] = key
                entries += table.add(entry_id, key, None)
        self._tables, self._entries = tables, entries
        self._check_size()
        for table in tables.values():
            self._reread(table)

    def _answers(self) -> Iterator[tuple[str, list[int], list[str]]]:
        """The stored answers of the entries with a vector, not expired, by namespace:
        in one pass where the store offers it (:class:`~semcache._store.AnswerScan`; on
        SQLite that read takes 0.08-0.11 s at 100,000 entries), else by id after
        ``iter_vectors`` (0.35-0.5 s)."""
        store, now = self.store, self._clock()
        scan = answer_scan(store)
        if scan is not None:
            for batch in scan.iter_answers(now=now, batch_size=_READ_BATCH):
                yield batch.namespace, batch.ids, batch.responses
            return
        for vectors in store.iter_vectors(now=now, batch_size=_READ_BATCH):
            found = store.get_by_ids(vectors.ids)
            ids = [i for i in vectors.ids if i in found]
            yield vectors.namespace, ids, [found[i].response for i in ids]

    def _reread(self, table: _Table) -> None:
        """Read the sums of ``table``'s stale answers from the store's vectors, a batch
        at a time (members gone from the store meanwhile are dropped)."""
        stale = [k for k in table.stale if len(table.members.get(k, ())) >= 2]
        ids = [i for k in stale for i in sorted(table.members[k])]
        sums: dict[bytes, npt.NDArray[np.float64]] = {}
        found: set[int] = set()
        for start in range(0, len(ids), _READ_BATCH):  # (a failed read leaves them stale)
            batch = ids[start : start + _READ_BATCH]
            here, rows = self._rows(batch, self.store.get_vectors(batch))
            for entry_id, row in zip(here, rows, strict=True):
                key = table.digest_of[entry_id]
                total = sums.get(key)
                if total is None:
                    sums[key] = row.copy()
                else:
                    total += row
            found.update(here)
        table.stale.clear()
        for key in stale:
            for entry_id in [i for i in table.members[key] if i not in found]:
                table.remove(entry_id)  # gone from the store meanwhile
                self._entries -= 1
            table.ghosts.pop(key, None)
            table.stale.discard(key)  # (read now)
            if len(table.members.get(key, ())) < 2:
                continue  # (remove() dropped its sum and row)
            total = table.sums[key] = sums[key]
            table._set_row(key, total)

    def _rows(
        self, ids: list[int], vectors: dict[int, tuple[str, bytes]]
    ) -> tuple[list[int], npt.NDArray[np.float64]]:
        """The entries of ``ids`` that have a readable vector, and their rows (float64).
        One the cache cannot decode (another dimension or dtype) is left out, as if
        gone: the index rebuild reports a corrupt store; a get does not fail here."""
        here = [i for i in ids if i in vectors]
        try:
            return here, self._decode([vectors[i][1] for i in here]).astype(np.float64)
        except StoreCorruptError:
            good, rows = [], []
            for i in here:
                try:
                    rows.append(self._decode([vectors[i][1]])[0])
                except StoreCorruptError:
                    continue
                good.append(i)
            return good, np.asarray(rows, dtype=np.float64).reshape(len(good), -1)

    def _check_size(self) -> None:
        if self._entries > PROTOTYPE_ENTRIES:
            self._tables, self.off, self._entries = None, True, 0
