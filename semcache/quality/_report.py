"""Tables, headlines and plots for ``semcache eval`` and ``semcache calibrate``."""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from .._dist import install_hint
from .._errors import MissingDependencyError
from ._replay import QualityPoint

__all__ = ["format_table", "plot_curves"]

#: What peers serve by default, as cosine similarity thresholds (see docs/quality.md).
PEER_DEFAULTS: dict[float, str] = {
    0.60: "GPTCache default",
    0.80: "LangChain RedisSemanticCache default",
    0.85: "semcache default",
    0.90: "redisvl default",
}


def _num(value: float, digits: int = 3) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def format_table(points: Sequence[QualityPoint], *, markdown: bool = False) -> str:
    """One row per point: rule, hits, hit rate, precision, false hits per get, p50."""
    header = ["rule", "hits", "exact", "hit rate", "precision", "false hits/get", "p50 get"]
    rows = []
    for p in points:
        note = ""
        if p.rule.min_score is None and not p.rule.guards:
            note = PEER_DEFAULTS.get(round(p.rule.min_similarity, 3), "")
        label = p.rule.describe() + (f" ({note})" if note else "")
        rows.append(
            [
                label,
                str(p.hits),
                str(p.exact_hits),
                _num(p.hit_rate),
                _num(p.precision),
                _num(p.false_hits_per_get, 4),
                "-" if p.p50_get_ms is None else f"{p.p50_get_ms * 1000:.0f} us",
            ]
        )
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join([fmt.format(*header), *(fmt.format(*r) for r in rows)])


def plot_curves(
    curves: Mapping[str, Sequence[QualityPoint]], path: str | Path, *, title: str = ""
) -> None:
    """Draw hit rate against precision for each named curve into ``path`` (PNG).

    Raises:
        MissingDependencyError: matplotlib is not installed (``pip install
            'semcache-engine[plot]'``).
    """
    try:
        matplotlib = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        plt = importlib.import_module("matplotlib.pyplot")
    except ImportError as exc:
        raise MissingDependencyError(
            f"--plot needs matplotlib: {install_hint('plot')} ({exc})"
        ) from None
    fig, ax = plt.subplots(figsize=(7, 5))
    for name, points in curves.items():
        xs = [p.hit_rate for p in points if not math.isnan(p.precision)]
        ys = [p.precision for p in points if not math.isnan(p.precision)]
        ax.plot(xs, ys, label=name)
    for target in (0.95, 0.99):
        ax.axhline(target, color="grey", linewidth=0.6, linestyle="--")
    ax.set_xlabel("hit rate (correct hits / queries that should hit)")
    ax.set_ylabel("precision (correct hits / hits)")
    ax.set_title(title)
    ax.legend(loc="lower left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
