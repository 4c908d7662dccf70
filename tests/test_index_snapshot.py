"""Snapshots: foreign, corrupt or truncated files fail with ValueError; extras are
imported lazily and a missing one names its install command."""

from __future__ import annotations

import builtins
import hashlib
import io
import json
import struct
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import unit, unit_rows

from semcache import SemanticCache
from semcache._errors import MissingDependencyError
from semcache._index import (
    FaissIndex,
    FlatIndex,
    HnswlibIndex,
    load_index,
    make_index,
    snapshot_info,
)
from semcache._index._common import SNAPSHOT_KIND


def _flat(tmp_path: Path) -> Path:
    index = FlatIndex(8)
    index.add(np.arange(10), np.eye(10, 8, dtype=np.float32))
    path = tmp_path / "flat.idx"
    index.save(path)
    return path


@pytest.mark.parametrize(
    "content",
    [b"", b"hello, not a snapshot", b"PK\x03\x04garbage" * 10, b"\x93NUMPY\x01\x00junk"],
)
def test_foreign_files_raise_value_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "foreign"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="not a semcache index snapshot"):
        load_index(path)
    with pytest.raises(ValueError):
        FlatIndex.load(path)
    with pytest.raises(ValueError):
        snapshot_info(path)


def test_npz_of_another_kind_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "other.npz"
    with open(path, "wb") as fh:
        np.savez(fh, kind=np.array("something.else"), x=np.arange(3))
    with pytest.raises(ValueError, match="unknown snapshot kind"):
        load_index(path)


def test_pickled_payload_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pickle.npz"
    with open(path, "wb") as fh:
        np.savez(fh, kind=np.array("semcache.index.v2"), backend=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ValueError):
        load_index(path)


def test_truncated_and_bit_flipped_files(tmp_path: Path) -> None:
    path = _flat(tmp_path)
    data = path.read_bytes()
    (tmp_path / "short").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError):
        load_index(tmp_path / "short")
    flipped = bytearray(data)
    flipped[len(data) // 3] ^= 0xFF  # inside a stored member: the zip CRC catches it
    (tmp_path / "flipped").write_bytes(bytes(flipped))
    with pytest.raises(ValueError):
        load_index(tmp_path / "flipped")


@pytest.mark.parametrize("backend", ["hnswlib", "faiss"])
def test_a_graph_blob_is_mapped_and_its_crc_checked(tmp_path: Path, backend: str) -> None:
    # The graph's blob is read by mapping the file (no copy into memory); a bit flipped
    # inside it still fails the zip directory's CRC-32, before the library reads it.
    from semcache._index._common import read_snapshot

    opts = {"kind": "hnsw"} if backend == "faiss" else {}
    index = make_index(backend, 8, np.float32, opts)
    index.add(np.arange(10), np.eye(10, 8, dtype=np.float32))
    path = tmp_path / "good"
    index.save(path)
    blob = read_snapshot(path).arrays["blob"]
    assert isinstance(blob.base, np.memmap) or isinstance(blob, np.memmap)
    assert len(load_index(path)) == 10
    data = bytearray(path.read_bytes())
    at = bytes(data).index(blob[:64].tobytes()) + blob.shape[0] // 2
    data[at] ^= 0x01
    (tmp_path / "flipped").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="CRC"):
        load_index(tmp_path / "flipped")


def test_backend_mismatch(tmp_path: Path) -> None:
    path = _flat(tmp_path)
    with pytest.raises(ValueError, match="not a hnswlib index snapshot"):
        HnswlibIndex.load(path)
    with pytest.raises(ValueError, match="not a faiss index snapshot"):
        FaissIndex.load(path)


def test_corrupt_graph_blob(tmp_path: Path) -> None:
    index = make_index("faiss", 8, np.float32, {"kind": "hnsw"})
    index.add(np.arange(10), np.eye(10, 8, dtype=np.float32))
    good = tmp_path / "good"
    index.save(good)
    with np.load(good, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["a_blob"] = np.frombuffer(b"garbage!" * 8, dtype=np.uint8)
    bad = tmp_path / "bad"
    with open(bad, "wb") as fh:
        np.savez(fh, **arrays)
    with pytest.raises(ValueError, match="corrupt"):
        load_index(bad)


def test_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_index(tmp_path / "nope")


def test_failed_save_leaves_old_snapshot_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _flat(tmp_path)
    before = path.read_bytes()
    index = FlatIndex(8)
    index.add([1], np.ones((1, 8), np.float32))

    def boom(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        index.save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flat.idx"]


def test_legacy_flat_snapshot_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "v1"
    with open(path, "wb") as fh:
        np.savez(
            fh,
            kind=np.array("semcache.flat.v1"),
            dim=np.array(4),
            ids=np.array([7, 8], dtype=np.int64),
            vectors=np.eye(2, 4, dtype=np.float32),
        )
    index = load_index(path)
    assert isinstance(index, FlatIndex)
    assert index.search(np.array([0, 1, 0, 0], np.float32), 1)[0].tolist() == [8]


def test_snapshot_is_a_plain_zip(tmp_path: Path) -> None:
    path = _flat(tmp_path)
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None
        assert "header.npy" in zf.namelist()


@pytest.mark.parametrize(("backend", "module"), [("faiss", "faiss"), ("hnswlib", "hnswlib")])
def test_missing_extra_names_install_command(
    monkeypatch: pytest.MonkeyPatch, backend: str, module: str
) -> None:
    real_import = builtins.__import__

    def fake_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == module or name.startswith(module + "."):
            raise ImportError(f"No module named {module!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(
        MissingDependencyError, match=rf"pip install 'semcache-engine\[{backend}\]'"
    ):
        make_index(backend, 8, np.float32, {})


# -- hostile headers: every size is bounded before anything is allocated -------------------
def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _npy_header(shape: tuple[int, ...], dtype: str) -> bytes:
    """An .npy member that claims ``shape`` and holds no data."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf,
        {
            "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
            "fortran_order": False,
            "shape": shape,
        },
    )
    return buf.getvalue()


def _write_raw(path: Path, backend: str, header: dict[str, Any], members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("kind.npy", _npy(np.array(SNAPSHOT_KIND)))
        zf.writestr("backend.npy", _npy(np.array(backend)))
        zf.writestr("header.npy", _npy(np.array(json.dumps(header))))
        for name, data in members.items():
            zf.writestr(f"a_{name}.npy", data)
    return path


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _resave(path: Path, arrays: dict[str, np.ndarray], **header: Any) -> Path:
    arrays = dict(arrays)
    if header:
        merged = json.loads(str(arrays["header"]))
        merged.update(header)
        arrays["header"] = np.array(json.dumps(merged))
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return path


@pytest.mark.parametrize(
    ("header", "members", "match"),
    [
        # a header dimension that would size a 233 TiB matrix
        (
            {"dim": 10**12, "dtype": "float32", "count": 0},
            {"ids": _npy(np.zeros(0, np.int64)), "vectors": _npy_header((0, 10**12), "float32")},
            "dim",
        ),
        # an array that claims 8 TiB and holds nothing
        (
            {"dim": 8, "dtype": "float32", "count": 0},
            {"ids": _npy_header((2**40,), "int64"), "vectors": _npy(np.zeros((0, 8), np.float32))},
            "claims",
        ),
        (
            {"dim": 8, "dtype": "float32", "count": 0},
            {"ids": _npy(np.zeros(0, np.int64)), "vectors": _npy_header((2**20, 8), "float32")},
            "claims",
        ),
    ],
    ids=["dim", "ids", "vectors"],
)
def test_sizes_claimed_by_a_header_are_bounded(
    tmp_path: Path, header: dict[str, Any], members: dict[str, bytes], match: str
) -> None:
    path = _write_raw(tmp_path / "hostile.npz", "flat", header, members)
    with pytest.raises(ValueError, match=match):  # was MemoryError
        load_index(path)


def test_compressed_members_are_refused(tmp_path: Path) -> None:
    # a compressed member could expand far beyond the file's size
    arrays = _arrays(_flat(tmp_path))
    path = tmp_path / "deflated.npz"
    with open(path, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    with pytest.raises(ValueError, match="not a stored"):
        load_index(path)


@pytest.mark.parametrize(
    ("backend", "options"),
    [
        ("hnswlib", {}),
        ("faiss", {"kind": "hnsw"}),
        ("faiss", {"kind": "flat"}),
        ("auto", {"switch_at": 4}),
    ],
)
@pytest.mark.parametrize("field", ["M", "ef_search", "ef_construction", "dim"])
def test_graph_header_parameters_are_bounded(
    tmp_path: Path, backend: str, options: dict[str, Any], field: str
) -> None:
    index = make_index(backend, 8, np.float32, options)
    index.add(np.arange(10), np.eye(10, 8, dtype=np.float32))
    index.save(tmp_path / "good.npz")
    arrays = _arrays(tmp_path / "good.npz")
    header = json.loads(str(arrays["header"]))
    if backend == "auto" and field != "dim":
        header["auto"][field] = 10**9
    else:
        header[field] = 10**9
    arrays["header"] = np.array(json.dumps(header))
    path = _resave(tmp_path / "big.npz", arrays)
    with pytest.raises(ValueError, match=field):  # auto: its index_options bounds name it
        load_index(path)


@pytest.mark.parametrize(
    ("offset", "value", "fmt"),
    [
        (16, 10**15, "<Q"),  # cur_element_count: more rows than the ids
        (24, 1 << 40, "<Q"),  # size_data_per_element
        (8, 1 << 50, "<Q"),  # max_elements, with the count above the capacity given
        (48, 1 << 30, "<i"),  # maxlevel
        (88, 1 << 40, "<Q"),  # ef_construction
    ],
)
def test_hnswlib_blob_header_is_checked(tmp_path: Path, offset: int, value: int, fmt: str) -> None:
    index = make_index("hnswlib", 8, np.float32, {})
    index.add(np.arange(10), np.eye(10, 8, dtype=np.float32))
    index.save(tmp_path / "good.npz")
    arrays = _arrays(tmp_path / "good.npz")
    blob = bytearray(arrays["a_blob"].tobytes())
    struct.pack_into(fmt, blob, offset, value)
    if offset == 8:
        struct.pack_into("<Q", blob, 16, 1000)  # count over the capacity: hnswlib uses max_elements
    arrays["a_blob"] = np.frombuffer(bytes(blob), dtype=np.uint8)
    with pytest.raises(ValueError, match="corrupt"):
        load_index(_resave(tmp_path / "bad.npz", arrays))


def test_hnswlib_level0_links_are_checked(tmp_path: Path) -> None:
    index = make_index("hnswlib", 8, np.float32, {"M": 4})
    index.add(np.arange(10), np.eye(10, 8, dtype=np.float32))
    index.save(tmp_path / "good.npz")
    arrays = _arrays(tmp_path / "good.npz")
    good = arrays["a_blob"].tobytes()
    blob = bytearray(good)
    struct.pack_into("<I", blob, 96 + 4, 10**6)  # row 0's first neighbour: far outside
    arrays["a_blob"] = np.frombuffer(bytes(blob), dtype=np.uint8)
    with pytest.raises(ValueError, match="link"):
        load_index(_resave(tmp_path / "bad.npz", arrays))
    # a slot past row 0's link count is never read: any value there loads
    blob = bytearray(good)
    count = struct.unpack_from("<H", blob, 96)[0]
    assert count < 8
    struct.pack_into("<I", blob, 96 + 4 + 4 * count, 10**6)
    arrays["a_blob"] = np.frombuffer(bytes(blob), dtype=np.uint8)
    assert len(load_index(_resave(tmp_path / "unused.npz", arrays))) == 10


def test_faiss_vector_sizes_are_bounded_by_the_blob(tmp_path: Path) -> None:
    index = make_index("faiss", 8, np.float32, {"kind": "flat"})
    index.add(np.arange(10), np.eye(10, 8, dtype=np.float32))
    index.save(tmp_path / "good.npz")
    arrays = _arrays(tmp_path / "good.npz")
    blob = bytearray(arrays["a_blob"].tobytes())
    # IndexFlatIP: fourcc, d, ntotal, two dummies, is_trained, metric type, then the
    # codes' size in floats: claim 64 GiB.
    struct.pack_into("<Q", blob, 4 + 4 + 8 + 8 + 8 + 1 + 4, 1 << 34)
    arrays["a_blob"] = np.frombuffer(bytes(blob), dtype=np.uint8)
    with pytest.raises(ValueError, match="corrupt"):
        load_index(_resave(tmp_path / "bad.npz", arrays))
    # the header's rows and dim must agree with the snapshot's
    blob = bytearray(_arrays(tmp_path / "good.npz")["a_blob"].tobytes())
    struct.pack_into("<q", blob, 8, 11)
    arrays["a_blob"] = np.frombuffer(bytes(blob), dtype=np.uint8)
    with pytest.raises(ValueError, match="corrupt"):
        load_index(_resave(tmp_path / "bad2.npz", arrays))


# -- a hostile sidecar or checkpoint snapshot: the cache opens and rebuilds ----------------
def _hostile_flat(path: Path, meta: dict[str, Any]) -> None:
    _write_raw(
        path,
        "flat",
        {"dim": 10**12, "dtype": "float32", "count": 0, "meta": meta},
        {"ids": _npy(np.zeros(0, np.int64)), "vectors": _npy_header((0, 10**12), "float32")},
    )


@pytest.mark.parametrize("backend", ["flat", "auto", "hnswlib"])
def test_a_hostile_sidecar_snapshot_is_rebuilt_on_open(tmp_path: Path, backend: str) -> None:
    path = str(tmp_path / "c.db")
    with SemanticCache(path, index_backend=backend, similarity_threshold=0.99) as cache:
        for i in range(20):
            cache.put(f"q{i}", f"a{i}", embedding=unit(i, 8))
    folder = Path(path + ".index")
    manifest = json.loads((folder / "manifest.json").read_text())
    for ns, name in manifest["namespaces"].items():
        _hostile_flat(folder / name, {"seq": manifest["seq"], "namespace": ns})
    # guards off: the lookup uses a placeholder text ("x" against "q3")
    with SemanticCache(
        path, index_backend=backend, similarity_threshold=0.99, guards=None
    ) as cache:
        assert cache.stats()["index_source"] == "store"
        assert cache.get("x", embedding=unit(3, 8)).response == "a3"  # type: ignore[union-attr]


def test_a_snapshot_claiming_more_rows_than_the_store_ever_had(tmp_path: Path) -> None:
    path = str(tmp_path / "c.db")
    with SemanticCache(path, index_backend="flat") as cache:
        for i in range(5):
            cache.put(f"q{i}", f"a{i}", embedding=unit(i, 8))
    folder = Path(path + ".index")
    manifest = json.loads((folder / "manifest.json").read_text())
    (name,) = manifest["namespaces"].values()
    _resave(folder / name, _arrays(folder / name), count=10**6)
    with SemanticCache(path, index_backend="flat") as cache:
        assert cache.stats()["index_source"] == "store"
    # a manifest sequence past the store's
    manifest["seq"] = 10**9
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with SemanticCache(path, index_backend="flat") as cache:
        assert cache.stats()["index_source"] == "store"


def test_a_hostile_snapshot_inside_a_checkpoint_is_rebuilt(tmp_path: Path) -> None:
    path = str(tmp_path / "c.db")
    with SemanticCache(path, index_backend="flat", similarity_threshold=0.99) as cache:
        for i in range(20):
            cache.put(f"q{i}", f"a{i}", embedding=unit(i, 8))
        cache.dumps(tmp_path / "cp.tar.gz")
    with tarfile.open(tmp_path / "cp.tar.gz", "r:gz") as tar:
        files = {}
        for member in tar.getmembers():
            fh = tar.extractfile(member)
            assert fh is not None
            files[member.name] = fh.read()
    manifest = json.loads(files.pop("manifest.json"))
    index_manifest = json.loads(files["index/manifest.json"])
    for ns, name in index_manifest["namespaces"].items():
        hostile = tmp_path / "hostile.npz"
        _hostile_flat(hostile, {"seq": index_manifest["seq"], "namespace": ns})
        data = hostile.read_bytes()
        files[f"index/{name}"] = data
        manifest["files"][f"index/{name}"] = {
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
    with tarfile.open(tmp_path / "forged.tar.gz", "w:gz") as tar:
        for name, data in [("manifest.json", json.dumps(manifest).encode()), *files.items()]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    restored = SemanticCache.loads(
        tmp_path / "forged.tar.gz",
        tmp_path / "r.db",
        None,
        similarity_threshold=0.99,
        index_backend="flat",
        guards=None,  # the lookup uses a placeholder text
    )
    with restored:
        assert restored.stats()["index_source"] == "store"
        assert restored.get("x", embedding=unit(7, 8)).response == "a7"  # type: ignore[union-attr]


def test_hnswlib_upper_level_links_are_checked(tmp_path: Path) -> None:
    m, dim, n = 4, 8, 300
    index = make_index("hnswlib", dim, np.float32, {"M": m})
    vectors = np.random.default_rng(5).standard_normal((n, dim)).astype(np.float32)
    index.add(np.arange(n), vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    index.save(tmp_path / "good.npz")
    arrays = _arrays(tmp_path / "good.npz")
    good = arrays["a_blob"].tobytes()
    per = struct.unpack_from("<Q", good, 24)[0]
    pos = 96 + n * per
    while struct.unpack_from("<I", good, pos)[0] == 0:  # the first row with upper levels
        pos += 4
    cases = {
        "link": (pos + 4 + 4, "<I", 10**6),  # its first upper-level link: outside
        "fit": (pos, "<I", 10**6),  # its list's size: past the end
        "levels": (48, "<i", struct.unpack_from("<i", good, 48)[0] + 1),  # maxlevel
    }
    for match, (offset, fmt, value) in cases.items():
        blob = bytearray(good)
        struct.pack_into(fmt, blob, offset, value)
        arrays["a_blob"] = np.frombuffer(bytes(blob), dtype=np.uint8)
        with pytest.raises(ValueError, match=match):
            load_index(_resave(tmp_path / f"bad-{match}.npz", arrays))


def test_hnswlib_reopens_from_the_blob_without_a_scratch_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The graph is rebuilt from the mapped blob's parts in memory (hnswlib's pickle
    state), not written to a scratch file and read back: same answers as before the
    save (upper levels and tombstones included), and it grows and saves afterwards."""
    from semcache._index import _graph

    rng = np.random.default_rng(11)
    x = rng.standard_normal((3000, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    index = HnswlibIndex(16, M=4, ef_construction=32, ef_search=32)
    index.add(np.arange(3000), x)
    index.remove(np.arange(0, 3000, 7))
    path = tmp_path / "g.idx"
    index.save(path)

    def no_scratch() -> Any:
        raise AssertionError("a scratch file was used to load")

    monkeypatch.setattr(_graph, "hnsw_scratch", no_scratch)
    back = load_index(path)
    assert isinstance(back, HnswlibIndex)
    assert back._native.element_count == 3000
    assert back.tombstones == index.tombstones
    q = x[:200] + 0.05 * rng.standard_normal((200, 16)).astype(np.float32)
    for v in q:
        want, got = index.search(v, 5), back.search(v, 5)
        assert want[0].tolist() == got[0].tolist()
        np.testing.assert_allclose(want[1], got[1], rtol=0, atol=1e-6)
    monkeypatch.undo()
    back.add(np.arange(3000, 6000), x[:, ::-1].copy())  # past the capacity: a resize
    assert int(back.search(x[5, ::-1].copy(), 1)[0][0]) == 3005
    back.save(path)
    assert len(load_index(path)) == len(back)


def test_hnswlib_upper_level_framing_is_checked(tmp_path: Path) -> None:
    """The walk over the upper-level lists (jumping over rows without upper levels)
    refuses a section cut short, one with bytes left over, and a size that is not a
    whole number of levels."""
    m, dim, n = 4, 8, 300
    index = make_index("hnswlib", dim, np.float32, {"M": m})
    vectors = np.random.default_rng(6).standard_normal((n, dim)).astype(np.float32)
    index.add(np.arange(n), vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    index.save(tmp_path / "good.npz")
    arrays = _arrays(tmp_path / "good.npz")
    good = arrays["a_blob"].tobytes()
    per = struct.unpack_from("<Q", good, 24)[0]
    pos = 96 + n * per
    while struct.unpack_from("<I", good, pos)[0] == 0:
        pos += 4
    size = struct.unpack_from("<I", good, pos)[0]
    cases = {
        "whole words": good[:-2],
        "end early": good[:pos],  # the rows from the first with upper levels on
        "after the last": good + bytes(4),
        "do not fit": good[:pos] + struct.pack("<I", size + 4) + good[pos + 4 :],
    }
    for match, blob in cases.items():
        arrays["a_blob"] = np.frombuffer(blob, dtype=np.uint8)
        with pytest.raises(ValueError, match=match):
            load_index(_resave(tmp_path / "bad.npz", arrays))


@pytest.mark.parametrize("rows", [0, 1, 2])
def test_small_and_empty_hnswlib_graphs_reopen(tmp_path: Path, rows: int) -> None:
    """An empty graph, one row, and two rows both removed (a namespace emptied) reopen,
    and take rows afterwards."""
    index = HnswlibIndex(8)
    if rows:
        index.add(np.arange(rows), np.eye(rows, 8, dtype=np.float32))
    if rows == 2:
        index.remove([0, 1])
    index.save(tmp_path / "g.idx")
    back = load_index(tmp_path / "g.idx")
    assert len(back) == (1 if rows == 1 else 0)
    assert back.tombstones == index.tombstones
    back.add([7], np.ones((1, 8), np.float32))
    assert int(back.search(np.ones(8, np.float32), 1)[0][0]) == 7


@pytest.mark.parametrize("backend", ["hnswlib", "faiss", "auto"])
def test_the_blob_crc_runs_beside_the_hnswlib_restore_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    """An hnswlib blob's CRC-32 runs on a thread while the graph is rebuilt (its
    structure is checked in full first), and is waited for before the index is
    returned; faiss's blob is still checked before faiss reads it."""
    import threading
    import types
    import zlib

    from semcache._index import AutoIndex, _common

    options = {"switch_at": 20, "background": False, "decide": "rows"}
    opts: dict[str, Any] = {"faiss": {"kind": "hnsw"}, "auto": options}.get(backend, {})
    index = make_index(backend, 8, np.float32, opts)
    index.add(np.arange(50), unit_rows(50, 8, 3))
    if isinstance(index, AutoIndex):
        assert index.active == "hnswlib"
    index.save(tmp_path / "g.idx")
    deferred = backend != "faiss"
    order: list[str] = []
    restored = threading.Event()

    def crc32(data: Any, value: int = 0) -> int:
        if deferred:
            assert restored.wait(30), "the CRC ran before the restore"
        order.append("crc")
        return zlib.crc32(data, value)

    native = HnswlibIndex if deferred else FaissIndex
    real = native._native_restore

    def restore(self: Any, *args: Any) -> Any:
        out = real(self, *args)
        order.append("restore")
        restored.set()
        return out

    monkeypatch.setattr(_common, "zlib", types.SimpleNamespace(crc32=crc32))
    monkeypatch.setattr(native, "_native_restore", restore)
    assert len(load_index(tmp_path / "g.idx")) == 50
    assert order == (["restore", "crc"] if deferred else ["crc", "restore"])


@pytest.mark.parametrize("where", ["vectors", "links"])
def test_a_corrupt_hnswlib_blob_is_reported_by_its_crc(tmp_path: Path, where: str) -> None:
    """The CRC-32 that ran beside the restore still rejects a flipped bit, whether the
    structure checks pass (a vector) or fail first (a link): reported as a CRC error."""
    from semcache._index import AutoIndex

    rng = np.random.default_rng(4)
    index = HnswlibIndex(8, M=4)
    index.add(np.arange(300), unit_rows(300, 8, rng))
    index.save(tmp_path / "good.idx")
    arrays = _arrays(tmp_path / "good.idx")
    good = arrays["a_blob"].tobytes()
    per = struct.unpack_from("<Q", good, 24)[0]
    offset = 96 + 5 * per + (4 + 2 * 4 * 4 + 8 if where == "vectors" else 4)  # row 5
    path = tmp_path / "good.idx"
    data = bytearray(path.read_bytes())
    at = bytes(data).index(good[:64]) + offset
    data[at + 3] ^= 0x40  # a vector's exponent, or a link's high byte: far outside
    (tmp_path / "bad.idx").write_bytes(bytes(data))
    for load in (load_index, HnswlibIndex.load):
        with pytest.raises(ValueError, match="CRC"):
            load(tmp_path / "bad.idx")
    auto = AutoIndex(8, switch_at=20, background=False, decide="rows", M=4)
    auto.add(np.arange(300), unit_rows(300, 8, rng))
    auto.save(tmp_path / "auto.idx")
    blob = _arrays(tmp_path / "auto.idx")["a_blob"].tobytes()
    data = bytearray((tmp_path / "auto.idx").read_bytes())
    data[bytes(data).index(blob[:64]) + offset + 3] ^= 0x40
    (tmp_path / "auto-bad.idx").write_bytes(bytes(data))
    for load in (load_index, AutoIndex.load):
        with pytest.raises(ValueError, match="CRC"):
            load(tmp_path / "auto-bad.idx")
