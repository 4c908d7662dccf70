"""Checkpoints: dumps while other threads write, loads after checking everything, and
refusals (another embedder, a newer format, damaged or hostile archives) that write
nothing outside the destination."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import os
import tarfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import unit

from semcache import (
    ArchiveMemberTooLargeError,
    AsyncSemanticCache,
    CacheClosedError,
    CheckpointChecksumError,
    CheckpointError,
    CheckpointFormatError,
    CheckpointMismatchError,
    CheckpointVersionError,
    ConfigurationError,
    EmbedderMismatchError,
    HashingEmbedder,
    InvalidInputError,
    SemanticCache,
    SQLiteStore,
    UnsafeArchiveError,
)
from semcache._checkpoint import read_manifest

DIM = 16


def fill(cache: SemanticCache, n: int = 30) -> None:
    cache.put_many(
        [f"q{i}" for i in range(n)],
        [f"a{i}" for i in range(n)],
        embeddings=np.stack([unit(i, DIM) for i in range(n)]),
    )
    cache.put("other", "o", embedding=unit(500, DIM), namespace="tenant")


def listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def test_round_trip_serves_the_same_answers(tmp_path: Path) -> None:
    with SemanticCache(str(tmp_path / "c.db"), similarity_threshold=0.99) as cache:
        fill(cache)
        cache.delete("q7")
        manifest = cache.dumps(tmp_path / "cp.tar.gz")
    assert manifest["entries"] == {"default": 29, "tenant": 1}
    assert manifest["dim"] == DIM
    assert manifest["dtype"] == "float32"
    assert set(manifest["files"]) >= {"store.sqlite", "index/manifest.json"}
    # guards off: the lookups below use a placeholder text ("paraphrase" vs "q7")
    restored = SemanticCache.loads(tmp_path / "cp.tar.gz", tmp_path / "new.db", None, guards=None)
    with restored:
        assert restored.stats()["index_source"] == "snapshot"
        for i in range(30):
            hit = restored.get("paraphrase", embedding=unit(i, DIM))
            assert (hit.response if hit else None) == (None if i == 7 else f"a{i}")
        assert restored.get("other", namespace="tenant").response == "o"  # type: ignore[union-attr]
        assert restored.stats()["entries"] == {"default": 29, "tenant": 1}


def test_file_objects_and_embedder_fingerprint(tmp_path: Path) -> None:
    embedder = HashingEmbedder(32)
    buffer = io.BytesIO()
    with SemanticCache(str(tmp_path / "c.db"), embedder) as cache:
        cache.put("what is the capital of france", "Paris")
        manifest = cache.dumps(buffer)
    assert manifest["fingerprint"] == embedder.fingerprint
    buffer.seek(0)
    with SemanticCache.loads(buffer, str(tmp_path / "new.db"), HashingEmbedder(32)) as restored:
        assert restored.get("What is the capital of France?") is not None


def test_dumps_is_consistent_while_threads_write(tmp_path: Path) -> None:
    with SemanticCache(str(tmp_path / "c.db"), similarity_threshold=0.99) as cache:
        fill(cache, 10)
        stop = threading.Event()
        written: list[int] = []

        def writer() -> None:
            i = 1000
            while not stop.is_set() and i < 6000:
                cache.put(f"w{i}", f"b{i}", embedding=unit(i, DIM))
                written.append(i)
                i += 1

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            while len(written) < 50:  # the writer is busy while the checkpoint is taken
                assert thread.is_alive()
            manifests = [cache.dumps(tmp_path / f"cp{k}.tar.gz") for k in range(3)]
        finally:
            stop.set()
            thread.join(30)
    for k, manifest in enumerate(manifests):
        path = tmp_path / f"r{k}.db"
        # guards off: the lookups below use a placeholder text ("x" vs "w12")
        with SemanticCache.loads(tmp_path / f"cp{k}.tar.gz", path, None, guards=None) as restored:
            total = manifest["total_entries"]
            assert restored.stats()["total_entries"] == total
            assert sum(restored.stats()["indexed"].values()) == total
            # a prefix of the writer's puts, each complete and served semantically
            present = [i for i in written if restored.get(f"w{i}") is not None]
            assert present == written[: len(present)]
            assert len(present) == total - 11
            for i in present[-5:]:
                hit = restored.get("x", embedding=unit(i, DIM))
                assert hit is not None
                assert hit.response == f"b{i}"


def test_async_dumps_and_loads(tmp_path: Path) -> None:
    async def main() -> list[str | None]:
        async with AsyncSemanticCache(str(tmp_path / "c.db"), similarity_threshold=0.99) as cache:
            await cache.put("q", "a", embedding=unit(1, DIM))
            await cache.dumps(tmp_path / "cp.tar.gz")
        restored = await AsyncSemanticCache.loads(tmp_path / "cp.tar.gz", tmp_path / "n.db", None)
        async with restored:
            hit = await restored.get("x", embedding=unit(1, DIM))
            exact = await restored.get("q")
            return [hit.response if hit else None, exact.response if exact else None]

    assert asyncio.run(main()) == ["a", "a"]


def test_dumps_needs_an_open_sqlite_cache(tmp_path: Path) -> None:
    with SemanticCache() as memory, pytest.raises(CheckpointError, match="MemoryStore"):
        memory.dumps(tmp_path / "cp.tar.gz")
    cache = SemanticCache(str(tmp_path / "c.db"))
    cache.close()
    with pytest.raises(CacheClosedError):
        cache.dumps(tmp_path / "cp.tar.gz")
    assert not (tmp_path / "cp.tar.gz").exists()


# -- refusals ---------------------------------------------------------------------------------
@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    with SemanticCache(str(tmp_path / "src.db"), HashingEmbedder(32)) as cache:
        cache.put_many([f"question {i}" for i in range(20)], [f"answer {i}" for i in range(20)])
        cache.dumps(tmp_path / "cp.tar.gz")
    return tmp_path / "cp.tar.gz"


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as tar:
        out = {}
        for m in tar.getmembers():
            fh = tar.extractfile(m)
            assert fh is not None
            out[m.name] = fh.read()
        return out


def build(path: Path, entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in entries:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def regular(name: str) -> tarfile.TarInfo:
    return tarfile.TarInfo(name)


def rewrite(
    src: Path, dest: Path, change: Callable[[dict[str, Any], dict[str, bytes]], None]
) -> Path:
    """A copy of checkpoint ``src`` after ``change(manifest, files)``."""
    files = members(src)
    manifest = json.loads(files.pop("manifest.json"))
    change(manifest, files)
    body = json.dumps(manifest).encode()
    return build(
        dest, [(regular("manifest.json"), body)] + [(regular(n), d) for n, d in files.items()]
    )


def expect_refusal(
    tmp_path: Path, archive: Path, error: type[Exception], match: str | None = None, **kwargs: Any
) -> None:
    before = listing(tmp_path)
    with pytest.raises(error, match=match):
        SemanticCache.loads(
            archive, tmp_path / "restored.db", kwargs.pop("embedder", None), **kwargs
        )
    assert listing(tmp_path) == before  # nothing written, nothing left behind


def test_another_embedder_is_refused(tmp_path: Path, checkpoint: Path) -> None:
    expect_refusal(
        tmp_path, checkpoint, CheckpointMismatchError, "embedder", embedder=HashingEmbedder(64)
    )
    with pytest.raises(EmbedderMismatchError):  # it is also an embedder mismatch
        SemanticCache.loads(checkpoint, tmp_path / "r.db", HashingEmbedder(64))
    expect_refusal(tmp_path, checkpoint, CheckpointMismatchError, "float16", vector_dtype="float16")


def test_another_dimension_is_refused(tmp_path: Path, checkpoint: Path) -> None:
    def change(manifest: dict[str, Any], files: dict[str, bytes]) -> None:
        manifest["fingerprint"] = None

    archive = rewrite(checkpoint, tmp_path / "x.tar.gz", change)

    class Other:
        dim = 31
        fingerprint = "other"

        def embed(self, texts: Any) -> np.ndarray:
            return np.ones((len(texts), 31), np.float32)

    expect_refusal(tmp_path, archive, CheckpointMismatchError, "32-dimensional", embedder=Other())


def test_newer_format_version_is_refused(tmp_path: Path, checkpoint: Path) -> None:
    archive = rewrite(checkpoint, tmp_path / "x.tar.gz", lambda m, f: m.update(version=3))
    expect_refusal(tmp_path, archive, CheckpointVersionError, "format version 3")


def test_checksum_mismatch_is_refused(tmp_path: Path, checkpoint: Path) -> None:
    def flip(manifest: dict[str, Any], files: dict[str, bytes]) -> None:
        data = bytearray(files["store.sqlite"])
        data[5000] ^= 0xFF
        files["store.sqlite"] = bytes(data)

    archive = rewrite(checkpoint, tmp_path / "x.tar.gz", flip)
    expect_refusal(tmp_path, archive, CheckpointChecksumError, "store.sqlite")


def test_a_consistent_forgery_still_fails_the_store_checks(
    tmp_path: Path, checkpoint: Path
) -> None:
    def forge(manifest: dict[str, Any], files: dict[str, bytes]) -> None:
        manifest["entries"] = {"default": 99}
        data = files["store.sqlite"]
        manifest["files"]["store.sqlite"]["sha256"] = hashlib.sha256(data).hexdigest()

    archive = rewrite(checkpoint, tmp_path / "x.tar.gz", forge)
    expect_refusal(tmp_path, archive, CheckpointFormatError, "does not match its manifest")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("/etc/evil", "absolute"),
        ("../evil", r"'\.\.'"),
        ("index/../../evil", r"'\.\.'"),
        ("index/./ns.npz", "normalized"),
        ("C:/evil", "absolute"),
        ("evil.txt", "not a member of the checkpoint format"),
    ],
)
def test_unsafe_member_names_are_refused(
    tmp_path: Path, checkpoint: Path, name: str, reason: str
) -> None:
    files = members(checkpoint)
    entries = [(regular(n), d) for n, d in files.items()] + [(regular(name), b"x")]
    archive = build(tmp_path / "x.tar.gz", entries)
    expect_refusal(tmp_path, archive, UnsafeArchiveError, reason)
    assert not (tmp_path.parent / "evil").exists()


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        (tarfile.SYMTYPE, "link"),
        (tarfile.LNKTYPE, "link"),
        (tarfile.CHRTYPE, "device"),
        (tarfile.BLKTYPE, "device"),
        (tarfile.FIFOTYPE, "FIFO"),
        (tarfile.DIRTYPE, "directory"),
    ],
)
def test_links_devices_and_directories_are_refused(
    tmp_path: Path, checkpoint: Path, kind: bytes, reason: str
) -> None:
    files = members(checkpoint)
    special = tarfile.TarInfo("index/ns-" + "0" * 32 + ".npz")
    special.type = kind
    special.linkname = "/etc/passwd"
    entries: list[tuple[tarfile.TarInfo, bytes | None]] = [
        (regular(n), d) for n, d in files.items()
    ]
    entries.append((special, None))
    archive = build(tmp_path / "x.tar.gz", entries)
    expect_refusal(tmp_path, archive, UnsafeArchiveError, reason)


def test_a_link_replacing_the_store_is_refused(tmp_path: Path, checkpoint: Path) -> None:
    files = members(checkpoint)
    link = tarfile.TarInfo("store.sqlite")
    link.type = tarfile.SYMTYPE
    link.linkname = "../../outside.db"
    archive = build(
        tmp_path / "x.tar.gz", [(regular("manifest.json"), files["manifest.json"]), (link, None)]
    )
    expect_refusal(tmp_path, archive, UnsafeArchiveError, "link")


def test_duplicate_and_unlisted_members_are_refused(tmp_path: Path, checkpoint: Path) -> None:
    files = members(checkpoint)
    entries = [(regular(n), d) for n, d in files.items()]
    dup = build(tmp_path / "dup.tar.gz", [*entries, (regular("store.sqlite"), b"evil")])
    expect_refusal(tmp_path, dup, UnsafeArchiveError, "twice")
    unlisted = build(
        tmp_path / "un.tar.gz", [*entries, (regular("index/ns-" + "a" * 32 + ".npz"), b"x")]
    )
    expect_refusal(tmp_path, unlisted, UnsafeArchiveError, "not listed")


def test_oversized_members_are_refused(tmp_path: Path, checkpoint: Path) -> None:
    expect_refusal(tmp_path, checkpoint, ArchiveMemberTooLargeError, "limit", max_member_bytes=1024)
    with pytest.raises(UnsafeArchiveError):  # a kind of unsafe member
        SemanticCache.loads(checkpoint, tmp_path / "r.db", None, max_member_bytes=1024)


def test_garbage_and_truncated_archives_are_format_errors(tmp_path: Path, checkpoint: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not an archive at all")
    expect_refusal(tmp_path, junk, CheckpointFormatError)
    data = checkpoint.read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(data[: len(data) // 2])
    expect_refusal(tmp_path, cut, CheckpointFormatError)
    plain = tmp_path / "plain.tar.gz"
    plain.write_bytes(gzip.compress(b"\0" * 2048))  # an empty tar: no manifest
    expect_refusal(tmp_path, plain, CheckpointFormatError, "manifest")
    nojson = build(tmp_path / "nojson.tar.gz", [(regular("manifest.json"), b"{nope")])
    expect_refusal(tmp_path, nojson, CheckpointFormatError, "JSON")


def test_existing_destination_is_refused(tmp_path: Path, checkpoint: Path) -> None:
    for taken in ("restored.db", "restored.db-wal", "restored.db.index"):
        (tmp_path / taken).write_bytes(b"mine")
        before = {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
        with pytest.raises(CheckpointError, match="already exists"):
            SemanticCache.loads(checkpoint, tmp_path / "restored.db", None)
        assert {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
        os.unlink(tmp_path / taken)


def test_a_failing_constructor_removes_the_restored_files(tmp_path: Path, checkpoint: Path) -> None:
    before = listing(tmp_path)
    with pytest.raises(ValueError, match="max_entries"):
        SemanticCache.loads(checkpoint, tmp_path / "restored.db", None, max_entries=0)
    assert listing(tmp_path) == before


def test_read_manifest(checkpoint: Path) -> None:
    manifest = read_manifest(checkpoint)
    assert manifest["format"] == "semcache-checkpoint"
    assert manifest["version"] == 1
    assert manifest["total_entries"] == 20


# -- the store copy: exactly semcache's schema, counts that match the rows ------------------
def forge_store(
    tmp_path: Path, checkpoint: Path, sql: str, *, manifest_change: dict[str, Any] | None = None
) -> Path:
    """A consistent forgery: the store copy altered by ``sql``, the manifest's size and
    SHA-256 (and ``manifest_change``) updated to match, so only the store checks can
    refuse it."""
    import apsw

    def change(manifest: dict[str, Any], files: dict[str, bytes]) -> None:
        db = tmp_path / "forged.sqlite"
        db.write_bytes(files["store.sqlite"])
        conn = apsw.Connection(str(db))
        conn.execute(sql)
        conn.close()
        data = db.read_bytes()
        db.unlink()
        files["store.sqlite"] = data
        manifest["files"]["store.sqlite"] = {
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        manifest.update(manifest_change or {})

    return rewrite(checkpoint, tmp_path / "forged.tar.gz", change)


def test_namespace_counts_are_checked_against_the_rows(tmp_path: Path, checkpoint: Path) -> None:
    # counts kept (the table and triggers a put with a limit creates), but forged
    from semcache._store._sqlite_schema import COUNT_TABLE, COUNT_TRIGGERS

    sql = "; ".join(("DROP VIEW namespaces", COUNT_TABLE, *COUNT_TRIGGERS))
    archive = forge_store(
        tmp_path,
        checkpoint,
        sql + "; INSERT INTO namespaces(name, entries) VALUES ('default', 1)",
        manifest_change={"entries": {"default": 1}, "total_entries": 1},
    )
    expect_refusal(tmp_path, archive, CheckpointFormatError, "counts do not match its rows")


def test_counts_kept_without_their_triggers_are_refused(tmp_path: Path, checkpoint: Path) -> None:
    from semcache._store._sqlite_schema import COUNT_TABLE, COUNT_TRIGGERS

    sql = "; ".join(("DROP VIEW namespaces", COUNT_TABLE, COUNT_TRIGGERS[0]))
    archive = forge_store(
        tmp_path, checkpoint, sql + "; INSERT INTO namespaces SELECT 'default', 20"
    )
    expect_refusal(tmp_path, archive, CheckpointFormatError, "schema is not the one semcache")


def test_a_store_that_keeps_counts_restores(tmp_path: Path) -> None:
    # The count triggers a limit creates are part of semcache's own schema.
    with SemanticCache(str(tmp_path / "src.db"), HashingEmbedder(32), max_entries=15) as cache:
        cache.put_many([f"question {i}" for i in range(20)], [f"answer {i}" for i in range(20)])
        cache.dumps(tmp_path / "cp.tar.gz")
    with SemanticCache.loads(
        tmp_path / "cp.tar.gz", str(tmp_path / "dst.db"), HashingEmbedder(32)
    ) as cache:
        assert cache.stats()["total_entries"] == 15


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TRIGGER rewrite AFTER INSERT ON entries BEGIN "
        "UPDATE entries SET response = 'pwned' WHERE id = new.id; END",
        "CREATE VIEW everything AS SELECT * FROM entries",
        "CREATE TABLE extra(x)",
        "CREATE INDEX extra_idx ON entries(query)",
        # a trigger of semcache's name doing something else
        "DROP TRIGGER entries_delete; CREATE TRIGGER entries_delete AFTER DELETE ON entries "
        "BEGIN SELECT 1; END",
        # an optional index under its name but other columns
        "CREATE INDEX entries_lru ON entries(query)",
        "DROP INDEX entries_expiry",
    ],
    ids=["trigger", "view", "table", "index", "changed-trigger", "changed-lru", "missing-index"],
)
def test_only_semcaches_own_schema_is_restored(tmp_path: Path, checkpoint: Path, sql: str) -> None:
    archive = forge_store(tmp_path, checkpoint, sql)
    expect_refusal(tmp_path, archive, CheckpointFormatError, "schema is not the one semcache")


@pytest.mark.parametrize(
    ("sql", "match"),
    [
        ("PRAGMA user_version = 7", "user_version"),
        ("PRAGMA application_id = 42", "application_id"),
        ("PRAGMA journal_mode = wal", "rollback-journal"),
        ("UPDATE entries SET vector = x'00' WHERE id = 3", "vectors in the store copy"),
        ("UPDATE meta SET value = '-4' WHERE name = 'dim'", "dimension"),
        ("UPDATE sqlite_sequence SET seq = 1 WHERE name = 'entries'", "sequence of entries"),
        ("DELETE FROM schema_migrations", "schema version"),
    ],
)
def test_store_copy_header_and_rows_are_checked(
    tmp_path: Path, checkpoint: Path, sql: str, match: str
) -> None:
    archive = forge_store(tmp_path, checkpoint, sql)
    expect_refusal(tmp_path, archive, CheckpointFormatError, match)


def test_a_newer_store_schema_is_a_version_error(tmp_path: Path, checkpoint: Path) -> None:
    archive = forge_store(
        tmp_path, checkpoint, "INSERT INTO schema_migrations VALUES (99, 'future', 0)"
    )
    expect_refusal(tmp_path, archive, CheckpointVersionError, "schema version 99")


def test_the_restored_cache_keeps_its_quotas(tmp_path: Path, checkpoint: Path) -> None:
    # With correct counts a quota holds after restore (the forgery above is what broke it).
    with SemanticCache.loads(
        checkpoint, tmp_path / "r.db", HashingEmbedder(32), namespace_quotas={"default": 20}
    ) as cache:
        cache.put("one more", "x")
        assert cache.stats()["entries"] == {"default": 20}


def test_optional_objects_semcache_creates_are_accepted(tmp_path: Path) -> None:
    # Recency indexes (created by a limit) and the planner's statistics (PRAGMA optimize
    # on close) are semcache's own: such a store restores.
    path = str(tmp_path / "src.db")
    with SemanticCache(path, max_entries=5, namespace_quotas={"t": 2}) as cache:
        for i in range(8):
            cache.put(f"q{i}", "a", embedding=unit(i, DIM))
            cache.put(f"t{i}", "a", embedding=unit(i, DIM), namespace="t")
    import apsw

    conn = apsw.Connection(path)
    conn.execute("ANALYZE")
    names = {n for (n,) in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert {"entries_lru", "entries_ns_lru", "sqlite_stat1"} <= names
    with SemanticCache(path) as cache:
        cache.dumps(tmp_path / "cp.tar.gz")
    with SemanticCache.loads(tmp_path / "cp.tar.gz", tmp_path / "r.db", None) as restored:
        assert restored.stats()["entries"] == {"default": 3, "t": 2}


def test_manifest_seq_is_a_number(tmp_path: Path, checkpoint: Path) -> None:
    manifest = read_manifest(checkpoint)
    assert type(manifest["seq"]) is int
    assert manifest["seq"] == 20  # twenty puts, one change each
    # A manifest written as a one-item list (by earlier versions) still loads.
    old = rewrite(checkpoint, tmp_path / "old.tar.gz", lambda m, f: m.update(seq=[m["seq"]]))
    assert read_manifest(old)["seq"] == 20
    SemanticCache.loads(old, tmp_path / "r.db", None).close()
    for bad in ("20", -1, [1, 2], True):
        archive = rewrite(checkpoint, tmp_path / "bad.tar.gz", lambda m, f: m.update(seq=bad))  # noqa: B023
        expect_refusal(tmp_path, archive, CheckpointFormatError, "seq")
        archive.unlink()


def test_an_index_that_disagrees_with_its_table_is_refused(
    tmp_path: Path, checkpoint: Path
) -> None:
    # A key index entry altered in place: quick_check passes, the exact layer would look
    # up another row; integrity_check sees it.
    import apsw

    def change(manifest: dict[str, Any], files: dict[str, bytes]) -> None:
        data = bytearray(files["store.sqlite"])
        db = tmp_path / "probe.sqlite"
        db.write_bytes(data)
        conn = apsw.Connection(str(db))
        root = conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = 'sqlite_autoindex_entries_1'"
        ).get
        page = conn.execute("PRAGMA page_size").get
        conn.close()
        data[root * page - 3] ^= 0x01  # inside the index's last cell
        db.write_bytes(data)
        conn = apsw.Connection(str(db))
        assert conn.execute("PRAGMA quick_check").fetchall() == [("ok",)]
        conn.close()
        db.unlink()
        files["store.sqlite"] = bytes(data)
        manifest["files"]["store.sqlite"] = {
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }

    archive = rewrite(checkpoint, tmp_path / "forged.tar.gz", change)
    expect_refusal(tmp_path, archive, CheckpointFormatError, "integrity_check")


def test_older_schema_versions_are_derived_from_the_migrations(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An older version's schema comes from replaying the migrations up to it; for the
    # current version that must give what a fresh SQLiteStore has.
    import semcache._store._sqlite_schema as schema

    def create(path: str) -> None:
        SQLiteStore(path).close()

    fresh = schema._expected_schema(schema.SCHEMA_VERSION, create)
    monkeypatch.setattr(schema, "_SCHEMAS", {})
    monkeypatch.setattr(schema, "SCHEMA_VERSION", schema.SCHEMA_VERSION + 1)
    replayed = schema._expected_schema(schema.SCHEMA_VERSION - 1, create)
    assert replayed == fresh
    assert ("trigger", "entries_insert", "entries") in {r[:3] for r in fresh.required}
    assert ("index", "entries_lru", "entries") in {r[:3] for r in fresh.optional}


# -- arguments ----------------------------------------------------------------------------------
@pytest.mark.parametrize("dest", [5, "", None, object(), b"cp.tar.gz"])
def test_dumps_refuses_a_bad_destination_by_name(tmp_path: Path, dest: object) -> None:
    with SemanticCache(str(tmp_path / "c.db")) as cache:
        before = sorted(p.name for p in tmp_path.iterdir())
        with pytest.raises(InvalidInputError, match="dest"):
            cache.dumps(dest)  # type: ignore[arg-type]
        assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize(
    ("source", "where", "limit", "name", "error"),
    [
        (5, "new.db", 1 << 20, "source", InvalidInputError),
        (None, "new.db", 1 << 20, "source", InvalidInputError),
        ("cp", None, 1 << 20, "path", InvalidInputError),
        ("cp", 7, 1 << 20, "path", InvalidInputError),
        ("cp", "new.db", 0, "max_member_bytes", ConfigurationError),
        ("cp", "new.db", -1, "max_member_bytes", ConfigurationError),
        ("cp", "new.db", True, "max_member_bytes", ConfigurationError),
        ("cp", "new.db", 1.5, "max_member_bytes", ConfigurationError),
        ("cp", "new.db", 10**400, "max_member_bytes", ConfigurationError),
    ],
)
def test_loads_refuses_bad_arguments_by_name_before_writing(
    tmp_path: Path,
    checkpoint: Path,
    source: object,
    where: object,
    limit: object,
    name: str,
    error: type[Exception],
) -> None:
    source = checkpoint if source == "cp" else source
    where = str(tmp_path / where) if isinstance(where, str) else where
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(error, match=name):
        SemanticCache.loads(source, where, HashingEmbedder(32), max_member_bytes=limit)  # type: ignore[arg-type]
    with pytest.raises(error, match=name):
        asyncio.run(
            AsyncSemanticCache.loads(source, where, HashingEmbedder(32), max_member_bytes=limit)  # type: ignore[arg-type]
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == before
