"""The exact layer against diskcache, side by side in one pytest-benchmark run.

Run (diskcache is not a semcache dependency; the ``dev`` extra pins it for this benchmark,
so ``scripts/bootstrap --all`` installs it)::

    .venv/bin/python -m pytest \\
        benchmarks/test_bench_exact_peers.py -p no:cacheprovider -s \\
        --benchmark-columns=min,median,mean,rounds --benchmark-group-by=group

Both caches hold the same 10,000 prompts (~50 characters, ~30-character answers) in a
SQLite file. Each contender's calls cycle through the same pre-built list of strings:

- ``hit``: a stored prompt, drawn uniformly at random (with replacement) from the 10,000;
- ``miss_repeat``: one of 1,000 unstored prompts asked again and again;
- ``miss_new``: a prompt never asked before (200,000 prebuilt distinct strings);
- ``set``/``put``: a new key.

The last test prints each semcache/diskcache ratio of medians (and of minima).
"""

from __future__ import annotations

import itertools
import os
import random
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from semcache import SemanticCache

diskcache = pytest.importorskip("diskcache")

N = 10_000
PROMPT = "How do I configure connection pooling (variant {})"
_RESULTS: dict[tuple[str, str], tuple[float, float]] = {}


@pytest.fixture(scope="module")
def caches(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    folder = tmp_path_factory.mktemp("exact-peers")
    queries = [PROMPT.format(i) for i in range(N)]
    answers = [f"the answer to question number {i}" for i in range(N)]
    sem = SemanticCache(str(folder / "semcache.db"))
    sem.put_many(queries, answers)
    dc = diskcache.Cache(os.fspath(folder / "diskcache"))
    for q, a in zip(queries, answers, strict=True):
        dc.set(q, a)
    yield sem, dc
    sem.close()
    dc.close()


def _cycle(items: list[str]) -> Callable[[], str]:
    it = itertools.cycle(items)
    return lambda: next(it)


def _record(benchmark: Any, group: str, who: str) -> None:
    if benchmark.stats is None:  # --benchmark-disable: nothing was timed
        return
    stats = benchmark.stats.stats
    _RESULTS[(group, who)] = (stats.median, stats.min)


def _hits() -> list[str]:
    rng = random.Random(7)  # uniform draws with replacement, as an application's hits
    return [PROMPT.format(rng.randrange(N)) for _ in range(200_000)]


_HIT_DRAWS = _hits()
_MISSES = [f"an unstored question, number {i}" for i in range(500)]
_FRESH = itertools.count()


def _fresh(who: str) -> list[str]:
    start = next(_FRESH) * 500
    return [f"a fresh question, {who} {i}" for i in range(start, start + 500)]


def _misses_repeat() -> list[str]:
    return [f"an unstored question, number {i}" for i in range(1000)]


def _misses_new(tag: str) -> list[str]:
    return [f"a question never asked before, {tag} {i}" for i in range(200_000)]


@pytest.mark.parametrize("who", ["semcache", "diskcache"])
@pytest.mark.parametrize("group", ["hit", "miss_repeat", "miss_new"])
def test_exact(benchmark: Any, caches: tuple[Any, Any], group: str, who: str) -> None:
    sem, dc = caches
    benchmark.group = group
    items = {"hit": _hits, "miss_repeat": _misses_repeat}.get(group, lambda: _misses_new(who))()
    nxt = _cycle(items)
    get = sem.get if who == "semcache" else dc.get
    rounds = 2_000 if group != "miss_new" else 10_000
    result = benchmark.pedantic(lambda: get(nxt()), rounds=rounds, iterations=10, warmup_rounds=10)
    assert (result is None) == (group != "hit")
    _record(benchmark, group, who)


@pytest.mark.parametrize("who", ["semcache", "diskcache"])
def test_put_new_key(benchmark: Any, tmp_path: Path, who: str) -> None:
    benchmark.group = "put"
    counter = itertools.count()
    answer = "an answer of modest length " * 8
    if who == "semcache":
        cache = SemanticCache(str(tmp_path / "put.db"))
        benchmark(lambda: cache.put(f"{PROMPT} {next(counter)}", answer))
    else:
        cache = diskcache.Cache(os.fspath(tmp_path / "dc"))
        benchmark(lambda: cache.set(f"{PROMPT} {next(counter)}", answer))
    cache.close()
    _record(benchmark, "put", who)


def test_interleaved(caches: tuple[Any, Any]) -> None:
    """The same three gets, the contenders alternating in blocks of 500 calls (so load
    from other processes falls on both alike): median and best per-call time of the
    blocks, and their ratios. Not a pytest-benchmark row; printed."""
    sem, dc = caches
    clock = time.perf_counter
    print()
    for group in ("hit", "miss_repeat", "miss_new"):
        times: dict[str, list[float]] = {"semcache": [], "diskcache": []}
        for block in range(60):
            for who, get in (("semcache", sem.get), ("diskcache", dc.get)):
                if group == "hit":
                    items = _HIT_DRAWS[block * 500 : block * 500 + 500]
                else:
                    items = _MISSES if group == "miss_repeat" else _fresh(who)
                t0 = clock()
                for q in items:
                    get(q)
                times[who].append((clock() - t0) / len(items))
        s, d = (statistics.median(times[w]) for w in ("semcache", "diskcache"))
        sb, db = (min(times[w]) for w in ("semcache", "diskcache"))
        _RESULTS[(f"{group} interleaved", "semcache")] = (s, sb)
        _RESULTS[(f"{group} interleaved", "diskcache")] = (d, db)


def test_ratios() -> None:
    print(f"\nload average: {os.getloadavg()}")
    print("diskcache / semcache (higher: semcache faster)    median      min")
    for group in (
        "hit",
        "miss_repeat",
        "miss_new",
        "put",
        "hit interleaved",
        "miss_repeat interleaved",
        "miss_new interleaved",
    ):
        sem = _RESULTS.get((group, "semcache"))
        dc = _RESULTS.get((group, "diskcache"))
        if sem is None or dc is None:
            continue
        print(
            f"{group:24s} semcache {sem[0] * 1e6:6.2f} µs  diskcache {dc[0] * 1e6:6.2f} µs"
            f"   {dc[0] / sem[0]:5.2f}x   {dc[1] / sem[1]:5.2f}x"
        )
