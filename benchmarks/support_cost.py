"""What answer support adds to a semantic hit, measured get by get (docs/quality.md,
"Answers that agree, by default": cost).

The rows of ``pytest benchmarks/test_bench_cache.py -k answer_support_10k`` run one
setup after another; on a shared VM the machine's speed drifts between them by more
than the difference measured. Here each setup has caches over the same 10k rows,
``answer_support`` on and off, and their gets alternate one by one, so that drift
falls on both alike. The rows are those of the benchmark's ``clustered`` fixture (100
clusters, 7 neighbours above the support floor): answers unique, repeated (one per
cluster) and mixed (two per cluster). A third cache, answer support on without the
answer model (``answer_model=False``), and a fourth, without the model nor the
prototypes (the rival answers' standing; the veto with an error budget), are
interleaved too: their own shares. Two more rows ask with a
number no stored prompt holds ("variant 99999"), so the numbers guard rejects every
candidate and the head's evidence is weighed (semcache/_guard_evidence.py); there a
fourth cache, answer support on with guards that never yield (``held``), gives the
evidence's own share (answers unique: nothing to weigh; mixed: every pair). Last,
the support arithmetic of the mixed row's 8 candidates, its Python functions against
their C twins, and the rival answers' standing of the repeated row's against the veto.

Run:  .venv/bin/python benchmarks/support_cost.py [--gets 6000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from semcache import SemanticCache
from semcache._answer_model import AnswerModels
from semcache._cache import engine_of

#: The answer model fitted in the warm-up's first get, not on its own thread: every
#: timed get sees it.
AnswerModels.background = False

DIM = 384
N = 10_000
QUERY = "a paraphrase (variant 4321)"
#: A query whose number no stored prompt holds: the numbers guard rejects every candidate.
REJECTED = "a paraphrase (variant 99999)"
#: Interleaved get by get: answer support on (as shipped), on without the answer model,
#: on without its prototypes (the rival answers) nor the model, off; and where the guard
#: rejects, on with guards that never yield.
SETUPS = ("on", "no model", "no veto", "off", "held")


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _rows() -> np.ndarray:
    """The benchmark's ``clustered`` rows (same seed, same construction)."""
    rng = np.random.default_rng(7)
    centres = _unit(rng.standard_normal((100, DIM)))[np.arange(N) % 100]
    noise = rng.standard_normal((N, DIM))
    noise -= (noise * centres).sum(axis=1, keepdims=True) * centres
    return _unit(0.87 * centres + np.sqrt(1 - 0.87**2) * _unit(noise)).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gets", type=int, default=6000, help="rounds of gets per setup")
    args = parser.parse_args()
    rows = _rows()
    query = _unit(rows[4321] + 0.01 * np.random.default_rng(1).standard_normal(DIM))
    prompts = [f"prompt (variant {i})" for i in range(N)]
    with tempfile.TemporaryDirectory() as folder:
        for name, every, text in (
            ("unique", N, QUERY),
            ("repeated", 100, QUERY),
            ("mixed", 200, QUERY),
            ("unique, the guard rejects", N, REJECTED),
            ("mixed, the guard rejects", 200, REJECTED),
        ):
            setups = SETUPS if text == REJECTED else SETUPS[:4]
            answers = [f"answer {i % every}" for i in range(N)]
            caches = {}
            for setup in setups:
                cache = SemanticCache(
                    str(Path(folder) / f"{name}-{setup}.db"),
                    answer_support=setup != "off",
                    answer_model=setup != "no model",
                )
                eng = engine_of(cache)
                if setup == "no veto":  # (the prototypes' own share: the tables left out)
                    eng.prototypes = eng.indexes.prototypes = eng.answer_models = None
                if setup == "held":  # (the evidence's own share: no guard yields)
                    eng.guards_yield = False
                cache.put_many(prompts, answers, embeddings=rows)
                for _ in range(100):  # warm: the hot map, the memos, the prototypes
                    cache.get(text, embedding=query)
                caches[setup] = cache
            times: dict[str, list[int]] = {setup: [] for setup in setups}
            served: dict[str, bool] = {}
            for _ in range(args.gets):
                for setup in setups:
                    t0 = time.perf_counter_ns()
                    hit = caches[setup].get(text, embedding=query)
                    times[setup].append(time.perf_counter_ns() - t0)
                    served[setup] = hit is not None
            p50 = {setup: float(np.median(times[setup])) / 1000 for setup in setups}
            on, no_veto, off = p50["on"], p50["no veto"], p50["off"]
            no_model = p50["no model"]
            line = (
                f"{name}: on {on:.0f} us, off {off:.0f} us, +{on - off:.0f} us p50 "
                f"(without the model {no_model:.0f} us: the model +{on - no_model:.0f}; "
                f"without the prototypes {no_veto:.0f} us: the rivals "
                f"+{no_model - no_veto:.0f})"
            )
            if "held" in p50:
                line += (
                    f"; guards held {p50['held']:.0f} us: the evidence +{on - p50['held']:.0f}"
                    f" (hit: " + ", ".join(f"{k} {v}" for k, v in served.items()) + ")"
                )
            print(line, flush=True)
            for cache in caches.values():
                cache.close()
    _arithmetic(rows, query)


def _arithmetic(rows: np.ndarray, query: np.ndarray) -> None:
    """The support and favoured scores of the mixed row's 8 candidates, the Python
    functions against their C twins (``semcache._support``; ``timeit``, best of 5)."""
    import timeit

    from semcache import _agreement

    nearest = np.argsort(-(rows @ query))[:8]
    sims = (rows[nearest] @ query).tolist()
    keys = [f"answer {i % 200}".encode() for i in nearest.tolist()]
    vectors = rows[nearest]
    gram = (vectors @ vectors.T).tolist()
    native = _agreement._NATIVE
    if native is None:
        print("support arithmetic: the C twins are not built")
        return
    floor, weight = _agreement.SUPPORT_FLOOR, _agreement.SUPPORT_WEIGHT
    moved = _agreement._support_scores_py(sims, keys, floor, weight)
    runs = {
        "support scores, Python": lambda: _agreement._support_scores_py(sims, keys, floor, weight),
        "support scores, C": lambda: native.support_scores(sims, keys, floor, weight),
        "favoured scores, Python": lambda: _agreement._favoured_scores_py(
            moved, sims, keys, gram, floor, weight
        ),
        "favoured scores, C": lambda: native.favoured_scores(
            moved, sims, keys, gram, floor, weight
        ),
    }
    for label, run in runs.items():
        best = min(timeit.repeat(run, number=20_000, repeat=5)) / 20_000
        print(f"support arithmetic, {label}: {best * 1e6:.2f} us")
    _rivals(rows, query, nearest, sims)


def _rivals(rows: np.ndarray, query: np.ndarray, nearest: np.ndarray, sims: list[float]) -> None:
    """The rival answers of the repeated row's 8 candidates (100 prototypes): their
    standing against the veto over the same tables (``timeit``, best of 5, warm)."""
    import timeit

    from semcache._agreement import answer_digest

    with SemanticCache(index_backend="flat") as cache:
        cache.put_many(
            [f"prompt {i}" for i in range(N)],
            [f"answer {i % 100}" for i in range(N)],
            embeddings=rows,
        )
        prototypes = engine_of(cache).prototypes
        assert prototypes is not None
        keys = [answer_digest(f"answer {i % 100}") for i in nearest.tolist()]
        unit = query.astype(np.float32)
        for label, run in {
            "standing": lambda: prototypes.standing("default", unit, keys, sims),
            "veto": lambda: prototypes.declined("default", unit, keys, sims),
        }.items():
            run()  # (the tables built)
            best = min(timeit.repeat(run, number=20_000, repeat=5)) / 20_000
            print(f"rival answers, {label}: {best * 1e6:.2f} us")


if __name__ == "__main__":
    main()
