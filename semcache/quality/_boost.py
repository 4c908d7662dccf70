"""Gradient-boosted decision trees for binary labels, in NumPy: small, fast to
evaluate on one row, and stored as plain numbers.

Training bins every feature at its quantiles and grows each tree level by level from
per-bin gradient histograms (the approach of histogram GBDT libraries, written small).
Trees are complete and of fixed depth, stored as arrays in heap order, so one row is
scored for every tree at once with a few NumPy operations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["BoostedTrees", "fit_boosted_trees"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class BoostedTrees:
    """A fitted model: ``score(x) = base + sum over trees of leaf(x)``, a log-odds.

    Attributes:
        base: the starting log-odds.
        feature: ``(trees, 2**depth - 1)`` feature index of each internal node.
        threshold: same shape; a row goes right when ``x[feature] > threshold``.
        leaf: ``(trees, 2**depth)`` leaf values.
    """

    base: float
    feature: npt.NDArray[np.intp]
    threshold: FloatArray
    leaf: FloatArray
    _flat: tuple[Any, ...] = field(init=False, repr=False, compare=False)

    @property
    def depth(self) -> int:
        """The depth of every tree."""
        return int(self.leaf.shape[1]).bit_length() - 1

    def decision(self, x: npt.ArrayLike) -> FloatArray:
        """Log-odds for the rows of ``x`` (``(n, features)``)."""
        rows = np.atleast_2d(np.asarray(x, dtype=np.float64))
        n, trees = rows.shape[0], self.feature.shape[0]
        node = np.zeros((n, trees), dtype=np.intp)
        tree_idx = np.arange(trees)
        for _ in range(self.depth):
            f = self.feature[tree_idx, node]
            right = rows[np.arange(n)[:, None], f] > self.threshold[tree_idx, node]
            node = 2 * node + 1 + right
        leaves = node - (self.leaf.shape[1] - 1)
        out: FloatArray = self.base + self.leaf[tree_idx, leaves].sum(axis=1)
        return out

    def decision_one(self, x: FloatArray) -> float:
        """Log-odds of one row (a 1-d float64 array): the fast path of the verifier."""
        feature, threshold, leaf, starts, leaf_starts = self._flat
        node = np.zeros(len(starts), dtype=np.intp)
        for _ in range(self.depth):
            at = starts + node
            node = 2 * node + 1 + (x.take(feature.take(at)) > threshold.take(at))
        return self.base + float(leaf.take(leaf_starts + node).sum())

    def __post_init__(self) -> None:
        trees, internal = self.feature.shape
        starts = np.arange(trees, dtype=np.intp) * internal
        # node ids run from `internal` to 2*internal in the last level
        leaf_starts = np.arange(trees, dtype=np.intp) * (internal + 1) - internal
        flat = (
            self.feature.ravel(),
            self.threshold.ravel(),
            self.leaf.ravel(),
            starts,
            leaf_starts,
        )
        object.__setattr__(self, "_flat", flat)

    def to_json(self) -> dict[str, Any]:
        """Plain lists and numbers (no pickle)."""
        return {
            "base": self.base,
            "feature": self.feature.tolist(),
            "threshold": self.threshold.tolist(),
            "leaf": self.leaf.tolist(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], n_features: int) -> BoostedTrees:
        """The inverse of :meth:`to_json`.

        Raises:
            ValueError: shapes or values that cannot make a model.
        """
        feature = np.asarray(data["feature"], dtype=np.intp)
        threshold = np.asarray(data["threshold"], dtype=np.float64)
        leaf = np.asarray(data["leaf"], dtype=np.float64)
        base = float(data["base"])
        if feature.ndim != 2 or feature.shape != threshold.shape or leaf.ndim != 2:
            raise ValueError("tree arrays have inconsistent shapes")
        if leaf.shape[0] != feature.shape[0] or leaf.shape[1] != feature.shape[1] + 1:
            raise ValueError("tree arrays have inconsistent shapes")
        if leaf.shape[1] & (leaf.shape[1] - 1) or leaf.shape[1] < 2:
            raise ValueError("trees must be complete binary trees")
        if feature.size and (feature.min() < 0 or feature.max() >= n_features):
            raise ValueError("a node names a feature that does not exist")
        if not (np.isfinite(leaf).all() and np.isfinite(base)):
            raise ValueError("non-finite leaf values")
        if np.isnan(threshold).any():
            raise ValueError("NaN thresholds")
        return cls(base, feature, threshold, leaf)


def _bin_edges(x: FloatArray, max_bins: int) -> list[FloatArray]:
    edges = []
    qs = np.linspace(0, 1, max_bins + 1)[1:-1]
    for j in range(x.shape[1]):
        col = x[:, j]
        e = np.unique(np.quantile(col, qs, method="lower"))
        edges.append(e.astype(np.float64))
    return edges


def fit_boosted_trees(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    *,
    trees: int = 150,
    depth: int = 3,
    learning_rate: float = 0.1,
    max_bins: int = 48,
    l2: float = 1.0,
    min_child_weight: float = 5.0,
    sample_weight: npt.ArrayLike | None = None,
) -> BoostedTrees:
    """Fit gradient-boosted trees to binary labels (logistic loss). Deterministic.

    Args:
        x: ``(n, features)`` inputs.
        y: ``n`` labels, 0 or 1.
        trees: boosting rounds.
        depth: depth of every tree (complete trees; a node that cannot split usefully
            sends every row one way).
        learning_rate: shrinkage of each tree.
        max_bins: quantile bins per feature (split candidates).
        l2: L2 penalty on leaf values.
        min_child_weight: least hessian mass a child needs.
        sample_weight: optional per-row weights.

    Returns:
        The fitted :class:`BoostedTrees`.

    Raises:
        ValueError: empty input, mismatched lengths, or labels other than 0 and 1.
    """
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    if xs.ndim != 2 or xs.shape[0] == 0 or xs.shape[0] != ys.shape[0]:
        raise ValueError("x must be (n, features) with n >= 1 labels in y")
    if not np.isin(ys, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    w = np.ones_like(ys) if sample_weight is None else np.asarray(sample_weight, np.float64)
    n, nf = xs.shape
    edges = _bin_edges(xs, max_bins)
    nb = max(len(e) for e in edges) + 1
    binned = np.stack([np.searchsorted(edges[j], xs[:, j], side="left") for j in range(nf)], 1)
    # bin b holds values <= edges[b] (and > edges[b-1]); a split "bin <= b" is "x <= edges[b]"
    pos = float(np.clip((w * ys).sum() / w.sum(), 1e-6, 1 - 1e-6))
    base = float(np.log(pos / (1 - pos)))
    score = np.full(n, base)
    n_internal, n_leaves = 2**depth - 1, 2**depth
    feat_out = np.zeros((trees, n_internal), dtype=np.intp)
    thr_out = np.full((trees, n_internal), np.inf)
    leaf_out = np.zeros((trees, n_leaves))
    offsets = (np.arange(nf) * nb)[None, :]
    for t in range(trees):
        p = 1.0 / (1.0 + np.exp(-score))
        g = w * (p - ys)
        h = w * np.maximum(p * (1 - p), 1e-12)
        node = np.zeros(n, dtype=np.intp)  # index within the current level
        for level in range(depth):
            width = 2**level
            flat = (node[:, None] * (nf * nb) + offsets + binned).ravel()
            size = width * nf * nb
            gh = np.bincount(flat, np.repeat(g, nf), size).reshape(width, nf, nb)
            hh = np.bincount(flat, np.repeat(h, nf), size).reshape(width, nf, nb)
            gl, hl = np.cumsum(gh, 2), np.cumsum(hh, 2)
            gt, ht = gl[:, :, -1:], hl[:, :, -1:]
            gr, hr = gt - gl, ht - hl
            gain = gl**2 / (hl + l2) + gr**2 / (hr + l2) - gt**2 / (ht + l2)
            ok = (hl >= min_child_weight) & (hr >= min_child_weight)
            gain = np.where(ok, gain, -np.inf)
            go_right = np.zeros(n, dtype=bool)
            for k in range(width):
                flat_best = int(np.argmax(gain[k]))
                j, b = divmod(flat_best, nb)
                heap = width - 1 + k
                if not np.isfinite(gain[k, j, b]) or gain[k, j, b] <= 1e-9:
                    feat_out[t, heap], thr_out[t, heap] = 0, np.inf  # everyone goes left
                    continue
                feat_out[t, heap] = j
                thr_out[t, heap] = edges[j][b] if b < len(edges[j]) else np.inf
                sel = node == k
                go_right[sel] = binned[sel, j] > b
            node = 2 * node + go_right
        gs = np.bincount(node, g, n_leaves)
        hs = np.bincount(node, h, n_leaves)
        values = -learning_rate * gs / (hs + l2)
        leaf_out[t] = values
        score += values[node]
    return BoostedTrees(base, feat_out, thr_out, leaf_out)
