"""Answer support on the static replay of a cluster set (docs/quality.md, "Answers that
agree, by default"): the hit rate at precision 0.95 and 0.99 of a cosine threshold, of a
cosine threshold with the shipped guards, and of ``SemanticCache``'s default (the
threshold on the answer support score, with the shipped guards yielding to the head
candidates' evidence: semcache/_guard_evidence.py), beside the same with guards that
never yield (``guards held``, the default before that rule), on the whole file and on
two halves of its clusters (every other cluster in sorted order, with every other
out-of-scope row), for several stored texts per cluster (S); then the support score's
weight, swept. With ``--stream``, the stream replay too: a plain threshold rule (no error
budget) with and without answer support, the shipped guards on, over a grid of
thresholds, and the best threshold within an error rate of 0.01 and 0.001 in hindsight.
Then the guards' cost: the default without them, and the right and wrong answers they
block at its precision-0.95 point. With ``--check``, the default family as the record
reads it against a real ``SemanticCache`` with its defaults, get by get (the whole file, S=10, five
thresholds). With ``--pairs PAIRS.csv:EMBEDDINGS.npz``, a pair file through the cache itself: every
distinct ``text_a`` stored as its own answer, every ``text_b`` asked at the shipped
threshold with and without support, and the gets whose answer differs counted (none
should: no answer repeats). The vectors come from an embedding file (the default embedder's), so a
rerun embeds nothing again.

Run:  .venv/bin/python benchmarks/support_report.py ../shared/data/eval/clinc150.csv \
          --embedding-cache /tmp/quality-emb/clinc150-minilm.npz [--stream] \
          [--pairs ../shared/data/eval/qqp.csv:/tmp/quality-emb/qqp-minilm.npz ...] [--check]
"""

from __future__ import annotations

import argparse
import csv

import numpy as np

from semcache import SemanticCache
from semcache._agreement import SUPPORT_WEIGHT
from semcache._text import normalize_text
from semcache.embedders import default_embedder
from semcache.quality._clusters import (
    OOS_PREFIX,
    ClusterSet,
    StaticResult,
    StreamPoint,
    StreamVectors,
    load_clusters,
    shipped_defaults,
    static_replay,
    stream_replay,
)
from semcache.quality._embedding_cache import EmbeddingFile
from semcache.quality._replay import Judge, Rule

PRECISIONS = (0.95, 0.99)
BUDGETS = (0.01, 0.001)
STREAM_GRID = (0.75, 0.8, 0.83, 0.85, 0.87, 0.9, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98)


def halves(clusters: ClusterSet) -> dict[str, ClusterSet]:
    """The whole set, and its halves A and B (every other cluster in sorted order)."""
    intents = sorted({c for c in clusters.clusters if not c.startswith(OOS_PREFIX)})
    out = {"all": clusters}
    for name, half in (("half A", set(intents[0::2])), ("half B", set(intents[1::2]))):
        odd = name == "half A"
        keep = [
            i
            for i, c in enumerate(clusters.clusters)
            if c in half or (c.startswith(OOS_PREFIX) and i % 2 == odd)
        ]
        out[name] = ClusterSet(
            [clusters.texts[i] for i in keep],
            [clusters.clusters[i] for i in keep],
            [clusters.splits[i] for i in keep],
        )
    return out


def heads(record: StaticResult, guards: tuple[str, ...]) -> str:
    cells = []
    for target in PRECISIONS:
        p = record.headline(target, guards)
        cells.append("never" if p is None else f"{p.hit_rate:.3f} ({p.rule.min_similarity:.3f})")
    return " / ".join(cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clusters", help="CLUSTERS.csv (text,cluster,split)")
    parser.add_argument("--embedding-cache", required=True, help="an .npz of vectors")
    parser.add_argument("--per-cluster", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--weights", type=float, nargs="+", default=[1.0, SUPPORT_WEIGHT, 4.0])
    parser.add_argument("--stream", action="store_true", help="also the stream replay")
    parser.add_argument("--pairs", nargs="*", default=[], help="PAIRS.csv:EMBEDDINGS.npz")
    parser.add_argument(
        "--check", action="store_true", help="the record against the cache itself (S=10)"
    )
    args = parser.parse_args()
    vectors = EmbeddingFile(default_embedder(), args.embedding_cache)
    threshold, guard = shipped_defaults()
    judges = {} if guard is None else {"default": guard}
    g = tuple(judges)
    print(
        "| set | S | cosine | cosine + guards | default: support + guards "
        f"| guards held | at the shipped {threshold}: cosine + guards | default |"
    )
    print("|---|---|---|---|---|---|---|---|")
    records: dict[tuple[str, int], StaticResult] = {}
    for name, part in halves(load_clusters(args.clusters)).items():
        for s in args.per_cluster:
            record = static_replay(part, vectors.embed, per_cluster=s, guards=judges)
            records[name, s] = record
            support = record.supported(yielding=judges)
            at = [r.evaluate(Rule(threshold, None, g)) for r in (record, support)]
            shipped = " | ".join(f"{p.hit_rate:.3f} at {p.precision:.3f}" for p in at)
            print(
                f"| {name} | {s} | {heads(record, ())} | {heads(record, g)} "
                f"| {heads(support, g)} | {heads(record.supported(), g)} | {shipped} |"
            )
    vectors.save()
    print("\nweight of the support score (default: support + guards)\n")
    print("| set | S | " + " | ".join(f"weight {w}" for w in args.weights) + " |")
    print("|---|---|" + "---|" * len(args.weights))
    for (name, s), record in records.items():
        row = [heads(record.supported(weight=w, yielding=judges), g) for w in args.weights]
        print(f"| {name} | {s} | " + " | ".join(row) + " |")
    if guard is not None:
        guard_cost(records, judges)
    if args.stream:
        stream(load_clusters(args.clusters), vectors)
    if args.check:
        check_against_cache(records.get(("all", 10)), load_clusters(args.clusters), vectors)
    for spec in args.pairs:
        same_on_pairs(*spec.rsplit(":", 1), threshold)


def guard_cost(records: dict[tuple[str, int], StaticResult], judges: dict[str, Judge]) -> None:
    """What the shipped guards cost the default at its precision-0.95 point: the same
    rule without them, and at that point's threshold the right and the wrong answers
    they block (yielding as shipped); and the in-scope queries no stored prompt is
    within the support floor of (none of them can be served)."""
    print("\nthe guards' cost (default at its precision-0.95 point)\n")
    print(
        "| set | S | default without guards | right answers the guards block | wrong "
        "ones | in scope, no stored prompt at or above 0.5 |"
    )
    print("|---|---|---|---|---|---|")
    g = tuple(judges)
    for (name, s), record in records.items():
        view = record.supported(yielding=judges)
        point = view.headline(0.95, g)
        if point is None:
            continue
        t = point.rule.min_similarity
        served, right = view._served(Rule(t, None, ()))
        kept, kept_right = view._served(Rule(t, None, g))
        wrong = served & ~right
        top = record.similarity[:, 0]
        alone = (~(top >= record.floor))[record.in_scope]
        blocked = int((right & ~kept_right).sum())
        print(
            f"| {name} | {s} | {heads(record.supported(), ())} | {blocked} "
            f"| {int((wrong & ~kept).sum())} | {alone.mean():.3f} |"
        )


def check_against_cache(
    record: StaticResult | None, clusters: ClusterSet, vectors: EmbeddingFile
) -> None:
    """The default family as the record reads it (support, the guards yielding to
    evidence) against a real ``SemanticCache`` with its defaults, get by get, at five
    thresholds (the whole file, S=10): the gets served differently, and those the
    evidence changed."""
    if record is None:
        print("\n--check needs the whole file at S=10 (--per-cluster 10)")
        return
    guard = shipped_defaults()[1]
    judges = {} if guard is None else {"default": guard}
    view, held = record.supported(yielding=judges), record.supported()
    stored = clusters.static_sample(10)
    texts = [clusters.texts[i] for i in stored]
    asked = [clusters.texts[i] for i in clusters.static_queries()]
    answers = [clusters.clusters[i] for i in clusters.static_queries()]
    print()
    for threshold in (0.6, 0.7, 0.8, 0.85, 0.9):
        rule = Rule(threshold, None, tuple(judges))
        served, right = view._served(rule)
        with SemanticCache(similarity_threshold=threshold, index_backend="flat") as cache:
            cache.put_many(
                texts, [clusters.clusters[i] for i in stored], embeddings=vectors.embed(texts)
            )
            hits = [
                cache.get(q, embedding=v) for q, v in zip(asked, vectors.embed(asked), strict=True)
            ]
        got = np.array([h is not None for h in hits])
        ok = np.array(
            [h is not None and h.response == a for h, a in zip(hits, answers, strict=True)]
        )
        print(
            f"check at {threshold}: {int((got != served).sum() + (ok != right).sum())} of "
            f"{len(asked)} gets served otherwise by the cache; the evidence changed "
            f"{int((served != held._served(rule)[0]).sum())}; {int(got.sum())} served"
        )


def same_on_pairs(path: str, embeddings: str, threshold: float) -> None:
    """A pair file through the cache with and without support: the gets that differ."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["text_a"].strip() and r["text_b"].strip()]
    vectors = EmbeddingFile(default_embedder(), embeddings)
    stored = list(dict.fromkeys(normalize_text(r["text_a"]) for r in rows))
    stored_vectors = vectors.embed(stored)
    asked = [r["text_b"] for r in rows]
    asked_vectors = vectors.embed(asked)
    answers: dict[bool, list[object]] = {}
    for support in (False, True):
        with SemanticCache(
            similarity_threshold=threshold, index_backend="flat", answer_support=support
        ) as cache:
            cache.put_many(stored, stored, embeddings=stored_vectors)
            hits = [cache.get(q, embedding=asked_vectors[i]) for i, q in enumerate(asked)]
        answers[support] = [None if h is None else h.response for h in hits]
    differ = sum(a != b for a, b in zip(answers[False], answers[True], strict=True))
    served = sum(a is not None for a in answers[True])
    print(
        f"\n{path}: {len(asked)} gets over {len(stored)} stored texts at {threshold}: "
        f"{served} hits; {differ} gets answered differently with support"
    )


def stream(clusters: ClusterSet, vectors: EmbeddingFile) -> None:
    """The threshold rule on the stream, with and without answer support."""
    data = StreamVectors(clusters, vectors.embed)
    print("\nstream, threshold rule with the shipped guards (no error budget)\n")
    print("| threshold | without support: hit rate / error rate | with support |")
    print("|---|---|---|")
    runs: dict[bool, list[StreamPoint]] = {False: [], True: []}
    for t in STREAM_GRID:
        row = []
        for support in (False, True):

            def make(t: float = t, support: bool = support) -> SemanticCache:
                return SemanticCache(
                    similarity_threshold=t, index_backend="flat", answer_support=support
                )

            p = stream_replay(data, make, label=f"{t} {support}")
            runs[support].append(p)
            row.append(f"{p.hit_rate:.3f} / {p.error_rate:.4f}")
        print(f"| {t} | " + " | ".join(row) + " |")
    for budget in BUDGETS:
        cells = []
        for support in (False, True):
            ok = [p for p in runs[support] if p.error_rate <= budget]
            best = max(ok, key=lambda p: p.hit_rate, default=None)
            t = None if best is None else best.min_similarity
            cells.append("none" if best is None else f"{best.hit_rate:.3f} (t {t})")
        print(f"| best within {budget} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
