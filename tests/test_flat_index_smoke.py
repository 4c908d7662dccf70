from __future__ import annotations

import numpy as np

from semcache import FlatIndex


def test_flat_index_finds_nearest_and_honours_tombstones() -> None:
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((50, 8)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    index = FlatIndex(8)
    index.add(np.arange(50), vecs)
    ids, sims = index.search(vecs[7], 3)
    assert ids[0] == 7
    assert abs(float(sims[0]) - 1.0) < 1e-5
    assert index.remove([7, 999]) == 1
    ids, _ = index.search(vecs[7], 50)
    assert 7 not in ids.tolist()
    assert len(ids) == 49
    assert index.compact() == 1
    assert index.tombstones == 0
