"""One progress interface: ``progress(stage, done, total)`` from put_many (sync and
async), from opening a cache that loads or rebuilds its index, and the one bar that
draws it (throttled, a terminal or a log)."""

from __future__ import annotations

import asyncio
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import FakeClock

from semcache import AsyncSemanticCache, ProgressBar, SemanticCache
from semcache._progress import as_progress
from semcache._put import EMBED_BATCH as _EMBED_BATCH
from semcache.embedders import HashingEmbedder

DIM = 16
Calls = list[tuple[str, int, int | None]]


class Recorder:
    def __init__(self, fail_at: tuple[str, int] | None = None) -> None:
        self.calls: Calls = []
        self.fail_at = fail_at

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        self.calls.append((stage, done, total))
        if self.fail_at == (stage, done):
            raise KeyboardInterrupt("cancelled by the progress callback")


def _texts(n: int, prefix: str = "q") -> list[str]:
    return [f"{prefix} {i}" for i in range(n)]


# -- put_many -------------------------------------------------------------------------
def test_put_many_reports_every_embedded_batch_then_the_write() -> None:
    n = 2 * _EMBED_BATCH + 5
    rec = Recorder()
    with SemanticCache(embedder=HashingEmbedder(dim=DIM)) as cache:
        assert cache.put_many(_texts(n), _texts(n, "a"), progress=rec) == n
        assert cache.stats()["total_entries"] == n
    assert rec.calls == [
        ("embed", 0, n),
        ("embed", _EMBED_BATCH, n),
        ("embed", 2 * _EMBED_BATCH, n),
        ("embed", n, n),
        ("write", n, n),
    ]


def test_put_many_with_embeddings_reports_the_write_only() -> None:
    rec = Recorder()
    vecs = np.random.default_rng(0).normal(size=(3, DIM)).astype(np.float32)
    with SemanticCache() as cache:
        cache.put_many(_texts(3), _texts(3, "a"), embeddings=vecs, progress=rec)
        assert cache.put_many([], [], progress=rec) == 0
    assert rec.calls == [("write", 3, 3)]


def test_a_callback_failing_while_embedding_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    with SemanticCache(path, HashingEmbedder(dim=DIM)) as cache:
        cache.put("kept", "before")
        rec = Recorder(fail_at=("embed", _EMBED_BATCH))
        with pytest.raises(KeyboardInterrupt):
            cache.put_many(_texts(200), _texts(200, "a"), progress=rec)
        assert cache.stats()["total_entries"] == 1  # nothing of the batch was written
        assert cache.get("q 0") is None
        assert cache.get("kept") is not None
        cache.put_many(_texts(3), _texts(3, "a"))  # the cache goes on as before
        assert cache.get("q 2") is not None
    with SemanticCache(path, HashingEmbedder(dim=DIM)) as again:
        assert again.stats()["total_entries"] == 4


def test_a_callback_failing_after_the_write_leaves_every_entry_stored() -> None:
    rec = Recorder(fail_at=("write", 70))
    with SemanticCache(embedder=HashingEmbedder(dim=DIM)) as cache:
        with pytest.raises(KeyboardInterrupt):
            cache.put_many(_texts(70), _texts(70, "a"), progress=rec)
        assert cache.stats()["total_entries"] == 70
        hit = cache.get("q 69")
        assert hit is not None
        assert hit.response == "a 69"
        vector = HashingEmbedder(dim=DIM).embed(["q 42"])[0]
        hit = cache.get("another text 42", embedding=vector)  # indexed: a semantic hit
        assert hit is not None
        assert hit.layer == "semantic"
        assert hit.query == "q 42"


def test_async_put_many_reports_alike() -> None:
    n = _EMBED_BATCH + 1
    sync_rec, async_rec = Recorder(), Recorder()
    with SemanticCache(embedder=HashingEmbedder(dim=DIM)) as cache:
        cache.put_many(_texts(n), _texts(n, "a"), progress=sync_rec)

    async def run() -> None:
        async with AsyncSemanticCache(embedder=HashingEmbedder(dim=DIM)) as cache:
            await cache.put_many(_texts(n), _texts(n, "a"), progress=async_rec)
            rec = Recorder(fail_at=("embed", 0))
            with pytest.raises(KeyboardInterrupt):
                await cache.put_many(_texts(5, "x"), _texts(5, "a"), progress=rec)
            assert (await cache.stats())["total_entries"] == n

    asyncio.run(run())
    assert async_rec.calls == sync_rec.calls
    assert async_rec.calls[-1] == ("write", n, n)


# -- opening ------------------------------------------------------------------------------
def _filled(path: Path, n: int) -> None:
    with SemanticCache(path, HashingEmbedder(dim=DIM)) as cache:
        cache.put_many(_texts(n), _texts(n, "a"), namespace="one")
        cache.put_many(_texts(n, "z"), _texts(n, "a"), namespace="two")
        cache.put("expired", "x", ttl=0.0)


def test_opening_reports_the_rebuild_and_the_snapshot_load(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    _filled(path, 10)
    rec = Recorder()
    with SemanticCache(path, HashingEmbedder(dim=DIM), progress=rec):
        pass
    assert rec.calls == [("load index", 0, 1), ("load index", 1, 1)]
    shutil.rmtree(str(path) + ".index")  # no snapshot: the indexes are rebuilt
    rec = Recorder()
    with SemanticCache(path, HashingEmbedder(dim=DIM), progress=rec) as cache:
        assert cache.get("q 3", namespace="one") is not None
    # per namespace batch; 21 entries, one of them expired (skipped): ends at 20 of 20
    assert rec.calls == [("index", 0, 21), ("index", 10, 21), ("index", 20, 21), ("index", 20, 20)]
    rec = Recorder()
    with SemanticCache(progress=rec):  # an empty store: nothing to report
        pass
    assert rec.calls == []
    shutil.rmtree(str(path) + ".index")
    rec = Recorder()
    acache = AsyncSemanticCache(path, HashingEmbedder(dim=DIM), progress=rec)
    asyncio.run(acache.aclose())
    assert rec.calls[0] == ("index", 0, 21)
    assert rec.calls[-1] == ("index", 20, 20)


def test_a_callback_failing_while_opening_leaves_the_file_usable(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    _filled(path, 5)
    shutil.rmtree(str(path) + ".index")
    with pytest.raises(KeyboardInterrupt):
        SemanticCache(path, HashingEmbedder(dim=DIM), progress=Recorder(fail_at=("index", 0)))
    with SemanticCache(path, HashingEmbedder(dim=DIM)) as cache:  # the lock was released
        assert cache.get("z 4", namespace="two") is not None


# -- the bar ------------------------------------------------------------------------------
class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar_on_a_log_draws_a_line_every_tenth() -> None:
    clock, log = FakeClock(100.0), io.StringIO()
    bar = ProgressBar(log, clock=clock)
    for done in range(1001):
        clock.now += 0.001
        bar("embed", done, 1000)
    lines = log.getvalue().splitlines()
    assert len(lines) == 11  # 0%, 10%, ... 100%
    assert lines[0].startswith("embed [------------------------]   0% 0/1000")
    assert lines[5].startswith("embed [############------------]  50% 500/1000")
    assert lines[-1] == "embed [########################] 100% 1000/1000 (1.0 s)"
    bar("write", 1000, 1000)
    assert log.getvalue().splitlines()[-1].startswith("write [#####")
    bar.close()
    assert len(log.getvalue().splitlines()) == 12  # closing an ended stage draws nothing


def test_bar_on_a_terminal_redraws_in_place_throttled() -> None:
    clock, tty = FakeClock(100.0), Tty()
    bar = ProgressBar(tty, clock=clock, interval=0.1)
    for done in range(10_001):
        clock.now += 0.0001  # 10k calls in 1 s: at most one draw per 0.1 s
        bar("index", done, 10_000)
    text = tty.getvalue()
    assert 10 <= text.count("\r") <= 12
    assert text.endswith("100% 10000/10000 (1.0 s)\n")
    assert "\n" not in text[:-1]  # one line, redrawn


def test_bar_stages_unknown_totals_and_close() -> None:
    clock, log = FakeClock(100.0), io.StringIO()
    with ProgressBar(log, clock=clock) as bar:
        bar("load model", 0, 4)
        clock.now += 2.0
        bar("load model", 1, 4)
        bar("scan", 0, None)
        for done in range(1, 50):
            clock.now += 0.01
            bar("scan", done, None)  # a line at most every second
    lines = log.getvalue().splitlines()
    assert lines[:2] == [
        "load model [------------------------]   0% 0/4 (0.0 s)",
        "load model [######------------------]  25% 1/4 (2.0 s)",
    ]
    assert lines[2] == "scan 0 (0.0 s)"
    assert lines[-1] == "scan 49 (0.5 s)"  # close() draws the last count
    assert len(lines) == 4


def test_bar_delay_hides_quick_stages() -> None:
    clock, log = FakeClock(100.0), io.StringIO()
    bar = ProgressBar(log, clock=clock, delay=0.5)
    bar("load index", 0, 1)
    clock.now += 0.1
    bar("load index", 1, 1)
    assert log.getvalue() == ""
    bar("index", 0, 10)
    clock.now += 1.0
    bar("index", 5, 10)
    clock.now += 1.0
    bar("index", 10, 10)
    assert log.getvalue().splitlines() == [
        "index [############------------]  50% 5/10 (1.0 s)",
        "index [########################] 100% 10/10 (2.0 s)",
    ]


def test_bar_draws_put_many_and_a_stream_is_taken_as_a_bar() -> None:
    log = io.StringIO()
    with SemanticCache(embedder=HashingEmbedder(dim=DIM)) as cache:
        cache.put_many(_texts(100), _texts(100, "a"), progress=ProgressBar(log))
    lines = log.getvalue().splitlines()
    assert lines[0].startswith("embed [")
    assert lines[-2].startswith("embed [########################] 100% 100/100")
    assert lines[-1].startswith("write [########################] 100% 100/100")
    assert as_progress(None) is None
    assert isinstance(as_progress(log), ProgressBar)
    rec = Recorder()
    assert as_progress(rec) is rec
