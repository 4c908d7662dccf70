"""The replay protocol (``../shared/data/eval/README.md``) run through the public API.

One recording pass puts every distinct ``text_a`` into an empty :class:`SemanticCache`
and asks every ``text_b`` with a precomputed embedding. The cache's ``confidence_fn``
is a recorder that notes each candidate the cache examines (its similarity, whether
it is correct, the verifier's score and each guard's verdict) and rejects it, so the
cache goes on to the next candidate above the floor, in the order it would serve them.
For any decision rule (a similarity threshold at or above the floor, a verifier
threshold, a set of guards) the hit the cache would serve is then the first recorded
candidate the rule accepts: one pass measures a whole sweep exactly. A second pass
serves a sample of the queries with each rule for real, times those gets, and checks
that every one of them returned what the record predicted.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any, TextIO

import numpy as np
import numpy.typing as npt

from .._cache import SemanticCache
from .._progress import ProgressCallback, as_progress
from .._text import normalize_text
from .._types import Hit
from ._features import pair_features
from ._pairs import PairSet

__all__ = ["FalseHit", "QualityPoint", "ReplayResult", "Rule", "embed_all", "replay"]

Embed = Callable[[Sequence[str]], npt.NDArray[np.float32]]
Judge = Callable[[str, Hit], bool]
Scorer = Callable[[str, Hit], float]
_EMBED_BATCH = 256


@dataclass(frozen=True, slots=True)
class Rule:
    """A decision rule: serve a semantic candidate when its similarity is at least
    ``min_similarity``, the verifier's score at least ``min_score`` (None: no
    verifier) and every guard in ``guards`` accepts it."""

    min_similarity: float
    min_score: float | None = None
    guards: tuple[str, ...] = ()

    def describe(self) -> str:
        """A short label for tables."""
        text = f"cos>={self.min_similarity:.3f}"
        if self.min_score is not None:
            text += f" verifier>={self.min_score:.3f}"
        if self.guards:
            text += " +" + "+".join(self.guards)
        return text


@dataclass(frozen=True, slots=True)
class QualityPoint:
    """What one rule does on one replay (the protocol's step 4).

    Attributes:
        rule: the rule.
        gets: queries asked (one per pair).
        should_hit: queries with some stored text in their cluster.
        hits: hits served (exact and semantic).
        correct: hits whose stored text is in the query's cluster.
        exact_hits: hits served by the exact layer.
        hit_rate: ``correct / should_hit``.
        precision: ``correct / hits`` (NaN with no hit).
        false_hits_per_get: ``(hits - correct) / gets``.
        p50_get_ms: median latency of a get with this rule (None when not timed).
    """

    rule: Rule
    gets: int
    should_hit: int
    hits: int
    correct: int
    exact_hits: int
    hit_rate: float
    precision: float
    false_hits_per_get: float
    p50_get_ms: float | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "rule": self.rule.describe(),
            "min_similarity": self.rule.min_similarity,
            "min_score": self.rule.min_score,
            "guards": list(self.rule.guards),
            "gets": self.gets,
            "should_hit": self.should_hit,
            "hits": self.hits,
            "correct": self.correct,
            "exact_hits": self.exact_hits,
            "hit_rate": self.hit_rate,
            "precision": None if math.isnan(self.precision) else self.precision,
            "false_hits_per_get": self.false_hits_per_get,
            "p50_get_ms": self.p50_get_ms,
        }


@dataclass(frozen=True, slots=True)
class FalseHit:
    """A hit the labels call wrong: what was asked, the stored text whose answer was
    served, their similarity, and the verifier's score (None without one)."""

    query: str
    served: str
    similarity: float
    score: float | None


@dataclass
class ReplayResult:
    """The record of one replay: per query, the candidates the cache examined.

    Candidate arrays are ``(queries, width)``, padded with -inf similarities.

    Attributes:
        floor: the similarity threshold the recording cache ran with.
        exact: per query, whether the exact layer answered.
        should_hit: per query, whether some stored text is in its cluster.
        similarity, correct, score: per candidate; ``score`` is NaN without a verifier
            or below the verifier's ``min_similarity``.
        guards: guard name -> per-candidate verdicts.
        truncated: queries whose candidates were cut at ``max_candidates``.
        features, labels: per candidate at or above ``feature_floor``, the verifier's
            features and whether it is correct (only with ``collect_features``).
        feature_query: the query index of each feature row.
        stored: how many distinct texts were put.
        timings: rule -> get latencies in seconds (from :meth:`time_rules`).
        queries: the text asked by each get.
        candidates: per query, the stored text of each candidate (as ``similarity``).
        exact_correct: per query, whether its exact hit was right (None: every exact hit
            is, as in the pairs protocol, where an exact repeat is in its own cluster).
    """

    floor: float
    exact: npt.NDArray[np.bool_]
    should_hit: npt.NDArray[np.bool_]
    similarity: npt.NDArray[np.float64]
    correct: npt.NDArray[np.bool_]
    score: npt.NDArray[np.float64]
    guards: dict[str, npt.NDArray[np.bool_]]
    truncated: int
    stored: int
    features: npt.NDArray[np.float64] | None = None
    labels: npt.NDArray[np.bool_] | None = None
    feature_query: npt.NDArray[np.intp] | None = None
    timings: dict[Rule, list[float]] = field(default_factory=dict)
    queries: list[str] = field(default_factory=list)
    candidates: list[list[str]] = field(default_factory=list)
    exact_correct: npt.NDArray[np.bool_] | None = None

    @property
    def gets(self) -> int:
        """Queries asked."""
        return int(self.exact.shape[0])

    def _served(self, rule: Rule) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        """Per query: served a semantic hit, and was it correct."""
        if rule.min_similarity < self.floor - 1e-12:
            raise ValueError(f"the replay recorded candidates down to {self.floor} only")
        ok = self.similarity >= rule.min_similarity
        if rule.min_score is not None:
            ok &= self.score >= rule.min_score  # NaN compares False
        for name in rule.guards:
            ok &= self.guards[name]
        served = ok.any(axis=1) & ~self.exact
        first = ok.argmax(axis=1)
        right = self.correct[np.arange(self.gets), first] & served
        return served, right

    def evaluate(self, rule: Rule) -> QualityPoint:
        """The protocol's numbers for ``rule``.

        Raises:
            ValueError: the rule's similarity threshold is below the recorded floor, or
                it names a guard that was not recorded.
        """
        missing = [g for g in rule.guards if g not in self.guards]
        if missing:
            raise ValueError(f"guards not recorded in this replay: {missing}")
        served, right = self._served(rule)
        exact = int(self.exact.sum())
        hits = exact + int(served.sum())
        exact_right = exact if self.exact_correct is None else int(self.exact_correct.sum())
        correct = exact_right + int(right.sum())
        should = int(self.should_hit.sum())
        times = self.timings.get(rule)
        return QualityPoint(
            rule=rule,
            gets=self.gets,
            should_hit=should,
            hits=hits,
            correct=correct,
            exact_hits=exact,
            hit_rate=correct / should if should else math.nan,
            precision=correct / hits if hits else math.nan,
            false_hits_per_get=(hits - correct) / self.gets if self.gets else math.nan,
            p50_get_ms=None if not times else statistics.median(times) * 1000.0,
        )

    def false_hits(self, rule: Rule, *, sample: int | None = None, seed: int = 0) -> list[FalseHit]:
        """The hits ``rule`` serves that the labels call wrong, in query order, or a
        seeded random ``sample`` of them: read them to judge the labels as well as the
        rule (labelled pair sets leave many true duplicates unlinked).

        Raises:
            ValueError: as :meth:`evaluate`; or the result holds no texts (built by hand).
        """
        missing = [g for g in rule.guards if g not in self.guards]
        if missing:
            raise ValueError(f"guards not recorded in this replay: {missing}")
        if len(self.candidates) != self.gets:
            raise ValueError("this result holds no candidate texts")
        served, right = self._served(rule)
        ok = self.similarity >= rule.min_similarity
        if rule.min_score is not None:
            ok &= self.score >= rule.min_score
        for name in rule.guards:
            ok &= self.guards[name]
        first = ok.argmax(axis=1)
        wrong = np.flatnonzero(served & ~right).tolist()
        if sample is not None and sample < len(wrong):
            wrong = sorted(random.Random(seed).sample(wrong, sample))
        out = []
        for i in wrong:
            j = int(first[i])
            score = float(self.score[i, j])
            out.append(
                FalseHit(
                    query=self.queries[i],
                    served=self.candidates[i][j],
                    similarity=float(self.similarity[i, j]),
                    score=None if math.isnan(score) else score,
                )
            )
        return out

    def curve(
        self, *, by: str = "similarity", rule: Rule | None = None, step: float = 0.001
    ) -> list[QualityPoint]:
        """Points on a grid of one threshold (multiples of ``step``), the rest of
        ``rule`` fixed.

        Args:
            by: ``"similarity"`` (from the floor to 1) or ``"score"`` (0 to 1).
            rule: the other settings (default: no verifier, no guards, the floor).
            step: the grid's spacing.

        Raises:
            ValueError: ``by`` is neither, or ``step`` is not in (0, 1].
        """
        if not 0.0 < step <= 1.0:
            raise ValueError(f"step must be in (0, 1], got {step}")
        base = rule or Rule(self.floor)
        count = round(1.0 / step)
        if by == "similarity":
            low = max(base.min_similarity, self.floor)
            first = math.ceil(round(low / step, 6))
            values = [round(i * step, 10) for i in range(first, count + 1)]
            rules = [Rule(v, base.min_score, base.guards) for v in values]
        elif by == "score":
            values = [round(i * step, 10) for i in range(count + 1)]
            rules = [Rule(base.min_similarity, v, base.guards) for v in values]
        else:
            raise ValueError(f"by must be 'similarity' or 'score', got {by!r}")
        return [self.evaluate(r) for r in rules]

    def headline(
        self, target: float, *, by: str = "similarity", rule: Rule | None = None
    ) -> QualityPoint | None:
        """The point at the lowest threshold (a multiple of 0.001, as :meth:`curve`)
        whose precision is at least ``target``, or None if none reaches it."""
        for point in self.curve(by=by, rule=rule):
            if point.precision >= target:
                return point
        return None

    def time_rules(
        self,
        rules: Sequence[Rule],
        sample: int,
        *,
        seed: int = 0,
        progress: ProgressCallback | TextIO | None = None,
    ) -> int:
        """Serve a sample of queries with each rule for real, timing every get.

        Fills :attr:`timings`. Available only on the result of :func:`replay` (which
        keeps what it needs), once. ``progress``: a :data:`~semcache.ProgressCallback`
        (stage ``"time"``) or a stream to draw a bar on.

        Returns:
            How many served gets disagreed with the record (0 when the record is exact).
        """
        runner = self._runner
        if runner is None:
            raise RuntimeError("this result cannot time rules (already done or not kept)")
        mismatches: int = runner(self, rules, sample, seed, as_progress(progress))
        return mismatches

    _runner: Any = None


class _Recorder:
    """The recording cache's ``confidence_fn`` and, when serving, its switchable judge."""

    def __init__(
        self,
        pairs: PairSet,
        verifier: Scorer | None,
        verifier_floor: float,
        guards: Mapping[str, Judge],
        max_candidates: int,
        feature_floor: float | None,
    ) -> None:
        self.pairs = pairs
        self.verifier = verifier
        self.verifier_floor = verifier_floor
        self.guards = dict(guards)
        self.max_candidates = max_candidates
        self.feature_floor = feature_floor
        self.cluster = ""
        self.rows: list[tuple[float, bool, float, tuple[bool, ...], str]] = []
        self.features: list[list[float]] = []
        self.labels: list[bool] = []
        self.feature_query: list[int] = []
        self.query_index = 0
        self.truncated = False
        self.serving: Rule | None = None
        self.served_score: Scorer | None = None

    def __call__(self, query: str, hit: Hit) -> float:
        rule = self.serving
        if rule is not None:  # timing pass: behave like the rule's configuration
            if rule.min_score is not None:
                assert self.served_score is not None
                score = self.served_score(query, hit)
                return 1.0 if score >= rule.min_score else -math.inf
            return 1.0
        if len(self.rows) >= self.max_candidates:
            self.truncated = True
            return 1.0  # stop the search here
        sim = hit.similarity
        correct = self.pairs.cluster(hit.query) == self.cluster
        score = math.nan
        if self.verifier is not None and sim >= self.verifier_floor:
            score = float(self.verifier(query, hit))
        verdicts = tuple(bool(g(query, hit)) for g in self.guards.values())
        self.rows.append((sim, correct, score, verdicts, hit.query))
        if self.feature_floor is not None and sim >= self.feature_floor:
            self.features.append(pair_features(query, hit.query, sim, hit.runner_up))
            self.labels.append(correct)
            self.feature_query.append(self.query_index)
        return -math.inf  # rejected: the cache goes on to the next candidate


class _Validator:
    def __init__(self, guards: Mapping[str, Judge]) -> None:
        self.guards = dict(guards)
        self.active: tuple[Judge, ...] = ()

    def __call__(self, query: str, hit: Hit) -> bool:
        return all(g(query, hit) for g in self.active)


def embed_all(
    embed: Embed, texts: Sequence[str], progress: ProgressCallback | None
) -> npt.NDArray[np.float32]:
    """``texts`` embedded in batches of ``_EMBED_BATCH``: one float32 row each, in order
    (no texts: a ``(0, 1)`` array); ``progress("embed", done, total)`` before each batch
    and once at the end."""
    parts = []
    for lo in range(0, len(texts), _EMBED_BATCH):
        if progress is not None:
            progress("embed", lo, len(texts))
        chunk = texts[lo : lo + _EMBED_BATCH]
        parts.append(np.asarray(embed(chunk), dtype=np.float32))
    if progress is not None and texts:
        progress("embed", len(texts), len(texts))
    if not parts:
        return np.zeros((0, 1), dtype=np.float32)
    return np.concatenate(parts)


def replay(
    pairs: PairSet,
    embed: Embed,
    *,
    floor: float = 0.6,
    verifier: Scorer | None = None,
    verifier_floor: float = -1.0,
    guards: Mapping[str, Judge] | None = None,
    max_candidates: int = 32,
    feature_floor: float | None = None,
    distractors: Sequence[str] = (),
    progress: ProgressCallback | TextIO | None = None,
) -> ReplayResult:
    """Run the replay protocol once, recording every candidate down to ``floor``.

    Args:
        pairs: the labelled pairs.
        embed: ``embed(texts) -> (n, dim)`` vectors (for example an embedder's
            ``embed``, or a lookup into precomputed vectors); called in batches.
        floor: the lowest similarity threshold any rule will use.
        verifier: ``verifier(query, hit) -> score`` recorded for candidates at or above
            ``verifier_floor`` (a :class:`~semcache.quality.Verifier` fits).
        verifier_floor: see ``verifier``.
        guards: name -> ``validator(query, hit) -> bool``, each recorded per candidate.
        max_candidates: candidates recorded per query at most (the search stops there).
        feature_floor: collect the verifier's features of candidates at or above this
            similarity (for training); None: collect none.
        distractors: more texts to store (not a step of the protocol): no query of
            ``pairs`` counts them as correct. Calibration uses them to make its cache as
            crowded as the one the verifier will face.
        progress: a :data:`~semcache.ProgressCallback` (stages ``"embed"`` and
            ``"replay"``), or a stream to draw them on (None: silent).

    Returns:
        The :class:`ReplayResult`.

    Raises:
        ValueError: no pairs, or ``max_candidates`` < 1.
    """
    if not len(pairs):
        raise ValueError("no pairs to replay")
    if max_candidates < 1:
        raise ValueError("max_candidates must be >= 1")
    guards = dict(guards or {})
    stored, stored_keys = pairs.stored_texts()
    queries = [p.text_b for p in pairs.pairs]
    if distractors:
        known = set(stored_keys)
        extra = {normalize_text(t): t for t in distractors}
        stored = stored + [t for k, t in extra.items() if k not in known]
        stored_keys = stored_keys + [k for k in extra if k not in known]
    stored_clusters = {pairs.cluster(k) for k in stored_keys}
    should = np.array([pairs.cluster(q) in stored_clusters for q in queries], dtype=bool)
    # embed each distinct text once
    distinct: dict[str, str] = {}
    for text in [*stored, *queries]:
        distinct.setdefault(normalize_text(text), text)
    keys = list(distinct)
    report = as_progress(progress)
    vectors = embed_all(embed, [distinct[k] for k in keys], report)
    row_of = {k: i for i, k in enumerate(keys)}
    stored_vecs = vectors[[row_of[k] for k in stored_keys]]

    recorder = _Recorder(pairs, verifier, verifier_floor, guards, max_candidates, feature_floor)
    validator = _Validator(guards)
    cache = SemanticCache(
        similarity_threshold=floor,
        confidence_fn=recorder,
        min_confidence=0.5,
        validator=validator,
        index_backend="flat",
        guards=None,  # the rules' guards are recorded (and served) through the validator
        # every candidate recorded in similarity order; every stored text is its own
        # answer here, so the default's support score is the similarity (unchanged)
        answer_support=False,
    )
    cache.put_many(stored, stored, embeddings=stored_vecs)
    query_vecs = [vectors[row_of[normalize_text(q)]] for q in queries]

    exact = np.zeros(len(queries), dtype=bool)
    records: list[list[tuple[float, bool, float, tuple[bool, ...], str]]] = []
    truncated = 0
    for i, (query, vec) in enumerate(zip(queries, query_vecs, strict=True)):
        recorder.cluster = pairs.cluster(query)
        recorder.rows = []
        recorder.truncated = False
        recorder.query_index = i
        hit = cache.get(query, embedding=vec)
        exact[i] = hit is not None and hit.layer == "exact"
        truncated += recorder.truncated
        records.append(recorder.rows)
        if report is not None and i % 256 == 0:
            report("replay", i, len(queries))
    if report is not None:
        report("replay", len(queries), len(queries))

    width = max(1, max(len(r) for r in records))
    n = len(queries)
    sim = np.full((n, width), -np.inf)
    correct = np.zeros((n, width), dtype=bool)
    score = np.full((n, width), np.nan)
    verdicts = {name: np.zeros((n, width), dtype=bool) for name in guards}
    names = list(guards)
    for i, rows in enumerate(records):
        for j, (s, c, sc, vs, _) in enumerate(rows):
            sim[i, j], correct[i, j], score[i, j] = s, c, sc
            for name, v in zip(names, vs, strict=True):
                verdicts[name][i, j] = v
    result = ReplayResult(
        floor=floor,
        exact=exact,
        should_hit=should,
        similarity=sim,
        correct=correct,
        score=score,
        guards=verdicts,
        truncated=truncated,
        stored=len(stored),
        queries=queries,
        candidates=[[r[4] for r in rows] for rows in records],
    )
    if feature_floor is not None:
        result.features = np.asarray(recorder.features, dtype=np.float64).reshape(
            len(recorder.features), -1
        )
        result.labels = np.asarray(recorder.labels, dtype=bool)
        result.feature_query = np.asarray(recorder.feature_query, dtype=np.intp)

    def serve(rule: Rule) -> None:
        recorder.serving = rule
        recorder.served_score = verifier
        validator.active = tuple(guards[g] for g in rule.guards)

    def ask(i: int) -> Hit | None:
        return cache.get(queries[i], embedding=query_vecs[i])

    def right_answer(i: int, hit: Hit) -> bool:
        return pairs.cluster(hit.query) == pairs.cluster(queries[i])

    result._runner = timing_pass(cache, n, serve, ask, right_answer)
    return result


def timing_pass(
    cache: SemanticCache,
    queries: int,
    serve: Callable[[Rule], None],
    ask: Callable[[int], Hit | None],
    right_answer: Callable[[int, Hit], bool],
) -> Callable[[ReplayResult, Sequence[Rule], int, int, ProgressCallback | None], int]:
    """The runner behind :meth:`ReplayResult.time_rules`, shared by every replay: for each
    rule (``serve(rule)`` sets the cache up for it), ask a seeded sample of the queries
    for real (``ask(i)``), time each get and count the gets whose hit (semantic or not,
    and ``right_answer``) disagrees with what the record predicted. Runs once, then
    closes ``cache``."""

    def run(
        res: ReplayResult,
        rules: Sequence[Rule],
        sample: int,
        seed: int,
        report: ProgressCallback | None,
    ) -> int:
        res._runner = None
        picked = sorted(random.Random(seed).sample(range(queries), min(sample, queries)))
        mismatches = 0
        total = len(rules) * len(picked)
        try:
            for k, rule in enumerate(rules):
                if report is not None:
                    report("time", k * len(picked), total)
                served, right = res._served(rule)
                cache.set_similarity_threshold(rule.min_similarity)
                serve(rule)
                times = []
                for i in picked:
                    t0 = perf_counter()
                    hit = ask(i)
                    times.append(perf_counter() - t0)
                    got = hit is not None and hit.layer == "semantic"
                    ok = hit is not None and got and right_answer(i, hit)
                    if got != bool(served[i]) or ok != bool(right[i]):
                        mismatches += 1
                res.timings[rule] = times
            if report is not None:
                report("time", total, total)
        finally:
            cache.close()
        return mismatches

    return run
