"""What other rules over the same vectors reach on a cluster set's static replay
(docs/quality.md, "What the static aim at 0.95 would need"): classifiers a cache could
run instead of the default's support score, no guards, hit rate at precision >= 0.95 /
>= 0.99 of the in-scope queries, each query served its rule's answer at the rule's
confidence (a threshold swept on it, as the headline sweeps the cache's).

Rows (every answer's prototype is the normalized sum of its stored texts' vectors):

- ``nearest text``: the nearest stored text's answer at its cosine (the ``cosine``
  family);
- ``nearest prototype``: the nearest prototype's answer at its cosine;
- ``prototype margin``: the same answer at its lead over the next prototype;
- ``prototypes, softmax T``: the nearest prototype's answer at its probability in a
  softmax over every prototype at temperature T (0.05: the embedder's training
  temperature);
- ``kernel, T``: each answer weighed by the sum of ``exp(cos / T)`` over its stored
  texts (a soft nearest neighbour);
- ``centered``: the softmax over prototypes with every vector less the stored texts'
  mean (the embedding space's common direction removed);
- ``all but the top D``: the same, and each vector's components along the stored
  texts' D first principal directions removed too (Mu and Viswanath's post-processing
  of word vectors), for the nearest text and the prototypes' softmax; ``whitened``:
  centred, then whitened by the stored texts' covariance shrunk towards its mean
  eigenvalue (``C + 0.3 mean(eig) I``), the same two rules;
- ``softmax regression, s / L2``: a multinomial logistic regression of the answer on
  the stored texts' vectors (each times ``s``; L2-penalized; 300 steps of full-batch
  gradient descent from zero), the answer of highest probability at that probability:
  a discriminative model of the answers learnt from the stored prompts alone (no
  outcome of a query), where the prototypes are their centroids;
- ``words x prototypes, T``: the prototypes' softmax times a softmax (temperature T)
  over the cosines of TF-IDF word vectors (light stems) of the query and each answer's
  stored texts: a second, lexical opinion.

Also: the share of in-scope queries with a stored text at or above 0.5 (the support
floor) and how often the nearest text or prototype has the right answer; and first,
where the default (``semcache eval``'s ``default`` family: the support score, the
shipped guards) leaves the in-scope queries at its precision-0.95 point: served right,
served wrong, and why the others were not served (those the guards blocked, by what
tells them from the nearest candidate that reaches the threshold).

Run:  PYTHONPATH=benchmarks .venv/bin/python benchmarks/static_ceiling.py \\
          ../shared/data/eval/clinc150.csv \\
          --embedding-cache /tmp/quality-emb/clinc150-minilm.npz [--per-cluster 10]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from typing import Any

import numpy as np
from favoured_variants import _headlines, static_vectors

from semcache._agreement import SUPPORT_FLOOR, SUPPORT_K
from semcache._guards import negation_differs, numbers_differ
from semcache._textinfo import stem
from semcache.embedders import default_embedder
from semcache.quality._clusters import ClusterSet, load_clusters, shipped_defaults, static_replay
from semcache.quality._embedding_cache import EmbeddingFile
from semcache.quality._replay import Rule

#: The differences the default guards look for, by name.
DIFFERS = (("numbers differ", numbers_differ), ("a negation differs", negation_differs))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _softmax(x: np.ndarray, t: float) -> np.ndarray:
    z = x / t
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _softmax_regression(
    x: np.ndarray, y: np.ndarray, k: int, scale: float, l2: float, steps: int = 300
) -> tuple[np.ndarray, np.ndarray]:
    """The weights and biases of a multinomial logistic regression of the classes ``y``
    (0 to ``k - 1``) on the rows of ``x`` times ``scale``, L2-penalized by ``l2``:
    ``steps`` of full-batch gradient descent (rate 0.5) from zero."""
    xs = x * scale
    w = np.zeros((x.shape[1], k))
    b = np.zeros(k)
    onehot = np.eye(k)[y]
    for _ in range(steps):
        z = xs @ w + b
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        g = (p - onehot) / len(x)
        w -= 0.5 * (xs.T @ g + l2 * w)
        b -= 0.5 * g.sum(axis=0)
    return w, b


def _words(text: str) -> list[str]:
    return [stem(w) for w in re.findall(r"[a-z0-9']+", text.lower())]


def _tfidf(stored: list[list[str]], asked: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
    """TF-IDF vectors (unit) of the stored and asked texts, IDF from the stored."""
    vocab: dict[str, int] = {}
    for words in stored:
        for w in words:
            vocab.setdefault(w, len(vocab))
    df = np.zeros(len(vocab))
    for words in stored:
        for w in set(words):
            df[vocab[w]] += 1
    idf = np.log((1 + len(stored)) / (1 + df)) + 1

    def vec(words: list[str]) -> np.ndarray:
        v = np.zeros(len(vocab))
        for w in words:
            if w in vocab:
                v[vocab[w]] += 1
        return v * idf

    return (
        _unit(np.array([vec(w) for w in stored])),
        _unit(np.array([vec(w) for w in asked])),
    )


def _default_point(clusters: ClusterSet, embed: Any, per: int) -> None:
    """Print where the default's precision-0.95 point leaves the in-scope queries."""
    _, guard = shipped_defaults()
    guards = {"default": guard} if guard is not None else {}
    raw = static_replay(clusters, embed, per_cluster=per, floor=SUPPORT_FLOOR, guards=guards)
    rec = raw.supported(yielding=guards or None)
    names = tuple(guards)
    point = rec.headline(0.95, names)
    if point is None:
        print("the default never reaches precision 0.95\n")
        return
    t = point.rule.min_similarity
    served, right = rec._served(Rule(t, None, names))
    scope = rec.in_scope
    why: Counter[str] = Counter()
    for q in np.flatnonzero(scope & ~served):
        head = [j for j in range(min(SUPPORT_K, raw.similarity.shape[1]))
                if raw.similarity[q, j] >= SUPPORT_FLOOR]  # fmt: skip
        reaches = rec.similarity[q] >= t
        if not head:
            why["no stored text at or above the floor"] += 1
        elif not raw.correct[q, head].any():
            why["the right answer not among the candidates"] += 1
        elif reaches.any() and not (reaches & rec.guards["default"][q]).any():
            # what tells the query from the nearest candidate that reaches the threshold
            assert raw.texts is not None
            text, prompts = raw.texts[q]
            nearest = prompts[int(np.flatnonzero(reaches)[0])]
            told = [n for n, f in DIFFERS if f(text, nearest)] or ["neither"]
            why[f"blocked by the guards ({' and '.join(told)})"] += 1
        else:
            why["declined, or scored below the threshold"] += 1
    wrong = served & ~right
    print(
        f"the default at precision 0.95 (threshold {t:.3f}): hit rate {point.hit_rate:.3f}; "
        f"{int(right.sum())} served right, {int(wrong.sum())} wrong "
        f"({int((wrong & ~scope).sum())} out of scope, {int((wrong & scope).sum())} in scope); "
        "in scope, not served: "
        + ", ".join(f"{n} {reason}" for reason, n in why.most_common())
        + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clusters")
    parser.add_argument("--embedding-cache", required=True)
    parser.add_argument("--per-cluster", type=int, default=10)
    args = parser.parse_args()
    clusters = load_clusters(args.clusters)
    embed = EmbeddingFile(default_embedder(), args.embedding_cache).embed
    _default_point(clusters, embed, args.per_cluster)
    st = static_vectors(clusters, args.per_cluster, embed)
    asked = np.array(st.asked)
    in_scope = np.array([not a.startswith("oos:") for a in st.asked])
    n_in = int(in_scope.sum())
    answers = np.array(st.answers)
    top = st.sims.max(axis=1)
    nearest = answers[st.sims.argmax(axis=1)]
    proto = st.labels[st.cosine.argmax(axis=1)]
    ordered = np.sort(st.cosine, axis=1)
    rows: list[tuple[str, np.ndarray, np.ndarray]] = [
        ("nearest text", top, nearest),
        ("nearest prototype", ordered[:, -1], proto),
        ("prototype margin", ordered[:, -1] - ordered[:, -2], proto),
    ]
    for t in (0.03, 0.05, 0.07, 0.1):
        p = _softmax(st.cosine, t)
        rows.append((f"prototypes, softmax {t}", p.max(axis=1), st.labels[p.argmax(axis=1)]))
    member = np.zeros((len(st.answers), len(st.labels)))
    member[np.arange(len(st.answers)), st.which] = 1.0
    for t in (0.03, 0.05, 0.07):
        mass = np.exp((st.sims - st.sims.max(axis=1, keepdims=True)) / t) @ member
        p = mass / mass.sum(axis=1, keepdims=True)
        rows.append((f"kernel, {t}", p.max(axis=1), st.labels[p.argmax(axis=1)]))
    mean = st.vs.mean(axis=0)
    vs_c, vq_c = _unit(st.vs - mean), _unit(st.vq - mean)
    sums = np.zeros((len(st.labels), vs_c.shape[1]))
    np.add.at(sums, st.which, vs_c)
    centred = vq_c @ _unit(sums).T
    for t in (0.05, 0.07):
        p = _softmax(centred, t)
        rows.append((f"centered, softmax {t}", p.max(axis=1), st.labels[p.argmax(axis=1)]))
    _, _, axes = np.linalg.svd(st.vs - mean, full_matrices=False)
    eig, basis = np.linalg.eigh(np.cov(st.vs - mean, rowvar=False, bias=True))
    whiten = basis @ np.diag(1.0 / np.sqrt(eig + 0.3 * eig.mean())) @ basis.T
    for name, post in (
        *(
            (f"all but the top {d}", lambda v, p=axes[:d]: (v - mean) - (v - mean) @ p.T @ p)
            for d in (1, 3, 8)
        ),
        ("whitened", lambda v: (v - mean) @ whiten),
    ):
        ps, pq = _unit(post(st.vs)), _unit(post(st.vq))
        sims = pq @ ps.T
        rows.append((f"{name}, nearest text", sims.max(axis=1), answers[sims.argmax(axis=1)]))
        sums = np.zeros((len(st.labels), ps.shape[1]))
        np.add.at(sums, st.which, ps)
        for t in (0.05, 0.07):
            p = _softmax(pq @ _unit(sums).T, t)
            rows.append((f"{name}, softmax {t}", p.max(axis=1), st.labels[p.argmax(axis=1)]))
    for scale, l2 in ((10.0, 1e-3), (10.0, 1e-2), (20.0, 1e-2)):
        w, b = _softmax_regression(st.vs, np.asarray(st.which), len(st.labels), scale, l2)
        p = _softmax(st.vq * scale @ w + b, 1.0)
        name = f"softmax regression, {scale:g} / {l2:g}"
        rows.append((name, p.max(axis=1), st.labels[p.argmax(axis=1)]))
    stored_rows = clusters.static_sample(args.per_cluster)
    query_rows = clusters.static_queries()
    ws, wq = _tfidf(
        [_words(clusters.texts[i]) for i in stored_rows],
        [_words(clusters.texts[i]) for i in query_rows],
    )
    lexical = np.zeros((len(st.labels), ws.shape[1]))
    np.add.at(lexical, st.which, ws)
    lex = wq @ _unit(lexical).T
    pe = _softmax(st.cosine, 0.05)
    for t in (0.1, 0.2):
        p = pe * _softmax(lex, t)
        p /= p.sum(axis=1, keepdims=True)
        rows.append((f"words x prototypes, {t}", p.max(axis=1), st.labels[p.argmax(axis=1)]))
    print(
        f"in-scope queries: {n_in}; with a stored text >= 0.5: "
        f"{(top[in_scope] >= 0.5).mean():.3f}; "
        f"nearest text right: {(nearest == asked)[in_scope].mean():.3f}; nearest prototype "
        f"right: {(proto == asked)[in_scope].mean():.3f}\n"
    )
    print("| rule | hit rate at precision >= 0.95 / >= 0.99 |")
    print("|---|---|")
    for name, confidence, answer in rows:
        print(f"| {name} | {_headlines(confidence, answer == asked, n_in)} |")


if __name__ == "__main__":
    main()
