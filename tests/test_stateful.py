"""Random sequences of SemanticCache operations against a small model of the exact layer.

The cache has no embedder, so only the exact layer answers. The model keeps, per
namespace and normalized query, the entry a correct cache must hold: its response,
creation and expiry times (TTL is absolute: ``expires_at <= now`` is expired, ttl=0
expires at once, a replacement restarts it), its recency and its store id order (for
the least-recently-used choice under ``max_entries`` and ``namespace_quotas``).
Expired entries stay counted until ``vacuum`` (or a delete, clear or eviction) removes
them. Each machine runs on the in-memory store and on a SQLite file that is closed and
reopened at random points.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from semcache import SemanticCache
from semcache._text import normalize_text

# Spellings that normalize to the same key are grouped on one line.
QUERIES = (
    "hello world",
    "Hello  World",
    " HELLO\tworld\n",
    "what is 2+2?",
    "WHAT IS 2+2?",
    "Stra\u00dfe",
    "STRASSE",
    "\ufb01le",  # the "fi" ligature: NFKC makes it "file"
    "file",
    "caf\u00e9",
    "cafe\u0301",  # e + combining acute: NFKC composes it
    "\U0001f600 smile",
)
NAMESPACES = ("default", "b", "c")
RESPONSES = ("r1", "r2", "\u05e9\u05dc\u05d5\u05dd", "\U0001f680 launch", "")
TTLS = (None, 0, 0.5, 1, 3, 10)
STEPS = (0.0, 0.25, 0.5, 1.0, 3.0, 10.0)

SETTINGS = settings(
    max_examples=60,
    stateful_step_count=30,
    derandomize=True,
    deadline=None,
    database=None,
)


@dataclass
class Entry:
    id: int
    query: str
    response: str
    created_at: float
    expires_at: float | None
    last_access: float

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at <= now


class CacheMachine(RuleBasedStateMachine):
    """The machine; subclasses pick the store and the limits."""

    persistent: ClassVar[bool] = False
    max_entries: ClassVar[int | None] = None
    quotas: ClassVar[dict[str, int]] = {}

    def __init__(self) -> None:
        super().__init__()
        self._tmp = tempfile.TemporaryDirectory(prefix="semcache-stateful-")
        self.path = str(Path(self._tmp.name) / "cache.db")
        self.now = 1_000.0
        self.model: dict[tuple[str, str], Entry] = {}
        self.next_id = 1
        self.cache = self._open()

    def _clock(self) -> float:
        return self.now

    def _open(self) -> SemanticCache:
        return SemanticCache(
            self.path if self.persistent else None,
            clock=self._clock,
            max_entries=self.max_entries,
            namespace_quotas=self.quotas or None,
        )

    def teardown(self) -> None:
        self.cache.close()
        self._tmp.cleanup()

    # -- the model's limits ---------------------------------------------------------------
    def _evict(self, namespace: str | None, limit: int) -> None:
        scope = [k for k in self.model if namespace is None or k[0] == namespace]
        excess = len(scope) - limit
        if excess <= 0:
            return
        expired = sorted(
            (e.expires_at, e.id, k)
            for k in scope
            if (e := self.model[k]).expires_at is not None and e.expired(self.now)
        )
        victims = [k for _, _, k in expired[:excess]]
        if len(victims) < excess:
            rest = sorted((self.model[k].last_access, self.model[k].id, k) for k in scope)
            victims += [k for _, _, k in rest if k not in victims][: excess - len(victims)]
        for k in victims:
            del self.model[k]

    def _model_put(
        self, queries: list[str], responses: list[str], ns: str, ttl: float | None
    ) -> None:
        expires = None if ttl is None else self.now + float(ttl)
        for query, response in zip(queries, responses, strict=True):
            self.model[(ns, normalize_text(query))] = Entry(
                self.next_id, query, response, self.now, expires, self.now
            )
            self.next_id += 1
        quota = self.quotas.get(ns)
        if quota is not None:
            self._evict(ns, quota)
        if self.max_entries is not None:
            self._evict(None, self.max_entries)

    # -- rules ----------------------------------------------------------------------------
    @rule(
        query=st.sampled_from(QUERIES),
        response=st.sampled_from(RESPONSES),
        ns=st.sampled_from(NAMESPACES),
        ttl=st.sampled_from(TTLS),
    )
    def put(self, query: str, response: str, ns: str, ttl: float | None) -> None:
        self.cache.put(query, response, namespace=ns, ttl=ttl)
        self._model_put([query], [response], ns, ttl)

    @rule(
        pairs=st.lists(
            st.tuples(st.sampled_from(QUERIES), st.sampled_from(RESPONSES)),
            min_size=1,
            max_size=4,
        ),
        ns=st.sampled_from(NAMESPACES),
        ttl=st.sampled_from(TTLS),
    )
    def put_many(self, pairs: list[tuple[str, str]], ns: str, ttl: float | None) -> None:
        queries = [q for q, _ in pairs]
        responses = [r for _, r in pairs]
        written = self.cache.put_many(queries, responses, namespace=ns, ttl=ttl)
        assert written == len(pairs)
        self._model_put(queries, responses, ns, ttl)

    @rule(query=st.sampled_from(QUERIES), ns=st.sampled_from(NAMESPACES))
    def get(self, query: str, ns: str) -> None:
        hit = self.cache.get(query, namespace=ns)
        want = self.model.get((ns, normalize_text(query)))
        if want is None or want.expired(self.now):
            assert hit is None, (query, ns, hit)
            return
        assert hit is not None, (query, ns, want)
        got: dict[str, Any] = {
            "response": hit.response,
            "query": hit.query,
            "namespace": hit.namespace,
            "layer": hit.layer,
            "similarity": hit.similarity,
            "created_at": hit.created_at,
            "expires_at": hit.expires_at,
        }
        assert got == {
            "response": want.response,
            "query": want.query,
            "namespace": ns,
            "layer": "exact",
            "similarity": 1.0,
            "created_at": want.created_at,
            "expires_at": want.expires_at,
        }
        want.last_access = max(want.last_access, self.now)

    @rule(query=st.sampled_from(QUERIES), ns=st.sampled_from(NAMESPACES))
    def delete(self, query: str, ns: str) -> None:
        # An expired entry that vacuum has not removed yet is still there to delete.
        existed = self.model.pop((ns, normalize_text(query)), None) is not None
        assert self.cache.delete(query, namespace=ns) is existed

    @rule(ns=st.sampled_from(NAMESPACES))
    def clear_namespace(self, ns: str) -> None:
        keys = [k for k in self.model if k[0] == ns]
        for k in keys:
            del self.model[k]
        assert self.cache.clear_namespace(ns) == len(keys)

    @precondition(lambda self: len(self.model) > 0)
    @rule()
    def clear(self) -> None:
        expected = len(self.model)
        self.model.clear()
        assert self.cache.clear() == expected

    @rule(ns=st.none() | st.sampled_from(NAMESPACES))
    def vacuum(self, ns: str | None) -> None:
        gone = [
            k for k, e in self.model.items() if (ns is None or k[0] == ns) and e.expired(self.now)
        ]
        for k in gone:
            del self.model[k]
        assert self.cache.vacuum(namespace=ns) == len(gone)

    @rule(step=st.sampled_from(STEPS))
    def advance_clock(self, step: float) -> None:
        self.now += step

    @rule()
    def reopen(self) -> None:
        if not self.persistent:
            return  # an in-memory cache cannot be reopened; nothing to check
        self.cache.close()
        self.cache = self._open()

    # -- invariants -----------------------------------------------------------------------
    @invariant()
    def entries_match_the_model(self) -> None:
        counts: dict[str, int] = {}
        for ns, _ in self.model:
            counts[ns] = counts.get(ns, 0) + 1
        stats = self.cache.stats()
        assert stats["entries"] == counts
        assert stats["total_entries"] == len(self.model)


class MemoryMachine(CacheMachine):
    persistent = False


class SQLiteMachine(CacheMachine):
    persistent = True


class LimitedMemoryMachine(CacheMachine):
    persistent = False
    max_entries = 6
    quotas: ClassVar[dict[str, int]] = {"b": 2}


class LimitedSQLiteMachine(CacheMachine):
    persistent = True
    max_entries = 6
    quotas: ClassVar[dict[str, int]] = {"b": 2}


TestMemoryCache = MemoryMachine.TestCase
TestMemoryCache.settings = SETTINGS
TestSQLiteCache = SQLiteMachine.TestCase
TestSQLiteCache.settings = SETTINGS
TestLimitedMemoryCache = LimitedMemoryMachine.TestCase
TestLimitedMemoryCache.settings = SETTINGS
TestLimitedSQLiteCache = LimitedSQLiteMachine.TestCase
TestLimitedSQLiteCache.settings = SETTINGS
