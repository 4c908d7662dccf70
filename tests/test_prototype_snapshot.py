"""The prototype veto's tables saved with the index snapshots (``Prototypes.snapshot``,
``Prototypes.restore``, ``semcache._snapshots``) and in checkpoints: a reopened or
restored cache has them without reading the store again, equal to a fresh read; what
changed since is replayed; anything that does not check out is ignored and the tables
are read as before."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_checkpoint import expect_refusal, rewrite
from test_prototype_veto import A_FAR, A_NEAR, DIM, QUERY, THRESHOLD, B, C, _ask, _open, _put

import semcache._prototypes
from semcache import CheckpointFormatError, SemanticCache
from semcache._agreement import answer_digest
from semcache._cache import engine_of
from semcache._checkpoint import read_manifest
from semcache._prototypes import Prototypes
from semcache._snapshots import PROTOTYPES
from semcache._store import SQLiteStore


def _state(cache: SemanticCache) -> str:
    return str(cache.stats()["prototype_veto"]["state"])


def _new(cache: SemanticCache) -> Prototypes:
    """Tables over the cache's store, not read yet (as the engine makes them)."""
    eng = engine_of(cache)
    return Prototypes(eng.store, eng.indexes.decode, answer_digest, eng.clock)


def _fresh(cache: SemanticCache) -> Prototypes:
    """The tables read from the cache's store now (as a first get reads them)."""
    fresh = _new(cache)
    fresh.declined("default", QUERY, [], [])
    return fresh


def _same(kept: Prototypes, fresh: Prototypes) -> None:
    assert kept._tables is not None
    assert fresh._tables is not None
    assert sorted(kept._tables) == sorted(fresh._tables)
    assert kept._entries == fresh._entries
    for namespace, table in fresh._tables.items():
        mine = kept._tables[namespace]
        assert mine.digest_of == table.digest_of
        assert mine.members == table.members
        assert sorted(mine.names) == sorted(table.names)
        if not table.names:
            continue
        assert mine.matrix is not None
        assert table.matrix is not None
        for key, row in table.rows.items():
            np.testing.assert_allclose(mine.matrix[mine.rows[key]], table.matrix[row], atol=1e-6)


def _saved(tmp_path: Path) -> Path:
    """A closed cache whose tables were read (and so saved at close)."""
    path = tmp_path / "c.db"
    with _open(path) as cache:
        _put(cache, [A_NEAR, A_FAR, *B, *C])
        _put(cache, [("an other one", "D", QUERY)], namespace="other")
        assert _ask(cache) is None  # (declined: the tables read)
    assert (Path(f"{path}.index") / PROTOTYPES).is_file()
    return path


def test_a_reopened_cache_has_them_without_reading_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _saved(tmp_path)

    def no_build(self: Prototypes) -> None:
        raise AssertionError("the tables were read again")

    with monkeypatch.context() as patched:
        patched.setattr(Prototypes, "_build", no_build)
        with _open(path) as cache:
            assert _state(cache) == "kept"  # before any get
            assert cache.stats()["prototype_veto"]["prototypes"] == {"default": 3, "other": 0}
            assert _ask(cache) is None
            assert cache.stats()["misses"]["support"] == 1
    with _open(path) as cache:  # (saved again at that close)
        kept = engine_of(cache).prototypes
        assert kept is not None
        assert _state(cache) == "kept"
        _same(kept, _fresh(cache))


def test_what_changed_since_the_save_is_replayed(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    with _open(path) as cache:
        far = cache.store.get_by_key(engine_of(cache).key("default", A_FAR[0]))
        assert far is not None
    store = SQLiteStore(str(path))  # another writer while no cache has the file open
    try:
        assert store.delete_ids([far.id]) == [(far.id, "default")]
    finally:
        store.close()
    with _open(path) as cache:
        assert _state(cache) == "kept"
        assert _ask(cache) == "A"  # "A" has one prompt left: nothing declines it
        _put(cache, [("another a prompt", "A", A_FAR[2])])
        kept = engine_of(cache).prototypes
        assert kept is not None
        kept.declined("default", QUERY, [], [])  # ("A" repeats again: its sum read)
        _same(kept, _fresh(cache))


def test_a_file_that_does_not_check_out_is_not_used(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    saved = Path(f"{path}.index") / PROTOTYPES
    saved.write_bytes(saved.read_bytes()[:-100])  # cut short
    with _open(path) as cache:
        assert _state(cache) == "not read"
        assert _ask(cache) is None  # read from the store, as before
        assert _state(cache) == "kept"


@pytest.mark.parametrize(
    "damage",
    [
        "id out of range",
        "id repeated",
        "namespace index",
        "sum of a single",
        "sum twice",
        "sum not finite",
        "ghosts",
        "sum of another dimension",
        "too many entries",
        "entries miscounted",
        "namespaces",
        "format",
    ],
)
def test_every_claim_of_a_saved_table_is_checked(
    tmp_path: Path, damage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _open(tmp_path / "c.db") as cache:
        _put(cache, [A_NEAR, A_FAR, *B, *C])
        _put(cache, [("lone", "E", QUERY)])
        kept = _fresh(cache)
        saved = kept.snapshot(DIM)
        assert saved is not None
        header, arrays = dict(saved[0]), {k: v.copy() for k, v in saved[1].items()}
        ids, sums = arrays["ids"], arrays["sums"]
        single = next(i for i, d in enumerate(arrays["digests"]) if bytes(d) == answer_digest("E"))
        if damage == "id out of range":
            ids[0] = cache.store.seq() + 1
        elif damage == "id repeated":
            ids[1] = ids[0]
        elif damage == "namespace index":
            arrays["owner"][0] = 1
        elif damage == "sum of a single":
            arrays["keys"][0] = arrays["digests"][single]
        elif damage == "sum twice":
            arrays["keys"][1] = arrays["keys"][0]
        elif damage == "sum not finite":
            sums[0, 0] = np.nan
        elif damage == "ghosts":
            arrays["ghosts"][0] = 100
        elif damage == "sum of another dimension":
            arrays["sums"] = np.zeros((len(sums), DIM + 1))
        elif damage == "too many entries":  # (more than a cache keeps)
            monkeypatch.setattr(semcache._prototypes, "PROTOTYPE_ENTRIES", len(ids) - 1)
        elif damage == "entries miscounted":
            header["entries"] = len(ids) + 1
        elif damage == "format":  # (another version's tables: keys made otherwise)
            header["format"] = 2
        else:
            header["namespaces"] = ["default", "default"]
        target = _new(cache)
        assert not target.restore(header, arrays, dim=DIM, bound=cache.store.seq())
        assert target._tables is None
        monkeypatch.undo()
        # the undamaged save restores
        assert target.restore(*saved, dim=DIM, bound=cache.store.seq())
        _same(target, kept)


def test_a_stale_sum_is_not_saved_and_is_read_after_the_restore(tmp_path: Path) -> None:
    with _open(tmp_path / "c.db") as cache:
        _put(cache, [A_NEAR, A_FAR, *B])
        kept = _fresh(cache)
        assert kept._tables is not None
        table = kept._tables["default"]
        key = answer_digest("B")
        table.stale.add(key)
        saved = kept.snapshot(DIM)
        assert saved is not None
        header, arrays = saved
        assert key not in {bytes(k) for k in arrays["keys"]}
        target = _new(cache)
        assert target.restore(header, arrays, dim=DIM, bound=cache.store.seq())
        assert target._tables is not None
        assert key in target._tables["default"].stale
        target.declined("default", QUERY, [], [])  # (rereads the stale sums)
        assert not target._tables["default"].stale
        _same(target, _fresh(cache))


def test_a_cache_that_never_read_them_leaves_none_behind(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    with _open(path, answer_support=False):
        pass
    assert not (Path(f"{path}.index") / PROTOTYPES).exists()  # (it could not match)
    with _open(path) as cache:
        assert _state(cache) == "not read"


def test_a_checkpoint_carries_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``dumps`` adds the tables (format version 2): the restored cache has them before
    any get, equal to a fresh read, without reading the store for them."""
    with _open(tmp_path / "c.db") as cache:
        _put(cache, [A_NEAR, A_FAR, *B, *C])
        assert _ask(cache) is None  # (declined: the tables read)
        manifest = cache.dumps(tmp_path / "c.tar.gz")
    assert manifest["version"] == 2
    assert f"index/{PROTOTYPES}" in manifest["files"]
    assert read_manifest(tmp_path / "c.tar.gz")["version"] == 2

    def no_build(self: Prototypes) -> None:
        raise AssertionError("the tables were read again")

    with monkeypatch.context() as patched:
        patched.setattr(Prototypes, "_build", no_build)
        restored = _loads(tmp_path / "c.tar.gz", tmp_path / "r.db")
        with restored:
            assert _state(restored) == "kept"  # before any get
            assert _ask(restored) is None
            assert restored.stats()["misses"]["support"] == 1
    with _loads(tmp_path / "c.tar.gz", tmp_path / "r2.db") as again:
        kept = engine_of(again).prototypes
        assert kept is not None
        _same(kept, _fresh(again))


def test_a_checkpoint_without_them_stays_at_version_1(tmp_path: Path) -> None:
    """A cache whose tables were never read writes what a semcache that reads format
    version 1 can restore."""
    with _open(tmp_path / "c.db") as cache:
        _put(cache, [A_NEAR, A_FAR, *B])
        manifest = cache.dumps(tmp_path / "c.tar.gz")
    assert manifest["version"] == 1
    assert not any(name.endswith(PROTOTYPES) for name in manifest["files"])
    with _loads(tmp_path / "c.tar.gz", tmp_path / "r.db") as restored:
        assert _state(restored) == "not read"
        assert _ask(restored) is None  # read from the store, as before


def test_a_version_1_archive_with_them_is_refused(tmp_path: Path) -> None:
    with _open(tmp_path / "c.db") as cache:
        _put(cache, [A_NEAR, A_FAR, *B])
        assert _ask(cache) is None
        cache.dumps(tmp_path / "c.tar.gz")
    archive = rewrite(
        tmp_path / "c.tar.gz", tmp_path / "x.tar.gz", lambda m, f: m.update(version=1)
    )
    expect_refusal(tmp_path, archive, CheckpointFormatError, "format version 1 has no")


def _loads(archive: Path, path: Path) -> SemanticCache:
    return SemanticCache.loads(archive, path, None, similarity_threshold=THRESHOLD, guards=None)
