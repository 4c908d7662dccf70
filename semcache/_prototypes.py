"""Every stored answer's prototype, per namespace, for ``answer_support``'s veto
(``semcache._get._supported``; docs/quality.md, "The prototype veto").

An answer's prototype is the normalized sum of the vectors of every stored prompt
that got it (answers fall together by :func:`~semcache._answer_memo.answer_digest`).
The 8 candidates of a get see the neighbourhood of the query, the prototypes see each
answer's whole cluster. A candidate is weighed against its *rivals*, the prototypes of
the other answers stored twice or more nearest the query (:meth:`Prototypes.standing`):
with ``own`` its answer's prototype's similarity to the query, each rival at ``c``
weighs ``exp((c - own) / T)``, as a softmax over the answers at the temperature the
embedder was trained with (:data:`RIVAL_TEMPERATURE`) would. Where the rivals together
weigh as much as its answer (their sum ``R >= 1``: the answer is no more likely than
the rest) the candidate is declined; otherwise its score's excess over the support floor is
multiplied by ``1 - R``, its answer's *standing*.
One nearer rival declines alone (the *veto*); several each farther can too, which is
what a query that belongs to none of the stored answers looks like. An answer stored
once has no prototype: as a candidate it is judged at its own similarity, and it is no
rival (one row per stored entry would make every get a second full scan); where no
answer is stored twice, nothing changes.

The tables are built at the first get that needs them, from the store in one pass
(the answers' digests; then the vectors of the answers stored twice or more), or
restored at open from the index snapshots they were saved with at close
(:meth:`Prototypes.snapshot`, :meth:`Prototypes.restore`), and kept in step: puts
add their entries (:meth:`Prototypes.add`; another process's, from the change log:
:meth:`Prototypes.added`), removals take theirs out
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

import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from . import _agreement
from ._errors import StoreCorruptError
from ._store import Store, answer_scan

__all__ = [
    "GHOST_SHARE",
    "PROTOTYPE_ENTRIES",
    "PROTOTYPE_ROWS",
    "RIVALS",
    "RIVAL_TEMPERATURE",
    "Prototypes",
]

logger = logging.getLogger("semcache")

#: The most entries (all namespaces) a cache keeps prototypes for: an entry costs
#: about 400 bytes here (its digest and membership), a repeated answer its sum and row
#: (4.6 KiB at 384 dimensions). Building them at the first get that needs them reads
#: every entry's answer once (and the vectors of those whose answer repeats): about
#: 0.1 s at 10,000 entries, 0.35-0.61 s at 100,000 unique answers, 0.6-1.1 s at 100,000
#: entries of 100 answers (SQLite; ``benchmarks/prototype_build.py``).
PROTOTYPE_ENTRIES: Final = 100_000
#: The most prototypes a get compares with one matrix product; past it, only its
#: candidates' answers' prototypes. At 384 dimensions, float32, on the 2-core VM, the
#: product costs 9 / 15 / 33 / 65 us for 100 / 200 / 512 / 1,000 rows when the search
#: before it has left them out of the CPU's caches, as a get's does
#: (``benchmarks/prototype_build.py``).
PROTOTYPE_ROWS: Final = 512
#: The temperature of the rivals' weights (:meth:`Prototypes.standing`): that of the
#: contrastive loss sentence-transformers trains its embedders with
#: (``MultipleNegativesRankingLoss``, scale 20 on the cosine: a softmax at 1/20), the
#: default embedder (all-MiniLM-L6-v2) among them. As it tends to 0 the rule becomes the
#: hard veto (declined by one nearer rival, untouched otherwise).
RIVAL_TEMPERATURE: Final = 0.05
#: The rival prototypes a candidate is weighed against: the nearest ones, as many as
#: the candidates a get reads (:data:`~semcache._agreement.SUPPORT_K`).
RIVALS: Final = 8
#: An answer's sum is reread from the store once its ghosts (removed members still in
#: it) are more than 1/GHOST_SHARE of its members.
GHOST_SHARE: Final = 4
#: Entries read from the store per call while tables are built or sums reread.
_READ_BATCH: Final = 4096
#: Answers whose keys the build keeps by text, so that one stored many times is
#: normalized and hashed once (the first ones met; about 1 MB of text at 250
#: characters).
_KNOWN_ANSWERS: Final = 4096

#: The bytes of an answer's digest (``_agreement.answer_digest``), as snapshots keep it.
_DIGEST: Final = 16
#: The saved tables' format (:meth:`Prototypes.snapshot`): to be raised whenever their
#: layout or the answers' digest (``answer_digest``: normalization and hash) changes, so
#: that tables saved by another version are read again rather than mixed with new keys.
_SAVED_FORMAT: Final = 1


def _largest_numpy(values: npt.NDArray[np.float32], count: int) -> list[float]:
    """The ``count`` largest of ``values`` (all where fewer), highest first, as Python
    floats: the NumPy twin of ``_native/_support.pyx``'s ``largest`` (the same floats:
    a selection, no arithmetic), the same errors.

    Raises:
        ValueError: ``count`` below 0.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    n = len(values)
    if 0 < count < n:
        values = np.partition(values, n - count)[n - count :]
    return sorted(values.tolist(), reverse=True)[:count]


#: The rival answers' nearest prototypes (:func:`_largest_numpy`'s signature; the
#: values float32, as ``unit_rows`` gives the query): in C where the extension is built
#: (``np.partition`` takes 10 us inside a get, its caches cold), else
#: :func:`_largest_numpy`.
_LARGEST = _agreement.native_twin("largest", _largest_numpy)

#: ``decode(blobs)``: stored vectors (bytes) as rows (``IndexSet.decode``).
Decode = Callable[[Sequence[bytes]], npt.NDArray[Any]]
#: ``digest(response)``: a stored answer's key (``_answer_memo.answer_digest``).
Digest = Callable[[str], bytes]


class _Table:
    """One namespace's answers: membership, sums and the prototypes' matrix."""

    __slots__ = (
        "changes",
        "digest_of",
        "ghosts",
        "matrix",
        "members",
        "names",
        "rows",
        "stale",
        "sums",
    )

    def __init__(self) -> None:
        self.digest_of: dict[int, bytes] = {}  # entry id -> its answer's digest
        self.members: dict[bytes, set[int]] = {}
        self.sums: dict[bytes, npt.NDArray[np.float64]] = {}  # answers stored twice or more
        self.ghosts: dict[bytes, int] = {}
        self.stale: set[bytes] = set()  # sums to (re)read from the store
        self.rows: dict[bytes, int] = {}  # a prototype's row in the matrix
        self.names: list[bytes] = []
        self.matrix: npt.NDArray[np.float32] | None = None
        self.changes = 0  # entries added and removed (the answer model's refits)

    def __len__(self) -> int:
        return len(self.digest_of)

    def add(self, entry_id: int, key: bytes, vector: npt.NDArray[Any] | None) -> bool:
        """Count an entry (``vector``: its stored vector, None if not at hand); False
        if it was counted already."""
        if entry_id in self.digest_of:
            return False
        self.digest_of[entry_id] = key
        self.changes += 1
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
        self.changes += 1
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

    def repeated(self) -> bool:
        """Whether some answer is stored twice or more."""
        return bool(self.names) or bool(self.stale)

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

    # -- the warm start -----------------------------------------------------------------
    def snapshot(self, dim: int) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]] | None:
        """The tables as a header and arrays for the index snapshots (saved beside the
        indexes, with their change sequence: ``semcache._snapshots``), or None when none
        are kept (not read yet, or off). A stale sum is not saved: it is read again
        after a restore, as it would have been."""
        tables = self._tables
        if tables is None or self.off:
            return None
        names = sorted(tables)
        ids: list[int] = []
        digests: list[bytes] = []
        owner: list[int] = []
        keys: list[bytes] = []
        sums: list[npt.NDArray[np.float64]] = []
        ghosts: list[int] = []
        sum_owner: list[int] = []
        for n, namespace in enumerate(names):
            table = tables[namespace]
            ids += table.digest_of
            digests += table.digest_of.values()
            owner += [n] * len(table)
            for key, total in table.sums.items():
                if key not in table.stale:
                    keys.append(key)
                    sums.append(total)
                    ghosts.append(table.ghosts.get(key, 0))
                    sum_owner.append(n)
        if any(len(d) != _DIGEST for d in digests) or any(len(t) != dim for t in sums):
            return None  # (another digest than answer_digest's: not saved)
        arrays: dict[str, npt.NDArray[Any]] = {
            "ids": np.asarray(ids, dtype=np.int64),
            "digests": np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(-1, _DIGEST),
            "owner": np.asarray(owner, dtype=np.int32),
            "keys": np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(-1, _DIGEST),
            "sums": np.asarray(sums, dtype=np.float64).reshape(len(sums), dim),
            "ghosts": np.asarray(ghosts, dtype=np.int64),
            "sum_owner": np.asarray(sum_owner, dtype=np.int32),
        }
        return {"format": _SAVED_FORMAT, "namespaces": names, "entries": len(ids)}, arrays

    def restore(
        self,
        header: Mapping[str, Any],
        arrays: Mapping[str, npt.NDArray[Any]],
        *,
        dim: int,
        bound: int,
    ) -> bool:
        """Take the tables from what :meth:`snapshot` saved, checked first (nothing in a
        snapshot is trusted: every shape, count and index is bounded, ``bound`` being
        the store's sequence, which no live entry's id exceeds). False, and nothing
        kept, when anything does not hold: the tables are then built at the first get
        that needs them. The change log since the snapshot is replayed after it, like
        the indexes' (:meth:`added`, :meth:`remove`)."""
        try:
            tables = _restored(header, arrays, dim, min(bound, PROTOTYPE_ENTRIES), bound)
        except (KeyError, TypeError, ValueError) as exc:
            logger.warning(
                "semcache: saved answer prototypes unusable (%s); reading them again", exc
            )
            return False
        self._tables, self._entries, self.off = tables, sum(map(len, tables.values())), False
        return True

    # -- the answer model's reads ----------------------------------------------------------
    def table(self, namespace: str) -> _Table | None:
        """The namespace's table, built (or its stale sums read) first if need be; None
        when none is kept (off) or the namespace has no entry."""
        if self._tables is None:
            if self.off:
                return None
            self._build()
            if self._tables is None:
                return None
        table = self._tables.get(namespace)
        if table is not None and table.stale:
            self._reread(table)
        return table

    def vectors(self, ids: Sequence[int]) -> tuple[list[int], npt.NDArray[np.float64]]:
        """The stored vectors of the entries of ``ids`` that have a readable one (in
        that order), a batch at a time."""
        here: list[int] = []
        rows: list[npt.NDArray[np.float64]] = []
        for start in range(0, len(ids), _READ_BATCH):
            batch = list(ids[start : start + _READ_BATCH])
            got, block = self._rows(batch, self.store.get_vectors(batch))
            if got:
                here += got
                rows.append(block)
        if not here:
            return [], np.zeros((0, 0))
        return here, np.concatenate(rows)

    # -- the veto -------------------------------------------------------------------------
    def standing(
        self,
        namespace: str,
        query: npt.NDArray[np.float32],
        keys: Sequence[bytes],
        sims: Sequence[float],
    ) -> list[float] | None:
        """For each of a get's candidates (their answers' ``keys``, their similarities
        ``sims``): how far its answer stands above its rivals (see the module
        docstring): ``1 - R``, ``R`` the sum over the :data:`RIVALS` nearest
        prototypes of other answers of ``exp((rival - own) / T)``, ``own`` its
        answer's prototype's similarity to ``query`` (an answer stored once: the
        candidate's similarity), ``T`` = :data:`RIVAL_TEMPERATURE`: 1.0 with no rival,
        0.0 where ``R >= 1`` (declined: the rivals outweigh it). None when no
        prototypes are kept (more than :data:`PROTOTYPE_ENTRIES` entries)."""
        rivalry = self._rivalry(namespace, query, keys, sims)
        if rivalry is None:
            return None
        scale = 1.0 / RIVAL_TEMPERATURE
        out = []
        known: dict[tuple[bytes, float], float] = {}  # (an answer's candidates share it)
        for key, (own, rivals) in zip(keys, rivalry, strict=True):
            standing = known.get((key, own))
            if standing is None:
                mass = 0.0
                for d in rivals:
                    mass += math.exp((d - own) * scale)
                standing = known[key, own] = max(0.0, 1.0 - mass)
            out.append(standing)
        return out

    def declined(
        self,
        namespace: str,
        query: npt.NDArray[np.float32],
        keys: Sequence[bytes],
        sims: Sequence[float],
    ) -> list[bool] | None:
        """For each of a get's candidates: whether the prototype of another answer
        stored twice or more is nearer ``query`` than its own answer's (the *veto*, the
        limit of :meth:`standing` as its temperature tends to 0; the error budget's
        path applies it). None when no prototypes are kept."""
        rivalry = self._rivalry(namespace, query, keys, sims)
        if rivalry is None:
            return None
        return [bool(rivals) and rivals[0] > own for own, rivals in rivalry]

    def _rivalry(
        self,
        namespace: str,
        query: npt.NDArray[np.float32],
        keys: Sequence[bytes],
        sims: Sequence[float],
    ) -> list[tuple[float, list[float]]] | None:
        """Per candidate: its answer's nearness to ``query`` (its prototype's
        similarity; an answer stored once: the candidate's) and its rivals', the
        :data:`RIVALS` nearest prototypes of other answers, nearest first (past
        :data:`PROTOTYPE_ROWS` prototypes, only the candidates' answers' are compared).
        None when no prototypes are kept."""
        table = self.table(namespace)
        if self._tables is None:  # (off)
            return None
        if table is None or not table.names or table.matrix is None:
            return [(sim, []) for sim in sims]
        rows, matrix = table.rows, table.matrix
        count = len(table.names)
        dots: npt.NDArray[np.float32] | None = None
        if count <= PROTOTYPE_ROWS:
            dots = matrix[:count] @ query
            whole = count <= RIVALS + 1  # (every prototype in ``top``)
            top = _LARGEST(dots, RIVALS + 1)  # (the own among them, or not)
        else:  # the candidates' answers' prototypes only
            found = {row for row in map(rows.get, keys) if row is not None}
            top = sorted((float(matrix[r] @ query) for r in found), reverse=True)
            whole = True
        out: list[tuple[float, list[float]]] = []
        known: dict[bytes, tuple[float, list[float]]] = {}  # (an answer's candidates share it)
        for key, sim in zip(keys, sims, strict=True):
            seen = known.get(key)
            if seen is None:
                row = rows.get(key)
                if row is None:  # stored once: its own similarity, every prototype a rival
                    out.append((sim, top[:RIVALS]))
                    continue
                own = float(dots[row]) if dots is not None else float(matrix[row] @ query)
                rivals = top[:]
                if whole or own >= top[-1]:  # (its own prototype among them)
                    rivals.remove(own)
                seen = known[key] = (own, rivals[:RIVALS])
            out.append(seen)
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
        in one pass where the store offers it (:class:`~semcache._store.AnswerScan`),
        else by id after ``iter_vectors`` (the build's time both ways: docs/quality.md,
        "The prototype veto")."""
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


def _restored(
    header: Mapping[str, Any],
    arrays: Mapping[str, npt.NDArray[Any]],
    dim: int,
    most: int,
    bound: int,
) -> dict[str, _Table]:
    """The tables :meth:`Prototypes.snapshot` saved, every claim checked.

    Raises:
        KeyError / TypeError / ValueError: anything missing, of another shape or kind,
            out of range, repeated or inconsistent.
    """
    if header["format"] != _SAVED_FORMAT:
        raise ValueError(f"saved in format {header['format']!r}, not {_SAVED_FORMAT}")
    names = header["namespaces"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise TypeError("namespaces is not a list of names")
    if len(set(names)) != len(names):
        raise ValueError("a namespace is named twice")

    def array(name: str, dtype: Any, shape: tuple[int, ...]) -> npt.NDArray[Any]:
        got = arrays[name]
        if got.dtype != np.dtype(dtype) or got.shape != shape:
            raise ValueError(f"{name} is {got.dtype} {got.shape}, not {np.dtype(dtype)} {shape}")
        return got

    n = len(arrays["ids"])
    if not 0 <= n <= most or header["entries"] != n:
        raise ValueError(f"{n} entries (at most {most})")
    ids = array("ids", np.int64, (n,))
    owner = array("owner", np.int32, (n,))
    raw = array("digests", np.uint8, (n, _DIGEST)).tobytes()
    m = len(arrays["keys"])
    keys = array("keys", np.uint8, (m, _DIGEST)).tobytes()
    sums = array("sums", np.float64, (m, dim))
    ghosts = array("ghosts", np.int64, (m,))
    sum_owner = array("sum_owner", np.int32, (m,))
    if n and (ids.min() < 1 or ids.max() > bound or len(np.unique(ids)) != n):
        raise ValueError("entry ids out of range or repeated")
    for who in (owner, sum_owner):
        if len(who) and (who.min() < 0 or who.max() >= len(names)):
            raise ValueError("a namespace index out of range")
    if not np.isfinite(sums).all() or (m and ghosts.min() < 0):
        raise ValueError("a sum that is not finite, or ghosts below 0")
    tables = {namespace: _Table() for namespace in names}
    order = [tables[namespace] for namespace in names]
    one: dict[bytes, bytes] = {}  # (an answer's key kept once, as a build keeps it)
    for k, (entry_id, n_) in enumerate(zip(ids.tolist(), owner.tolist(), strict=True)):
        table, key = order[n_], raw[k * _DIGEST : (k + 1) * _DIGEST]
        key = one.setdefault(key, key)
        table.digest_of[entry_id] = key
        members = table.members.get(key)
        if members is None:
            table.members[key] = {entry_id}
        else:
            members.add(entry_id)
    for j, n_ in enumerate(sum_owner.tolist()):
        table, key = order[n_], keys[j * _DIGEST : (j + 1) * _DIGEST]
        count, ghost = len(table.members.get(key, ())), int(ghosts[j])
        if count < 2 or key in table.sums or ghost * GHOST_SHARE > count:
            raise ValueError("a sum of an answer stored less than twice, twice, or stale")
        table.sums[key] = total = sums[j].copy()
        if ghost:
            table.ghosts[key] = ghost
        table._set_row(key, total)
    for table in order:  # (repeated answers saved without a sum: read at the first need)
        table.stale.update(
            k for k, v in table.members.items() if len(v) >= 2 and k not in table.sums
        )
    return tables
