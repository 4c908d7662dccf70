"""The exact layer's key filter and key memo: unit behaviour, and that a cache using them
never turns a stored key into a miss (puts, reopen, TTL, delete, clear, loads, failed
writes, shared mode with another process). Injected clock, seeded data, no sleeps."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import FakeClock

import semcache._keyfilter as kf
from semcache import SemanticCache, StoreError
from semcache._cache import engine_of
from semcache._keyfilter import KeyFilter, KeyMemo
from semcache._text import key_maker, make_key, normalize_text


def keys(n: int, tag: str = "k") -> list[bytes]:
    return [make_key("default", f"{tag} {i}") for i in range(n)]


# -- KeyFilter ---------------------------------------------------------------------------
def test_filter_has_no_false_negatives_and_few_false_positives() -> None:
    stored = keys(20_000)
    f = KeyFilter(lambda: stored)
    assert all(f.may_contain(k) for k in stored)
    added = keys(5_000, "added")
    for k in added:
        f.add(k)
    assert all(f.may_contain(k) for k in added + stored)
    absent = keys(20_000, "absent")
    false_positives = sum(f.may_contain(k) for k in absent)
    assert false_positives < 100  # ~0 at this fill; 0.5% would be 100
    assert f.fills == 1


def test_filter_fills_lazily_and_refills_after_invalidate() -> None:
    stored: list[bytes] = []
    calls = []

    def source() -> list[bytes]:
        calls.append(1)
        return list(stored)

    f = KeyFilter(source)
    f.add(b"x" * 16)  # unfilled: nothing to record, the store will hold it at fill time
    assert calls == []
    assert not f.may_contain(make_key("default", "a"))
    assert len(calls) == 1
    stored.append(make_key("default", "a"))  # written behind the filter's back...
    f.invalidate()  # ...which is why the cache invalidates when it forgets the store
    assert f.may_contain(make_key("default", "a"))
    assert f.fills == 2


def test_filter_refills_larger_once_over_capacity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kf, "_MIN_KEYS", 32)  # 64 keys of capacity
    stored: list[bytes] = []
    f = KeyFilter(lambda: list(stored))
    assert not f.may_contain(b"\x00" * 16)
    new = keys(500, "grow")
    for k in new:
        stored.append(k)  # the store write
        f.add(k)
        assert f.may_contain(k)
    assert f.fills > 1  # it overflowed, refilled from the store, and still knows all
    assert all(f.may_contain(k) for k in new)


def test_filter_fill_error_propagates_and_leaves_it_unfilled() -> None:
    def broken() -> list[bytes]:
        raise StoreError("down")

    f = KeyFilter(broken)
    with pytest.raises(StoreError):
        f.may_contain(b"\x01" * 16)
    assert f.fills == 0


# -- KeyMemo -----------------------------------------------------------------------------
def test_memo_remembers_only_what_it_is_told(monkeypatch: pytest.MonkeyPatch) -> None:
    computed = []

    def compute(ns: str, q: str) -> bytes:
        computed.append(q)
        return make_key(ns, normalize_text(q))

    memo = KeyMemo(compute)
    k = memo.key("default", "Hello  World")
    assert k == make_key("default", "hello world")
    assert memo.last == "Hello  World"
    memo.key("default", "Hello  World")
    assert len(computed) == 2  # a miss is not remembered
    memo.remember("default", "Hello  World", k)
    assert memo.key("other", "Hello  World") == make_key("other", "hello world")
    assert memo.key("default", "Hello  World") == k
    assert len(computed) == 3
    monkeypatch.setattr(kf, "_MEMO_MAX_ENTRIES", 4)
    for i in range(10):
        memo.remember("default", f"q{i}", b"k" * 16)
    assert len(memo._memo["default"]) <= 4
    memo.remember("default", "x" * 10_000, b"k" * 16)  # too long: not kept
    assert "x" * 10_000 not in memo._memo["default"]


# -- in the cache ------------------------------------------------------------------------
def open_cache(path: Path, clock: FakeClock, **kw: Any) -> SemanticCache:
    return SemanticCache(str(path), clock=clock, **kw)


def count_store_lookups(cache: SemanticCache, monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    seen: list[bytes] = []
    real = cache.store.get_by_key

    def spy(key: bytes) -> Any:
        seen.append(key)
        return real(key)

    monkeypatch.setattr(cache.store, "get_by_key", spy)
    return seen


def test_a_miss_of_a_never_stored_prompt_asks_no_store(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = open_cache(tmp_path / "c.db", clock)
    cache.put_many([f"q {i}" for i in range(100)], ["a"] * 100)
    # the hot map would answer hits anyway; make them read the store
    engine_of(cache).forget_exact()
    lookups = count_store_lookups(cache, monkeypatch)
    assert cache.get("a prompt nobody stored") is None
    assert lookups == []
    assert cache.get("q 7") is not None
    assert len(lookups) == 1
    cache.close()


def test_every_write_path_and_reopen_keeps_stored_keys_visible(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "c.db"
    cache = open_cache(path, clock)
    assert cache.get("first") is None  # fills the (empty) filter
    cache.put("first", "1")
    cache.put_many(["second", "third"], ["2", "3"])
    assert cache.get_or_put("fourth", lambda: "4") == "4"
    for q in ("first", "second", "third", "fourth", "FIRST  "):
        hit = cache.get(q)
        assert hit is not None, q
        assert hit.layer == "exact"
    cache.close()
    cache = open_cache(path, clock)  # a new process's filter is filled from the file
    assert cache.get("a miss first") is None
    for q in ("first", "second", "third", "fourth"):
        assert cache.get(q) is not None, q
    cache.close()


def test_ttl_delete_clear_and_clear_namespace(tmp_path: Path, clock: FakeClock) -> None:
    cache = open_cache(tmp_path / "c.db", clock)
    assert cache.get("warm") is None
    cache.put("short", "s", ttl=10)
    clock.advance(11)
    assert cache.get("short") is None
    assert cache.stats()["misses"]["expired"] == 1  # found in the store, then expired
    cache.put("short", "again", ttl=10)
    assert cache.get("short") is not None
    cache.put("gone", "g")
    assert cache.delete("gone")
    assert cache.get("gone") is None
    cache.put("gone", "back")
    assert cache.get("gone") is not None
    cache.put("n", "1", namespace="tenant")
    assert cache.clear_namespace("tenant") == 1
    assert cache.get("n", namespace="tenant") is None
    cache.put("n", "2", namespace="tenant")
    assert cache.get("n", namespace="tenant") is not None
    cache.clear()
    assert cache.get("gone") is None
    cache.put("gone", "after clear")
    hit = cache.get("gone")
    assert hit is not None
    assert hit.response == "after clear"
    cache.close()


def test_a_failed_put_leaves_only_a_false_positive(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = open_cache(tmp_path / "c.db", clock)
    assert cache.get("x") is None

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise StoreError("disk full")

    real = cache.store.put_many
    monkeypatch.setattr(cache.store, "put_many", fail)
    with pytest.raises(StoreError):
        cache.put("x", "1")
    monkeypatch.setattr(cache.store, "put_many", real)
    assert cache.get("x") is None  # asked the store: not there
    cache.put("x", "2")
    hit = cache.get("x")
    assert hit is not None
    assert hit.response == "2"
    cache.close()


def test_loads_restores_a_cache_whose_keys_hit(tmp_path: Path, clock: FakeClock) -> None:
    cache = open_cache(tmp_path / "c.db", clock)
    cache.put_many([f"q {i}" for i in range(50)], [f"a {i}" for i in range(50)])
    archive = tmp_path / "c.tar"
    cache.dumps(archive)
    cache.close()
    restored = SemanticCache.loads(archive, tmp_path / "r.db", None, clock=clock)
    assert restored.get("never stored") is None
    for i in (0, 17, 49):
        hit = restored.get(f"q {i}")
        assert hit is not None
        assert hit.response == f"a {i}"
    restored.close()


def test_memory_store_uses_the_filter_too(clock: FakeClock) -> None:
    cache = SemanticCache(clock=clock)
    assert engine_of(cache).key_filter is not None
    assert cache.get("q") is None
    cache.put("q", "a")
    assert cache.get("q") is not None
    cache.close()


_OTHER_PROCESS_PUT = """
import sys
from semcache import SemanticCache
cache = SemanticCache(sys.argv[1], multi_process_mode="shared")
cache.put("written elsewhere", "by the other process")
cache.close()
"""


def test_shared_mode_sees_another_process_put(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    cache = SemanticCache(str(path), multi_process_mode="shared")
    assert engine_of(cache).key_filter is None  # shared mode: every exact lookup reads the file
    assert cache.get("written elsewhere") is None
    env_path = str(Path(__file__).resolve().parents[1])
    subprocess.run(
        [sys.executable, "-c", _OTHER_PROCESS_PUT, str(path)],
        check=True,
        timeout=60,
        env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
    )
    hit = cache.get("written elsewhere")
    assert hit is not None
    assert hit.response == "by the other process"
    cache.close()


def test_a_memoized_hit_skips_no_check_that_could_fail(tmp_path: Path, clock: FakeClock) -> None:
    # The exact path checks a query's size and text only when its key is not memoized
    # (a memoized query passed them when its key was computed): bad input must still be
    # refused, before and after the memo holds keys, and the memoized hit must count.
    from semcache import InvalidTextError, QueryTooLargeError

    cache = open_cache(tmp_path / "c.db", clock, max_query_bytes=64)
    cache.put("Hello  World", "a")
    for _ in range(3):
        hit = cache.get("Hello  World")
        assert hit is not None
        assert (hit.response, hit.layer) == ("a", "exact")
    memo = engine_of(cache).key_memo
    assert "Hello  World" in memo.by_ns["default"]
    assert cache.stats()["hits"]["exact"] == 3
    with pytest.raises(QueryTooLargeError):
        cache.get("x" * 65)
    with pytest.raises(InvalidTextError):
        cache.get(["Hello  World"])  # type: ignore[arg-type]  # (unhashable)
    with pytest.raises(InvalidTextError):
        cache.get(b"Hello  World")  # type: ignore[arg-type]
    with pytest.raises(InvalidTextError):
        cache.get("Hello \ud800")
    assert cache.get("hello world") is not None  # another text, same key: computed
    assert cache.stats()["hits"]["exact"] == 4
    assert len(engine_of(cache).recency) == 1  # one entry, touched four times
    cache.close()


def test_key_maker_gives_make_keys_bytes() -> None:
    # The keys are on disk: the prefix-hasher shortcut must give make_key's exact bytes,
    # for ASCII and other text, with and without normalization, over more namespaces
    # than it keeps prefixes for.
    texts = [
        "Hello  World",
        "\uff28\uff25\uff2c\uff2c\uff2f\u3000wörld",
        "",
        "  tabs\tand\nlines ",
        "Straße ß",
    ]
    raw, norm = key_maker(False), key_maker(True)
    for i in range(1100):
        ns = f"ns{i % 1030}"
        for t in texts:
            assert raw(ns, t) == make_key(ns, t)
            assert norm(ns, t) == make_key(ns, normalize_text(t))
