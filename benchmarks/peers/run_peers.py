"""Peers side by side: semcache, GPTCache 0.1.44 and diskcache in one process, on the
same data and the same all-MiniLM-L6-v2 embeddings.

Not part of the test suite, and GPTCache/diskcache are not dependencies of semcache:
install them into the virtual environment only to run this::

    .venv/bin/pip install "gptcache==0.1.44" diskcache sqlalchemy
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/peers/run_peers.py \\
        ../shared/data/eval/qqp.csv --embedding-cache /tmp/semcache-qqp-minilm.npz

(sqlalchemy is what GPTCache's SQLite store needs; installed beforehand, GPTCache does
not try to pip-install it at import time.)

What it measures:

- latency, at 1k and 10k stored entries (distinct QQP questions): a semantic get with a
  precomputed embedding that hits (a paraphrase) and one that misses (a random
  direction), and a put, for semcache (its defaults: SQLite store, auto index,
  float32, threshold 0.85) and GPTCache (its sqlite + faiss data manager,
  SearchDistanceEvaluation at its default threshold, ``max_size`` raised so that
  nothing is evicted; the embedding function returns the precomputed vector);
- the exact layer: semcache's exact hit and put against diskcache's get and set;
- replay quality (the protocol of ../shared/data/eval/README.md) of GPTCache at its
  default on the pairs, beside semcache's replay at the same cosine threshold.

Each latency is the median of many calls, measured round-robin (one call of each
contender in turn) so that background load hits all of them alike.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from semcache import SemanticCache
from semcache._text import normalize_text
from semcache.embedders import SentenceTransformerEmbedder
from semcache.quality import EmbeddingFile, Rule, load_pairs, replay

GPTCACHE_DEFAULT_COSINE = 0.60  # SearchDistanceEvaluation, threshold 0.8 of [0, 4]: 4-(2-2c) >= 3.2


def _median_us(times: list[float]) -> float:
    return statistics.median(times) * 1e6


def _round_robin(
    calls: dict[str, Callable[[int], object]], rounds: int, block: int = 100
) -> dict[str, float]:
    """Median microseconds per call of each contender: blocks of ``block`` calls of each
    in turn until each made ``rounds`` calls. Blocks rather than single calls: faiss's
    OpenMP threads spin for a while after each call and would slow whatever runs next."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for start in range(0, rounds, block):
        for name, fn in calls.items():
            for i in range(start, min(start + block, rounds)):
                t0 = time.perf_counter()
                fn(i)
                times[name].append(time.perf_counter() - t0)
    return {name: _median_us(t) for name, t in times.items()}


def _gptcache(folder: str, embed: Callable[..., Any]) -> Any:
    from gptcache import Cache
    from gptcache.manager import CacheBase, VectorBase, get_data_manager
    from gptcache.processor.pre import get_prompt
    from gptcache.similarity_evaluation.distance import SearchDistanceEvaluation

    manager = get_data_manager(
        CacheBase("sqlite", sql_url=f"sqlite:///{folder}/gptcache.db"),
        VectorBase("faiss", dimension=384, index_path=f"{folder}/faiss.index"),
        max_size=1_000_000,  # the default (1000) evicts almost everything at 10k
    )
    cache = Cache()
    cache.init(
        pre_embedding_func=get_prompt,
        embedding_func=embed,
        data_manager=manager,
        similarity_evaluation=SearchDistanceEvaluation(),
    )
    return cache


def latency(
    texts: list[str],
    vecs: np.ndarray,
    para: list[tuple[int, int]],
    n: int,
    rounds: int,
    qvecs: np.ndarray,
) -> dict[str, float]:
    """Get/put latency of semcache and GPTCache with ``n`` stored entries."""
    from gptcache.adapter.api import get as g_get
    from gptcache.adapter.api import put as g_put

    rng = np.random.default_rng(0)
    stored, stored_vecs = texts[:n], vecs[:n]
    lookup = dict(zip(texts, vecs, strict=True))
    hits = [(q, j) for q, j in para if j < n]  # paraphrase queries of stored texts
    miss_vecs = rng.normal(size=(rounds, 384)).astype(np.float32)
    miss_vecs /= np.linalg.norm(miss_vecs, axis=1, keepdims=True)
    extra = texts[n : n + rounds]
    extra_vecs = vecs[n : n + rounds]
    current: dict[str, np.ndarray] = {}

    def embed(text: str, **_: Any) -> np.ndarray:
        return current.get(text, lookup.get(text))  # type: ignore[return-value]

    with tempfile.TemporaryDirectory() as folder:
        sem = SemanticCache(os.path.join(folder, "semcache.sqlite"))
        sem.put_many(stored, stored, embeddings=stored_vecs)
        sem16 = SemanticCache(os.path.join(folder, "semcache16.sqlite"), vector_dtype="float16")
        sem16.put_many(stored, stored, embeddings=stored_vecs)
        gpt = _gptcache(folder, embed)
        gpt.data_manager.import_data(
            questions=stored,
            answers=stored,
            embedding_datas=list(stored_vecs),
            session_ids=[None] * n,
        )

        def sem_hit(i: int) -> object:
            q, _ = hits[i % len(hits)]
            return sem.get(f"?{q}", embedding=qvecs[q])

        def sem16_hit(i: int) -> object:
            q, _ = hits[i % len(hits)]
            return sem16.get(f"?{q}", embedding=qvecs[q])

        def gpt_hit(i: int) -> object:
            q, _ = hits[i % len(hits)]
            current[f"?{q}"] = qvecs[q]
            return g_get(f"?{q}", cache_obj=gpt)

        def sem_miss(i: int) -> object:
            return sem.get(f"miss {i}", embedding=miss_vecs[i])

        def gpt_miss(i: int) -> object:
            current[f"miss {i}"] = miss_vecs[i]
            return g_get(f"miss {i}", cache_obj=gpt)

        def sem_put(i: int) -> object:
            sem.put(extra[i], extra[i], embedding=extra_vecs[i])
            return None

        def gpt_put(i: int) -> object:
            g_put(extra[i], extra[i], cache_obj=gpt)
            return None

        # check that the hit queries hit in both and the misses miss
        served = sum(sem_hit(i) is not None for i in range(50))
        g_served = sum(gpt_hit(i) is not None for i in range(50))
        out = _round_robin(
            {
                "semcache hit": sem_hit,
                "semcache hit (float16)": sem16_hit,
                "gptcache hit": gpt_hit,
                "semcache miss": sem_miss,
                "gptcache miss": gpt_miss,
            },
            rounds,
        )
        out |= _round_robin(
            {"semcache put": sem_put, "gptcache put": gpt_put}, min(rounds, len(extra))
        )
        out["semcache hits served of 50"] = served
        out["gptcache hits served of 50"] = g_served
        sem.close()
        sem16.close()
    return out


def exact_layer(texts: list[str], rounds: int) -> dict[str, float]:
    """semcache's exact hit and put (no embedder) against diskcache's get and set."""
    import diskcache

    n = min(10_000, len(texts))
    keys = texts[:n]
    with tempfile.TemporaryDirectory() as folder:
        sem = SemanticCache(os.path.join(folder, "semcache.sqlite"))
        sem.put_many(keys, keys)
        dc = diskcache.Cache(os.path.join(folder, "diskcache"))
        for k in keys:
            dc.set(k, k)
        order = random.Random(0).choices(range(n), k=rounds)
        out = _round_robin(
            {
                "semcache exact hit": lambda i: sem.get(keys[order[i]]),
                "diskcache get": lambda i: dc.get(keys[order[i]]),
            },
            rounds,
        )
        out |= _round_robin(
            {
                "semcache put (no vector)": lambda i: sem.put(f"new {i}", "answer"),
                "diskcache set": lambda i: dc.set(f"new {i}", "answer"),
            },
            min(rounds, 2000),
        )
        dc.close()
        sem.close()
    return out


def gptcache_replay(
    path: str, embed: Callable[[list[str]], np.ndarray], sample: int | None, seed: int
) -> dict[str, Any]:
    """The replay protocol through GPTCache at its default threshold."""
    from gptcache.adapter.api import get as g_get

    pairs = load_pairs(path)
    if sample:
        pairs = pairs.sample(sample, seed=seed)
    stored, keys = pairs.stored_texts()
    queries = [p.text_b for p in pairs.pairs]
    svecs = embed(stored)
    qvecs = embed(queries)
    lookup = dict(zip(queries, qvecs, strict=True))
    stored_clusters = {pairs.cluster(k) for k in keys}
    with tempfile.TemporaryDirectory() as folder:
        gpt = _gptcache(folder, lambda text, **_: lookup[text])
        gpt.data_manager.import_data(
            questions=stored,
            answers=stored,
            embedding_datas=list(svecs),
            session_ids=[None] * len(stored),
        )
        hits = correct = should = 0
        t0 = time.perf_counter()
        times = []
        for i, q in enumerate(queries):
            should += pairs.cluster(q) in stored_clusters
            t1 = time.perf_counter()
            answer = g_get(q, cache_obj=gpt)
            times.append(time.perf_counter() - t1)
            if answer is not None:
                hits += 1
                correct += pairs.cluster(answer) == pairs.cluster(q)
            if i % 2000 == 1999:
                print(
                    f"  gptcache replay {i + 1}/{len(queries)} ({time.perf_counter() - t0:.0f} s)",
                    file=sys.stderr,
                )
    ours = replay(pairs, embed, floor=GPTCACHE_DEFAULT_COSINE).evaluate(
        Rule(GPTCACHE_DEFAULT_COSINE)
    )
    return {
        "pairs": len(pairs),
        "stored": len(stored),
        "should_hit": should,
        "hits": hits,
        "correct": correct,
        "hit_rate": correct / should,
        "precision": correct / hits,
        "false_hits_per_get": (hits - correct) / len(queries),
        "p50_get_us": _median_us(times),
        "semcache_same_threshold": {"hit_rate": ours.hit_rate, "precision": ours.precision},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pairs", help="qqp.csv")
    parser.add_argument("--embedding-cache", help="an .npz of vectors kept between runs")
    parser.add_argument("--rounds", type=int, default=2000, help="calls per latency median")
    parser.add_argument(
        "--replay-sample",
        type=int,
        default=None,
        help="pairs for GPTCache's replay (default: all; 0: skip it)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the numbers here")
    args = parser.parse_args()

    embedder = SentenceTransformerEmbedder()
    source = EmbeddingFile(embedder, args.embedding_cache) if args.embedding_cache else None

    def embed(texts: list[str]) -> np.ndarray:
        out = []
        for lo in range(0, len(texts), 512):
            chunk = list(texts[lo : lo + 512])
            out.append(source.embed(chunk) if source else embedder.embed(chunk))
        return np.concatenate(out) if out else np.zeros((0, 384), np.float32)

    pairs = load_pairs(args.pairs)
    stored, keys = pairs.stored_texts()
    pool = stored[: 10_000 + args.rounds]
    index_of = {k: i for i, k in enumerate(keys[: len(pool)])}
    para_texts, para = [], []
    for p in pairs.pairs:
        j = index_of.get(normalize_text(p.text_a))
        if p.label == 1 and j is not None and normalize_text(p.text_b) != keys[j]:
            para.append((len(para_texts), j))
            para_texts.append(p.text_b)
    vecs = embed(pool)
    qvecs = embed(para_texts)
    if source:
        source.save()
    results: dict[str, Any] = {"python": sys.version.split()[0]}
    for n in (1_000, 10_000):
        print(f"latency at {n} entries...", file=sys.stderr)
        results[f"latency_{n}"] = latency(pool, vecs, para, n, args.rounds, qvecs)
    print("exact layer vs diskcache...", file=sys.stderr)
    results["exact"] = exact_layer(stored, args.rounds * 5)
    if args.replay_sample != 0:
        print("GPTCache replay...", file=sys.stderr)
        results["gptcache_replay"] = gptcache_replay(
            args.pairs, embed, args.replay_sample, args.seed
        )
    if source:
        source.save()
    text = json.dumps(results, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
