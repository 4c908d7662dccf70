"""Snapshots: foreign, corrupt or truncated files fail with ValueError; extras are
imported lazily and a missing one names its install command."""

from __future__ import annotations

import builtins
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from semcache._errors import MissingDependencyError
from semcache._index import (
    FaissIndex,
    FlatIndex,
    HnswlibIndex,
    load_index,
    make_index,
    snapshot_info,
)


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
