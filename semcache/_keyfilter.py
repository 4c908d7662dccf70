"""The exact layer's fast paths: a filter over stored keys, and a memo of computed keys.

:class:`KeyFilter` answers "is this key certainly not stored?" without touching the
store, so an exact miss (every new prompt is one) costs no SQL. It is a Bloom filter
over the 128-bit keys (already uniform hashes: the bit positions are slices of the key),
so it can say "maybe" for a key that is not stored (a false positive: the store is then
asked, as without a filter) but never "no" for a key that is, as long as every key
written to the store was :meth:`KeyFilter.add`-ed after the filter was filled from it.
That is single mode's promise (this process is the store's only writer); shared mode
does not use a filter. Removals leave their keys set (a Bloom filter cannot forget
one): a deleted, expired or evicted key costs a store lookup, as before. The filter is
filled lazily, from the store's keys, on its first use after :meth:`KeyFilter.invalidate`
(the cache invalidates it whenever it forgets what it knew of the store: clear, resync,
fork), and refills itself, twice as large, once more keys were added than it was sized
for.

:class:`KeyMemo` remembers the key of recently seen (namespace, query) pairs: the key
is a pure function of them (normalization and blake2b), so a prompt that hit before
skips both (~1.4 µs of a ~3.5 µs exact hit). Misses are not remembered: inserting every
new prompt cost a miss ~0.7 µs, more than the hash it would save a repeated miss.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

__all__ = ["KeyFilter", "KeyMemo"]

#: Bits of filter per key it is sized for (3 probes: ~0.5% false positives when full).
_BITS_PER_KEY = 16
_MIN_KEYS = 1 << 16  # 128 KiB of filter at least
_MAX_BITS = 1 << 32  # the probes are 32-bit slices of the key


class KeyFilter:
    """A Bloom filter over exact-layer keys, filled from ``source`` on first use.

    Args:
        source: returns every key stored (called to fill the filter).
    """

    __slots__ = ("_added", "_bits", "_capacity", "_mask", "_source", "fills")

    def __init__(self, source: Callable[[], Iterable[bytes]]) -> None:
        self._source = source
        self._bits: bytearray | None = None
        self._mask = 0
        self._capacity = 0
        self._added = 0
        #: How many times the filter was filled from the store (for tests and stats).
        self.fills = 0

    def invalidate(self) -> None:
        """Forget everything; the next :meth:`may_contain` refills from the store."""
        self._bits = None

    def add(self, key: bytes) -> None:
        """Record a key about to be written (call before the write: a failed write
        leaves only a false positive)."""
        bits = self._bits
        if bits is None:
            return  # filled from the store later, which will hold the key by then
        self._added += 1
        if self._added > self._capacity:
            self._bits = None  # full: refill (larger) on next use
            return
        h = int.from_bytes(key, "little")
        mask = self._mask
        for p in (h & mask, (h >> 32) & mask, (h >> 64) & mask):
            bits[p >> 3] |= 1 << (p & 7)

    def may_contain(self, key: bytes) -> bool:
        """False only if ``key`` is certainly not stored.

        Raises:
            Whatever ``source`` raises while filling (the filter stays unfilled).
        """
        bits = self._bits
        if bits is None:
            bits = self._fill()
        h = int.from_bytes(key, "little")
        mask = self._mask
        p = h & mask
        if not bits[p >> 3] >> (p & 7) & 1:
            return False
        p = (h >> 32) & mask
        if not bits[p >> 3] >> (p & 7) & 1:
            return False
        p = (h >> 64) & mask
        return bool(bits[p >> 3] >> (p & 7) & 1)

    def _fill(self) -> bytearray:
        keys = list(self._source())
        want = max(2 * len(keys), _MIN_KEYS) * _BITS_PER_KEY
        nbits = 64
        while nbits < want and nbits < _MAX_BITS:
            nbits <<= 1
        mask = nbits - 1
        table = np.zeros(nbits >> 3, dtype=np.uint8)
        if keys:  # vectorized (1M keys: ~0.1 s): the same bits as add() sets
            halves = np.frombuffer(b"".join(keys), dtype="<u8").reshape(-1, 2)
            m = np.uint64(mask)
            for p in (halves[:, 0] & m, (halves[:, 0] >> np.uint64(32)) & m, halves[:, 1] & m):
                np.bitwise_or.at(
                    table, p >> np.uint64(3), np.left_shift(1, p & np.uint64(7)).astype(np.uint8)
                )
        bits = bytearray(table.tobytes())
        self._mask = mask
        self._capacity = nbits // _BITS_PER_KEY
        self._added = len(keys)
        self._bits = bits
        self.fills += 1
        return bits


#: Queries longer than this are not memoized (bounds the memo's memory).
_MEMO_MAX_CHARS = 512
_MEMO_MAX_ENTRIES = 32_768
_MEMO_MAX_NAMESPACES = 64


class KeyMemo:
    """Memo of ``make_key(ns, normalize(query))`` for short queries that hit (bounded:
    cleared when full). ``compute`` must be a pure function of its arguments."""

    __slots__ = ("_compute", "_memo", "by_ns", "compute", "last")

    def __init__(self, compute: Callable[[str, str], bytes]) -> None:
        self._compute = compute
        #: The key computation itself (not remembered, ``last`` not set): the exact
        #: hit path reads ``by_ns`` directly and calls this on a memo miss.
        self.compute = compute
        self._memo: dict[str, dict[str, bytes]] = {}
        #: The memo: namespace -> query -> key (the same dict as ``_memo``; read only).
        self.by_ns = self._memo
        #: The query whose key :meth:`key` computed last (``memo.last is query`` after a
        #: hit: remember it).
        self.last: str | None = None

    def key(self, ns: str, query: str) -> bytes:
        """The key of ``query`` in ``ns`` (remembered, or computed and not remembered:
        a new prompt is usually a miss, asked once; see :meth:`remember`)."""
        per_ns = self._memo.get(ns)
        if per_ns is not None:
            key = per_ns.get(query)
            if key is not None:
                return key
        key = self._compute(ns, query)
        self.last = query
        return key

    def remember(self, ns: str, query: str, key: bytes) -> None:
        """Keep ``key`` as the key of ``query`` in ``ns`` (a hit: likely asked again)."""
        if len(query) > _MEMO_MAX_CHARS or type(query) is not str:
            return
        per_ns = self._memo.get(ns)
        if per_ns is None:
            if len(self._memo) >= _MEMO_MAX_NAMESPACES:
                self._memo.clear()
            per_ns = self._memo[ns] = {}
        elif len(per_ns) >= _MEMO_MAX_ENTRIES:
            per_ns.clear()
        per_ns[query] = key
