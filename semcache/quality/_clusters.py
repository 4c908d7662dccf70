"""The replays on a cluster set (``../shared/data/eval/README.md``, "Replays on a
cluster set") run through the public API.

A cluster set is a CSV ``text,cluster,split``: every text belongs to exactly one cluster
(an intent), so every pair of texts is labelled. The answer stored for a text is its
cluster: a hit is correct when the response it serves equals the query's cluster.
Out-of-scope rows (cluster ``oos:N``) are each their own cluster and are never stored.

- **static** (:func:`static_replay`): put the ``train`` texts, at most S per cluster
  (drawn with ``numpy.random.default_rng(0)`` over the clusters in sorted order,
  ``rng.choice(members, min(S, n), replace=False)``), then get every ``test`` and
  ``oos_test`` text. As :func:`~semcache.quality.replay` does, one recording pass notes
  every candidate the cache examines (its similarity, whether it is correct, each guard's
  verdict) and rejects it, so any rule's hits follow from the record; a timing pass then
  serves a sample with each rule for real and checks it against the record.
- **stream** (:func:`stream_replay`): every text in the order
  ``numpy.random.default_rng(0).permutation(n)``; get it, and on a miss put it with its
  cluster (the "LLM"'s answer). What is stored depends on past hits, so each rule is a
  run of its own, on a fresh in-memory cache with a flat (exact) index and precomputed
  vectors.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import Any, TextIO, cast

import numpy as np
import numpy.typing as npt

from .._agreement import (
    SUPPORT_FLOOR,
    SUPPORT_K,
    SUPPORT_WEIGHT,
    answer_digest,
    answer_key,
    favoured_scores,
    same_answer,
    standing_scores,
    support_scores,
)
from .._answer_model import combined
from .._cache import SemanticCache, engine_of
from .._errors import InvalidInputError
from .._guard_evidence import guard_parts, overruled, rejecting
from .._progress import ProgressCallback, as_progress
from .._prototypes import Prototypes
from .._text import normalize_text
from .._types import Hit
from ._model_record import ModelRecord, model_record
from ._replay import Embed, QualityPoint, ReplayResult, Rule, embed_all, timing_pass

__all__ = [
    "ClusterSet",
    "StaticResult",
    "StreamPoint",
    "file_kind",
    "load_clusters",
    "shipped_defaults",
    "shipped_support",
    "static_replay",
    "stream_replay",
]

Judge = Callable[[str, Hit], bool]
_PAIR_COLUMNS = frozenset({"text_a", "text_b", "label"})
_CLUSTER_COLUMNS = frozenset({"text", "cluster", "split"})
#: The prefix of an out-of-scope cluster: one text each, never stored.
OOS_PREFIX = "oos:"
#: The static record's pseudo-guard: the candidate's nearest other candidate (among
#: those recorded) has the same answer, or there is none (``_agreement``: not split).
#: Not timed (it reads the record, not one candidate).
AGREE = "agree"


def shipped_defaults() -> tuple[float, Judge | None]:
    """What ``SemanticCache()`` serves with, nothing tuned: its default similarity
    threshold and the guards it applies by default (None: none)."""
    probe = SemanticCache()
    try:
        return probe.similarity_threshold, engine_of(probe).guards
    finally:
        probe.close()


def shipped_support() -> bool:
    """Whether ``SemanticCache()`` scores candidates by answer support by default."""
    probe = SemanticCache()
    try:
        return engine_of(probe).options.answer_support
    finally:
        probe.close()


def file_kind(path: str | Path) -> str:
    """``"pairs"`` (``text_a,text_b,label``) or ``"clusters"`` (``text,cluster,split``),
    from the CSV's header.

    Raises:
        FileNotFoundError: no such file.
        InvalidInputError: the header is neither.
    """
    with open(path, newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh), [])
    columns = {c.strip() for c in header}
    if columns >= _PAIR_COLUMNS:
        return "pairs"
    if columns >= _CLUSTER_COLUMNS:
        return "clusters"
    raise InvalidInputError(
        f"{path}: the header {header} is neither a pair file (text_a,text_b,label) nor a "
        "cluster file (text,cluster,split)"
    )


@dataclass(frozen=True)
class ClusterSet:
    """The rows of a cluster file, texts normalized (NFKC, casefold, collapsed
    whitespace) as the protocol says.

    Attributes:
        texts: per row, the normalized text.
        clusters: per row, its cluster.
        splits: per row, its split (``train``, ``test``, ``oos_test`` ...).
    """

    texts: list[str]
    clusters: list[str]
    splits: list[str]

    def __len__(self) -> int:
        return len(self.texts)

    @staticmethod
    def in_scope(cluster: str) -> bool:
        """Whether a cluster is one that stored texts can answer (not ``oos:``)."""
        return not cluster.startswith(OOS_PREFIX)

    def static_sample(self, per_cluster: int) -> list[int]:
        """The rows the static replay puts: at most ``per_cluster`` ``train`` rows of
        each in-scope cluster, drawn with ``numpy.random.default_rng(0)`` over the
        clusters in sorted order (``rng.choice(members, min(S, n), replace=False)``,
        members in file order), returned in that order.

        Raises:
            InvalidInputError: ``per_cluster`` < 1.
        """
        if per_cluster < 1:
            raise InvalidInputError(f"per_cluster must be >= 1, got {per_cluster}")
        members: dict[str, list[int]] = {}
        for i, (cluster, split) in enumerate(zip(self.clusters, self.splits, strict=True)):
            if split == "train" and self.in_scope(cluster):
                members.setdefault(cluster, []).append(i)
        rng = np.random.default_rng(0)
        out: list[int] = []
        for cluster in sorted(members):
            rows = members[cluster]
            picked = rng.choice(rows, min(per_cluster, len(rows)), replace=False)
            out.extend(int(r) for r in picked)
        return out

    def static_queries(self) -> list[int]:
        """The rows the static replay gets: every ``test`` and ``oos_test`` row, in file
        order."""
        return [i for i, s in enumerate(self.splits) if s in ("test", "oos_test")]

    def stream_order(self) -> list[int]:
        """Every row in the order ``numpy.random.default_rng(0).permutation(n)``."""
        return [int(i) for i in np.random.default_rng(0).permutation(len(self.texts))]


def load_clusters(path: str | Path) -> ClusterSet:
    """Read a cluster file: a CSV ``text,cluster,split`` (a header row first).

    Raises:
        FileNotFoundError: no such file.
        InvalidInputError: a missing column, or an empty cluster.
    """
    texts: list[str] = []
    clusters: list[str] = []
    splits: list[str] = []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = _CLUSTER_COLUMNS - set(reader.fieldnames or ())
        if missing:
            raise InvalidInputError(f"{path}: missing column(s) {sorted(missing)}")
        for line, row in enumerate(reader, start=2):
            cluster = (row["cluster"] or "").strip()
            if not cluster:
                raise InvalidInputError(f"{path}:{line}: empty cluster")
            texts.append(normalize_text(row["text"] or ""))
            clusters.append(cluster)
            splits.append((row["split"] or "").strip())
    return ClusterSet(texts, clusters, splits)


def _vectors(
    clusters: ClusterSet, rows: Sequence[int], embed: Embed, report: ProgressCallback | None
) -> dict[str, npt.NDArray[np.float32]]:
    """The vector of each distinct text of ``rows``, embedded once."""
    distinct = list(dict.fromkeys(clusters.texts[i] for i in rows))
    vectors = embed_all(embed, distinct, report)
    return {t: vectors[k] for k, t in enumerate(distinct)}


class _Recorder:
    """The recording cache's ``confidence_fn``: notes and rejects every candidate; when
    serving (the timing pass), accepts."""

    def __init__(self, guards: Mapping[str, Judge], max_candidates: int) -> None:
        self.guards = dict(guards)
        self.max_candidates = max_candidates
        self.cluster = ""
        self.rows: list[tuple[float, bool, tuple[bool, ...], object]] = []
        #: The entry id of each row's candidate.
        self.ids: list[int] = []
        #: Each row's candidate's prompt.
        self.prompts: list[str] = []
        self.truncated = False
        self.serving = False

    def __call__(self, query: str, hit: Hit) -> float:
        if self.serving:
            return 1.0
        if len(self.rows) >= self.max_candidates:
            self.truncated = True
            return 1.0  # stop the search here
        verdicts = tuple(bool(g(query, hit)) for g in self.guards.values())
        self.rows.append((hit.similarity, hit.response == self.cluster, verdicts, hit.response))
        self.ids.append(cast(int, hit.entry_id))  # a cache's hit names its entry
        self.prompts.append(hit.query)
        return -math.inf  # rejected: the cache goes on to the next candidate


class _Validator:
    def __init__(self) -> None:
        self.active: tuple[Judge, ...] = ()

    def __call__(self, query: str, hit: Hit) -> bool:
        return all(g(query, hit) for g in self.active)


class StaticResult(ReplayResult):
    """The record of one static replay: a :class:`ReplayResult` whose queries should hit
    when they are in scope, whose exact hits are judged by cluster
    (``exact_correct``), and which records no verifier scores.

    Use :meth:`curve` and :meth:`headline` with a tuple of guard names (the rule's other
    knob is the similarity threshold, swept from the floor).
    """

    #: Per query, the answer of each candidate recorded (set by :func:`static_replay`;
    #: :meth:`supported` reads it).
    answers: list[list[object]] | None = None
    #: Per query, the dot products of the stored vectors of its first ``K`` candidates
    #: recorded (``K`` = :data:`~semcache._agreement.SUPPORT_K`), ``(queries, K, K)``
    #: float32 as the cache computes them for an answer's prototype (its vectors read
    #: back at its dtype, as float32); NaN past the candidates recorded (set by
    #: :func:`static_replay`; :meth:`supported` reads it).
    head_dots: npt.NDArray[np.float32] | None = None
    #: Per query, each candidate's answer's standing over its rivals recorded
    #: (:meth:`~semcache._prototypes.Prototypes.standing`: 1 with none, 0 declined; set
    #: by :func:`static_replay`; :meth:`supported` reads it; None: not recorded).
    standing: npt.NDArray[np.float64] | None = None
    #: Per query, its text and each candidate's prompt (set by :func:`static_replay`;
    #: :meth:`supported` reads them for the guards that yield to evidence).
    texts: list[tuple[str, list[str]]] | None = None
    #: The answer model's record (:class:`ModelRecord`; set by :func:`static_replay`;
    #: :meth:`supported` reads it; None: not recorded, or no model).
    model: ModelRecord | None = None

    @property
    def in_scope(self) -> npt.NDArray[np.bool_]:
        """Per query, whether it should hit (its cluster is not out of scope)."""
        return self.should_hit

    def _served(self, rule: Rule) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        if rule.min_score is not None:
            raise ValueError("a cluster replay records no verifier scores")
        return super()._served(rule)

    def curve(  # type: ignore[override]
        self, guards: tuple[str, ...] = (), *, step: float = 0.001
    ) -> list[QualityPoint]:
        """The points of the similarity thresholds on a grid of ``step`` from the floor
        to 1, with ``guards``.

        Raises:
            ValueError: ``step`` is not in (0, 1]; as :meth:`evaluate`.
        """
        return super().curve(rule=Rule(self.floor, None, guards), step=step)

    def headline(  # type: ignore[override]
        self, target: float, guards: tuple[str, ...] = ()
    ) -> QualityPoint | None:
        """The point at the lowest threshold (0.001 grid) whose precision is at least
        ``target``, or None if none reaches it."""
        points: list[QualityPoint] = super().curve(rule=Rule(self.floor, None, guards))
        return next((p for p in points if p.precision >= target), None)

    def supported(
        self,
        *,
        k: int = SUPPORT_K,
        floor: float = SUPPORT_FLOOR,
        weight: float = SUPPORT_WEIGHT,
        yielding: Mapping[str, Judge] | None = None,
    ) -> StaticResult:
        """The record as ``SemanticCache``'s answer support sees it
        (``answer_support=True``, no error budget): each query's first ``k`` candidates
        (those at or above ``floor``) scored by
        :func:`~semcache._agreement.support_scores` (two or more; one alone: its
        similarity), then, where an answer repeats among them,
        :func:`~semcache._agreement.favoured_scores` (the other answers' candidates
        score -1, never served; the favoured one's are raised by its lead when it
        repeats); then moved by their answers' standing over their rivals
        (``standing``, recorded from the cache's prototypes:
        :func:`~semcache._agreement.standing_scores`; one declined scores -1 too).
        Tried highest first, then the candidates beyond them by similarity, where no
        head candidate was declined by its score
        (at thresholds up to the lowest head score: none once one scores -1). The
        result's ``similarity`` is that score, so its curves and headlines sweep the
        threshold on it as the cache applies it. ``yielding``: the recorded guards
        (name -> the guard recorded) whose built-in parts yield to the head candidates'
        evidence as the cache's do (:mod:`semcache._guard_evidence`): a head candidate
        they rejected passes where :func:`~semcache._guard_evidence.overruled` says so.

        Raises:
            ValueError: the record keeps no answers or no candidates' dot products (not
                made by :func:`static_replay`), or fewer than ``k`` candidates' dot
                products; ``yielding`` names a guard not recorded, or the record keeps
                no texts.
        """
        answers, dots = self.answers, self.head_dots
        if answers is None:
            raise ValueError("this record keeps no answers")
        if dots is None:
            raise ValueError("this record keeps no dot products of its candidates' vectors")
        if dots.shape[1] < k:
            raise ValueError(
                f"this record keeps the dot products of {dots.shape[1]} candidates, not {k}"
            )
        verdicts = self._yielded(yielding or {}, k, floor, dots)
        sim = self.similarity.copy()
        correct = self.correct
        score = self.score
        model = self.model
        width = sim.shape[1]
        if model is not None:  # the widened candidate: one more column, last
            sim = np.concatenate([sim, model.wide_similarity[:, None]], axis=1)
            correct = np.concatenate([correct, model.wide_correct[:, None]], axis=1)
            score = np.concatenate([score, np.full((len(sim), 1), np.nan)], axis=1)
            verdicts = {
                g: np.concatenate([v, model.wide_guards[g][:, None]], axis=1)
                for g, v in verdicts.items()
            }
        standing = self.standing
        order = np.tile(np.arange(sim.shape[1]), (sim.shape[0], 1))
        for i, row in enumerate(answers):
            head = [j for j in range(min(k, len(row))) if sim[i, j] >= floor]
            vetoed = standing is not None and any(standing[i, j] < 1.0 for j in head)
            known = [] if model is None else [j for j in head if not np.isnan(model.p[i, j])]
            wide = model is not None and model.wide_similarity[i] > -np.inf
            if len(head) < 2 and not vetoed and not known and not wide:
                continue  # (one alone: its similarity)
            near = [float(sim[i, j]) for j in head]
            keys = [answer_key(row[j]) for j in head]
            scores = near
            if len(head) >= 2:
                scores = support_scores(near, keys, floor=floor, weight=weight)
                if len(set(keys)) < len(keys):  # an answer repeats: the favoured one decides
                    scores = favoured_scores(
                        scores, near, keys, _gram(dots[i], head), floor=floor, weight=weight
                    )
            if vetoed:  # the rival answers' prototypes
                assert standing is not None
                scores = standing_scores(scores, [float(standing[i, j]) for j in head], floor=floor)
            # tried in the order of these scores, the answer model's raised ones too
            ranked = sorted(range(len(head)), key=lambda r: (-scores[r], -sim[i, head[r]]))
            if model is not None:  # the answer model (semcache._get._modelled)
                scores = list(scores)
                for j in known:
                    scores[j] = max(scores[j], combined(scores[j], float(model.p[i, j])))
            # beyond the head the cache serves by cosine only if no head candidate was
            # declined by its score, i.e. at thresholds up to the lowest head score
            lowest = min(scores) if scores else -np.inf
            for j in range(k, width):
                sim[i, j] = min(sim[i, j], lowest)
            for r in range(len(head)):
                sim[i, head[r]] = scores[r]
            columns = [head[r] for r in ranked]
            if wide:
                assert model is not None
                sim[i, width] = combined(float(model.wide_similarity[i]), float(model.top_p[i]))
                columns.append(width)  # (tried after every candidate)
            order[i, : len(columns)] = columns
            order[i, len(columns) :] = [j for j in range(sim.shape[1]) if j not in columns]
        rows = np.arange(sim.shape[0])[:, None]
        view = StaticResult(
            floor=self.floor,
            exact=self.exact,
            should_hit=self.should_hit,
            similarity=sim[rows, order],
            correct=correct[rows, order],
            score=score[rows, order],
            guards={g: v[rows, order] for g, v in verdicts.items()},
            truncated=self.truncated,
            stored=self.stored,
            exact_correct=self.exact_correct,
        )
        return view

    def _yielded(
        self,
        yielding: Mapping[str, Judge],
        k: int,
        floor: float,
        dots: npt.NDArray[np.float32],
    ) -> dict[str, npt.NDArray[np.bool_]]:
        """The guards' verdicts, those of ``yielding`` after the head's evidence
        (:meth:`supported`)."""
        verdicts = dict(self.guards)
        if not yielding:
            return verdicts
        if self.texts is None or self.answers is None:
            raise ValueError("this record keeps no texts")
        for name, guard in yielding.items():
            if name not in verdicts:
                raise ValueError(f"no guard {name!r} was recorded")
            passed = verdicts[name].copy()
            split = guard_parts(guard) or ()
            for i, row in enumerate(self.answers):
                head = [j for j in range(min(k, len(row))) if self.similarity[i, j] >= floor]
                if len(head) < 2 or all(passed[i, j] for j in head):
                    continue
                query, prompts = self.texts[i]
                head_texts = [prompts[j] for j in head]
                keys = [answer_key(row[j]) for j in head]
                gram = _gram(dots[i], head)
                for p, j in enumerate(head):
                    if passed[i, j]:
                        continue
                    hit = Hit(
                        response=str(row[j]),
                        similarity=float(self.similarity[i, j]),
                        layer="semantic",
                        query=prompts[j],
                        namespace="default",
                        metadata=None,
                        created_at=0.0,
                        expires_at=None,
                        confidence=None,
                    )
                    checks = rejecting(split, query, hit)
                    if checks:
                        passed[i, j] = overruled(checks, p, head_texts, keys, gram, hit.similarity)
            verdicts[name] = passed
        return verdicts


def _gram(dots: npt.NDArray[np.float32], head: list[int]) -> list[list[float]]:
    """The dot products of the candidates at the positions ``head`` (among those
    recorded) with each other, as :func:`~semcache._agreement.favoured_scores` takes
    them (the cache's are float32 as well)."""
    return cast(list[list[float]], dots[np.ix_(head, head)].tolist())


def _head_dots(
    cache: SemanticCache, ids: Sequence[Sequence[int]], k: int
) -> npt.NDArray[np.float32]:
    """Per query, the dot products of the stored vectors of its first ``k`` candidates
    (entry ``ids``), read back from the cache's store at its dtype as the cache reads
    them for an answer's prototype; NaN past the candidates."""
    eng = engine_of(cache)
    dtype = eng.indexes.dtype
    wanted = sorted({i for row in ids for i in row[:k]})
    vectors: dict[int, npt.NDArray[np.float32]] = {}
    for i, entry in eng.store.get_by_ids(wanted, vectors=True).items():
        if entry.vector is None:  # the replay puts every text with its vector
            raise RuntimeError(f"entry {i} was stored without its vector")
        vectors[i] = np.frombuffer(entry.vector, dtype=dtype).astype(np.float32)
    out = np.full((len(ids), k, k), np.nan, dtype=np.float32)
    for q, row in enumerate(ids):
        if row:
            v = np.stack([vectors[i] for i in row[:k]])
            out[q, : len(v), : len(v)] = v @ v.T
    return out


def _prototype_standing(
    cache: SemanticCache,
    records: Sequence[Sequence[tuple[float, bool, tuple[bool, ...], object]]],
    queries: Sequence[npt.NDArray[np.float32]],
) -> npt.NDArray[np.float64]:
    """Per query, each of its candidates recorded: its answer's standing over its
    rivals (the prototypes of the cache's store, as ``answer_support`` keeps them:
    :meth:`~semcache._prototypes.Prototypes.standing`); it depends on the candidate's
    own answer and similarity only."""
    eng = engine_of(cache)
    prototypes = Prototypes(eng.store, eng.indexes.decode, answer_digest, eng.clock)
    width = max(1, max(len(r) for r in records))
    out = np.ones((len(records), width), dtype=np.float64)
    for q, (rows, vector) in enumerate(zip(records, queries, strict=True)):
        if not rows:
            continue
        keys = [answer_digest(cast(str, row[3])) for row in rows]
        unit = eng.unit_rows(vector, 1, "embedding")[0]
        standing = prototypes.standing("default", unit, keys, [row[0] for row in rows])
        if standing is None:
            raise RuntimeError("the replay's cache is too large for the prototype veto")
        out[q, : len(rows)] = standing
    return out


def static_replay(
    clusters: ClusterSet,
    embed: Embed,
    *,
    per_cluster: int = 10,
    floor: float = 0.5,
    guards: Mapping[str, Judge] | None = None,
    max_candidates: int = 32,
    progress: ProgressCallback | TextIO | None = None,
) -> StaticResult:
    """The static replay, recording every candidate down to ``floor``.

    Args:
        clusters: the cluster set.
        embed: ``embed(texts) -> (n, dim)`` vectors, called in batches.
        per_cluster: S, the ``train`` texts stored per cluster at most.
        floor: the lowest similarity threshold any rule will use.
        guards: name -> ``validator(query, hit) -> bool``, each recorded per candidate.
        max_candidates: candidates recorded per query at most.
        progress: a :data:`~semcache.ProgressCallback` (stages ``"embed"``, ``"static"``
            and, when timing, ``"time"``) or a stream to draw them on (None: silent).

    Raises:
        InvalidInputError: ``per_cluster`` < 1.
        ValueError: nothing to store or nothing to ask, or ``max_candidates`` < 1.
    """
    if max_candidates < 1:
        raise ValueError("max_candidates must be >= 1")
    guards = dict(guards or {})
    stored = clusters.static_sample(per_cluster)
    asked = clusters.static_queries()
    if not stored or not asked:
        raise ValueError("a static replay needs train rows to store and test rows to ask")
    report = as_progress(progress)
    vec = _vectors(clusters, [*stored, *asked], embed, report)
    texts, labels = clusters.texts, clusters.clusters

    recorder = _Recorder(guards, max_candidates)
    validator = _Validator()
    cache = SemanticCache(
        similarity_threshold=floor,
        confidence_fn=recorder,
        min_confidence=0.5,
        validator=validator,
        index_backend="flat",
        guards=None,  # the rules' guards are recorded (and served) through the validator
        answer_support=False,  # every candidate recorded in similarity order
    )
    put = [texts[i] for i in stored]
    cache.put_many(put, [labels[i] for i in stored], embeddings=np.stack([vec[t] for t in put]))
    n = len(asked)
    exact = np.zeros(n, dtype=bool)
    exact_correct = np.zeros(n, dtype=bool)
    in_scope = np.array([clusters.in_scope(labels[i]) for i in asked], dtype=bool)
    records: list[list[tuple[float, bool, tuple[bool, ...], object]]] = []
    ids: list[list[int]] = []
    prompts: list[tuple[str, list[str]]] = []
    truncated = 0
    for k, i in enumerate(asked):
        recorder.cluster = labels[i]
        recorder.rows = []
        recorder.ids = []
        recorder.prompts = []
        recorder.truncated = False
        hit = cache.get(texts[i], embedding=vec[texts[i]])
        if hit is not None and hit.layer == "exact":
            exact[k] = True
            exact_correct[k] = hit.response == labels[i]
        truncated += recorder.truncated
        records.append(recorder.rows)
        ids.append(recorder.ids)
        prompts.append((texts[i], recorder.prompts))
        if report is not None and k % 256 == 0:
            report("static", k, n)
    if report is not None:
        report("static", n, n)

    width = max(1, max(len(r) for r in records))
    sim = np.full((n, width), -np.inf)
    correct = np.zeros((n, width), dtype=bool)
    verdicts = {name: np.zeros((n, width), dtype=bool) for name in guards}
    names = list(guards)
    agree = np.zeros((n, width), dtype=bool)
    for k, rows in enumerate(records):
        for j, (s, c, vs, response) in enumerate(rows):
            sim[k, j], correct[k, j] = s, c
            for name, v in zip(names, vs, strict=True):
                verdicts[name][k, j] = v
            # answers that agree: the nearest other candidate (if any) has the same answer
            other = 1 if j == 0 else 0
            agree[k, j] = other >= len(rows) or same_answer(rows[other][3], response)
    verdicts[AGREE] = agree
    result = StaticResult(
        floor=floor,
        exact=exact,
        should_hit=in_scope,
        similarity=sim,
        correct=correct,
        score=np.full((n, width), np.nan),
        guards=verdicts,
        truncated=truncated,
        stored=len(stored),
        exact_correct=exact_correct,
    )
    result.answers = [[row[3] for row in rows] for rows in records]
    result.texts = prompts
    result.head_dots = _head_dots(cache, ids, SUPPORT_K)
    result.standing = _prototype_standing(cache, records, [vec[texts[i]] for i in asked])
    result.model = model_record(
        cache,
        records,
        [vec[texts[i]] for i in asked],
        [labels[i] for i in asked],
        [texts[i] for i in asked],
        guards,
        extra=(AGREE,),
    )

    recorder.serving = True

    def serve(rule: Rule) -> None:
        validator.active = tuple(guards[g] for g in rule.guards)

    def ask(k: int) -> Hit | None:
        text = texts[asked[k]]
        return cache.get(text, embedding=vec[text])

    def right_answer(k: int, hit: Hit) -> bool:
        return hit.response == labels[asked[k]]

    result._runner = timing_pass(cache, n, serve, ask, right_answer)
    return result


@dataclass(frozen=True, slots=True)
class StreamPoint:
    """What one configuration does on the stream replay.

    Attributes:
        label: the configuration (a rule's description, or ``"default"``).
        min_similarity: its similarity threshold.
        guards: the guards it ran with (names).
        gets: texts asked (every row of the file).
        hits: hits served (exact and semantic).
        wrong: hits whose response is not the text's cluster.
        exact_hits: hits served by the exact layer.
        llm_calls: misses (each calls the "LLM" and puts its answer).
        hit_rate: ``hits / gets``.
        error_rate: ``wrong / gets``.
        p50_get_us: median latency of a get, in microseconds.
        verifications: LLM calls made to check a candidate that could have been
            served (counted in ``llm_calls``).
    """

    label: str
    min_similarity: float
    guards: tuple[str, ...]
    gets: int
    hits: int
    wrong: int
    exact_hits: int
    llm_calls: int
    hit_rate: float
    error_rate: float
    p50_get_us: float
    verifications: int = 0

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "rule": self.label,
            "min_similarity": self.min_similarity,
            "guards": list(self.guards),
            "gets": self.gets,
            "hits": self.hits,
            "wrong": self.wrong,
            "exact_hits": self.exact_hits,
            "llm_calls": self.llm_calls,
            "hit_rate": self.hit_rate,
            "error_rate": self.error_rate,
            "p50_get_us": self.p50_get_us,
            "verifications": self.verifications,
        }


class StreamVectors:
    """The stream replay's texts in order with their precomputed vectors (embed once,
    run many configurations)."""

    def __init__(
        self, clusters: ClusterSet, embed: Embed, progress: ProgressCallback | None = None
    ) -> None:
        order = clusters.stream_order()
        vec = _vectors(clusters, order, embed, progress)
        self.texts = [clusters.texts[i] for i in order]
        self.clusters = [clusters.clusters[i] for i in order]
        self.vectors = [vec[t] for t in self.texts]


def stream_replay(
    data: StreamVectors,
    make_cache: Callable[[], SemanticCache],
    *,
    label: str,
    guards: tuple[str, ...] = (),
    progress: ProgressCallback | TextIO | None = None,
) -> StreamPoint:
    """One stream replay: for each text in order, ``get``; on a miss ``put`` it with its
    cluster. The cache comes from ``make_cache()`` (empty) and is closed after.

    Args:
        data: the texts, clusters and vectors in stream order.
        make_cache: builds the configuration to measure. Its answer model, if any,
            is fitted in the get that starts a fit, not on its own thread, so that the
            replay does not depend on timing.
        label: names it in the result (and the progress stage).
        guards: the names of the guards it runs with (for the result).
        progress: a :data:`~semcache.ProgressCallback` or a stream (None: silent).
    """
    report = as_progress(progress)
    cache = make_cache()
    models = engine_of(cache).answer_models
    if models is not None:  # (fitted in the get that starts a fit: no timing in it)
        models.background = False
    n = len(data.texts)
    hits = wrong = exact = 0
    times: list[float] = []
    try:
        for k, (text, cluster, vector) in enumerate(
            zip(data.texts, data.clusters, data.vectors, strict=True)
        ):
            if report is not None and k % 512 == 0:
                report(label, k, n)
            t0 = perf_counter()
            hit = cache.get(text, embedding=vector)
            times.append(perf_counter() - t0)
            if hit is None:
                cache.put(text, cluster, embedding=vector)
                continue
            hits += 1
            exact += hit.layer == "exact"
            wrong += hit.response != cluster
        if report is not None:
            report(label, n, n)
        threshold = cache.similarity_threshold
    finally:
        cache.close()
    return StreamPoint(
        label=label,
        min_similarity=threshold,
        guards=guards,
        gets=n,
        hits=hits,
        wrong=wrong,
        exact_hits=exact,
        llm_calls=n - hits,
        hit_rate=hits / n if n else math.nan,
        error_rate=wrong / n if n else math.nan,
        p50_get_us=statistics.median(times) * 1e6 if times else math.nan,
    )
