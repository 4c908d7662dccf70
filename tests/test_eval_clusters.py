"""The replays on a cluster set (static and stream) and ``semcache eval --protocol``, on
tiny hand-made cluster files whose numbers are computed by hand below.

Every text gets a unit vector at a hand-chosen angle in a plane, so that the cosine
similarity of two texts is ``cos(angle difference)``. The CLI reads the same vectors
from an embedding file written for the hashing embedder's fingerprint.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from semcache import SemanticCache
from semcache._cli import main
from semcache._errors import InvalidInputError
from semcache.embedders import CallableEmbedder, HashingEmbedder
from semcache.quality import EmbeddingFile, Rule, numbers_agree
from semcache.quality._clusters import (
    StreamPoint,
    StreamVectors,
    file_kind,
    load_clusters,
    static_replay,
    stream_replay,
)

DIM = HashingEmbedder().dim

# text, cluster, split, angle in degrees
STATIC_ROWS = [
    ("open the pod bay doors", "a", "train", 0.0),
    ("sing me a song", "b", "train", 90.0),
    ("xyz", "oos:2", "oos_train", 45.0),  # never stored
    ("a val row", "a", "val", 1.0),  # neither stored nor asked
    ("please open the doors", "a", "test", 10.0),  # a1 0.985: correct
    ("doors open now", "a", "test", 40.0),  # a1 0.766: correct
    ("a song please", "b", "test", 60.0),  # b1 0.866: correct
    ("sing 7 songs", "b", "test", 25.0),  # a1 0.906: wrong (numbers guard blocks)
    ("what is 12 times 3", "oos:1", "oos_test", 70.0),  # b1 0.940: false (blocked)
    ("Open the  POD bay doors", "a", "test", 0.0),  # an exact repeat of a1: correct
]

# text, cluster, angle; rows in file order. The stream's order is
# numpy.random.default_rng(0).permutation(6) = [3, 2, 5, 4, 0, 1].
STREAM_ROWS = [
    ("put on some music", "b", 80.0),  # p4
    ("what is 12 times 3", "oos:1", 45.0),  # p5
    ("open that door for me", "a", 20.0),  # p1
    ("how do i open the door", "a", 0.0),  # p0
    ("play some music", "b", 90.0),  # p3
    ("play 2 songs", "b", 30.0),  # p2
]


def _unit(angle: float) -> npt.NDArray[np.float32]:
    v = np.zeros(DIM, dtype=np.float32)
    v[0], v[1] = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    return v


def _embed(angles: dict[str, float]):  # type: ignore[no-untyped-def]
    from semcache._text import normalize_text

    def embed(texts: Sequence[str]) -> npt.NDArray[np.float32]:
        return np.stack([_unit(angles[normalize_text(t)]) for t in texts])

    return embed


def _write(path: Path, header: list[str], rows: list[tuple[str, ...]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture
def static_csv(tmp_path: Path) -> Path:
    return _write(
        tmp_path / "static.csv", ["text", "cluster", "split"], [r[:3] for r in STATIC_ROWS]
    )


@pytest.fixture
def stream_csv(tmp_path: Path) -> Path:
    rows = [(t, c, "train") for t, c, _ in STREAM_ROWS]
    return _write(tmp_path / "stream.csv", ["text", "cluster", "split"], rows)


def _angles(rows: Sequence[tuple[object, ...]]) -> dict[str, float]:
    from semcache._text import normalize_text

    return {normalize_text(str(r[0])): float(r[-1]) for r in rows}  # type: ignore[arg-type]


def _embedding_file(path: Path, rows: Sequence[tuple[object, ...]]) -> Path:
    """An embedding file of the hand-made vectors, for the hashing embedder's
    fingerprint (what ``--embedder hashing --embedding-cache`` reads)."""
    angles = _angles(rows)
    fake = CallableEmbedder(_embed(angles), DIM, HashingEmbedder().fingerprint)
    f = EmbeddingFile(fake, path)
    f.embed(list(angles))
    f.save()
    return path


def test_file_kind_by_header(tmp_path: Path, static_csv: Path) -> None:
    assert file_kind(static_csv) == "clusters"
    pairs = _write(tmp_path / "p.csv", ["text_a", "text_b", "label"], [("a", "b", "1")])
    assert file_kind(pairs) == "pairs"
    other = _write(tmp_path / "o.csv", ["question", "answer"], [("a", "b")])
    with pytest.raises(InvalidInputError, match="neither"):
        file_kind(other)
    bad = _write(tmp_path / "b.csv", ["text", "cluster", "split"], [("a", "", "train")])
    with pytest.raises(InvalidInputError, match="empty cluster"):
        load_clusters(bad)


def test_static_sample_follows_the_protocol(tmp_path: Path) -> None:
    # 3 clusters (file order c, a, b), 4 train rows each, plus rows never stored
    rows = []
    for k in range(4):
        for c in ("c", "a", "b"):
            rows.append((f"{c} text {k}", c, "train"))
    rows += [("a test", "a", "test"), ("oos", "oos:1", "train"), ("oos 2", "oos:2", "oos_train")]
    data = load_clusters(_write(tmp_path / "s.csv", ["text", "cluster", "split"], rows))
    picked = data.static_sample(2)
    rng = np.random.default_rng(0)
    expected: list[int] = []
    for c in ("a", "b", "c"):  # sorted order
        members = [i for i, r in enumerate(rows) if r[1] == c and r[2] == "train"]
        expected += [int(i) for i in rng.choice(members, 2, replace=False)]
    assert picked == expected
    assert sorted(data.clusters[i] for i in picked) == ["a", "a", "b", "b", "c", "c"]
    assert len(data.static_sample(10)) == 12  # min(S, n): every train row, no oos row
    assert data.static_queries() == [12]
    assert data.stream_order() == [int(i) for i in np.random.default_rng(0).permutation(15)]
    with pytest.raises(InvalidInputError):
        data.static_sample(0)


def test_static_replay_arithmetic(static_csv: Path) -> None:
    data = load_clusters(static_csv)
    result = static_replay(
        data, _embed(_angles(STATIC_ROWS)), guards={"numbers": numbers_agree}, floor=0.5
    )
    assert result.stored == 2  # a1 and b1; the oos_train and val rows are not stored
    assert result.gets == 6  # 5 test rows and 1 oos_test row
    assert int(result.in_scope.sum()) == 5
    assert int(result.exact.sum()) == 1

    def numbers(t: float, guards: tuple[str, ...] = ()) -> tuple[int, int, float, float]:
        p = result.evaluate(Rule(t, None, guards))
        return p.hits, p.correct, p.hit_rate, p.precision

    assert numbers(0.99) == (1, 1, 0.2, 1.0)  # the exact repeat only
    assert numbers(0.94) == (2, 2, 0.4, 1.0)  # + "please open the doors" (0.985)
    assert numbers(0.93) == (3, 2, 0.4, 2 / 3)  # + the oos query (0.940), false
    assert numbers(0.90) == (4, 2, 0.4, 0.5)  # + "sing 7 songs" -> a (0.906), wrong
    assert numbers(0.85) == (5, 3, 0.6, 0.6)  # + "a song please" (0.866)
    assert numbers(0.75) == (6, 4, 0.8, 4 / 6)  # + "doors open now" (0.766)
    # the numbers guard blocks both wrong ones
    assert numbers(0.75, ("numbers",)) == (4, 4, 0.8, 1.0)
    p = result.evaluate(Rule(0.75))
    assert p.false_hits_per_get == pytest.approx(2 / 6)
    head = result.headline(0.95)
    assert head is not None
    assert head.rule.min_similarity == pytest.approx(0.94)
    assert head.hit_rate == pytest.approx(0.4)
    guarded = result.headline(0.99, ("numbers",))
    assert guarded is not None
    assert guarded.rule.min_similarity == pytest.approx(0.5)
    assert guarded.hit_rate == pytest.approx(0.8)
    # answers that agree (recorded as the pseudo-guard "agree"): a candidate whose
    # nearest other candidate has another answer is blocked ("doors open now": a1
    # 0.766 / b1 0.643; "a song please": b1 0.866 / a1 0.5); one alone passes, right
    # ("please open the doors") or wrong ("sing 7 songs", the oos query)
    assert numbers(0.5, ("agree",)) == (4, 2, 0.4, 0.5)
    assert numbers(0.5, ("agree", "numbers")) == (2, 2, 0.4, 1.0)
    # serving each rule for real agrees with the record
    rules = [Rule(t) for t in (0.99, 0.94, 0.9, 0.75)] + [Rule(0.75, None, ("numbers",))]
    assert result.time_rules(rules, 6) == 0
    assert all(len(result.timings[r]) == 6 for r in rules)


def _stream_cache(threshold: float, **options: object):  # type: ignore[no-untyped-def]
    # the arithmetic below is the cosine threshold's (the replay's, not the rule's)
    return lambda: SemanticCache(
        similarity_threshold=threshold,
        index_backend="flat",
        guards=None,
        answer_support=False,
        **options,
    )


def test_stream_replay_arithmetic(stream_csv: Path) -> None:
    data = StreamVectors(load_clusters(stream_csv), _embed(_angles(STREAM_ROWS)))
    assert data.texts[0] == "how do i open the door"  # row 3 comes first
    # t=0.95: p0 miss; p1 (0.940) miss; p2 -> p1 (0.985) wrong; p3 miss; p4 -> p3
    # (0.985) right; p5 -> p1 (0.906) miss
    p = stream_replay(data, _stream_cache(0.95), label="x")
    assert (p.gets, p.hits, p.wrong, p.llm_calls, p.exact_hits) == (6, 2, 1, 4, 0)
    assert (p.hit_rate, p.error_rate) == (pytest.approx(2 / 6), pytest.approx(1 / 6))
    assert p.min_similarity == 0.95
    assert p.p50_get_us > 0
    # t=0.90: p1 -> p0 (0.940) right, not stored; p2 -> p0 (0.866) miss, stored; p3
    # miss; p4 -> p3 right; p5 -> p2 (0.966) wrong
    p = stream_replay(data, _stream_cache(0.90), label="x")
    assert (p.hits, p.wrong, p.llm_calls) == (3, 1, 3)
    # t=0.85 with the numbers guard: p2 ("2") and p5 ("12", "3") are blocked
    p = stream_replay(data, _stream_cache(0.85, validator=numbers_agree), label="x")
    assert (p.hits, p.wrong, p.llm_calls) == (2, 0, 4)
    p = stream_replay(data, _stream_cache(0.85), label="x")
    assert (p.hits, p.wrong, p.llm_calls) == (3, 1, 3)


def test_cli_static_json(
    tmp_path: Path, static_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vectors = _embedding_file(tmp_path / "v.npz", STATIC_ROWS)
    out = tmp_path / "static.json"
    args = ["eval", str(static_csv), "--protocol", "static", "--embedder", "hashing"]
    args += ["--embedding-cache", str(vectors), "--timing-sample", "6", "--json", str(out)]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "static replay, S=10: 2 stored, 6 gets, 5 in scope" in captured.out
    assert "static [" in captured.err  # the progress bar
    assert "WARNING" not in captured.out
    assert "(precision 1.000, support>=0.500 +default)" in captured.out  # default's knob
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["protocol"] == "static"
    assert data["per_cluster"] == 10
    assert set(data["rules"]) == {"cosine", "default"}
    assert set(data["headline"]) == {"cosine", "default"}
    for family in data["headline"].values():
        assert set(family) == {"precision_0.95", "precision_0.99"}
        for point in family.values():
            assert {"hit_rate", "knob"} <= set(point)
    cosine = data["headline"]["cosine"]
    assert cosine["precision_0.95"]["knob"] == pytest.approx(0.94)
    assert cosine["precision_0.95"]["hit_rate"] == pytest.approx(0.4)
    # SemanticCache's shipped guards include numbers: both false hits are blocked
    assert data["defaults"] == {"similarity_threshold": 0.85, "guards": True}
    # default: the shipped guards, the threshold on the answer support score; each
    # answer is stored once here, so the score is the similarity: with the guards every
    # hit is right down to the floor (tests/test_answer_support_replay.py: repeats)
    default = data["headline"]["default"]
    assert default["precision_0.99"]["knob"] == pytest.approx(0.5)
    assert default["precision_0.99"]["hit_rate"] == pytest.approx(0.8)
    rows = {(r["family"], r["rule"]): r for r in data["rows"]}
    assert rows["cosine", "cos>=0.850"]["hits"] == 5
    assert rows["cosine", "cos>=0.850"]["p50_get_ms"] > 0
    assert rows["default", "cos>=0.850 +default"]["hits"] == 3  # a1 0.985, b1 0.866, exact
    assert rows["default", "cos>=0.850 +default"]["p50_get_ms"] is None  # from the record
    assert data["timing_mismatches"] == 0
    curve = {round(p["min_similarity"], 4): p for p in data["rules"]["cosine"]}
    assert curve[0.75]["precision"] == pytest.approx(4 / 6)


def test_cli_stream_json(
    tmp_path: Path, stream_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vectors = _embedding_file(tmp_path / "v.npz", STREAM_ROWS)
    out = tmp_path / "stream.json"
    args = ["eval", str(stream_csv), "--protocol", "stream", "--embedder", "hashing"]
    args += ["--embedding-cache", str(vectors), "--guards", "numbers", "--json", str(out)]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "stream replay: 6 gets" in captured.out
    assert "stream cos>=0.900 [" in captured.err  # a progress bar per run
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["protocol"] == "stream"
    assert data["gets"] == 6
    assert set(data["rules"]) == {"cosine", "cosine+numbers", "threshold", "default"}
    cosine = {round(p["min_similarity"], 4): p for p in data["rules"]["cosine"]}
    assert (cosine[0.95]["hits"], cosine[0.95]["wrong"], cosine[0.95]["llm_calls"]) == (2, 1, 4)
    assert (cosine[0.9]["hits"], cosine[0.9]["wrong"], cosine[0.9]["llm_calls"]) == (3, 1, 3)
    for family in data["headline"].values():
        assert set(family) == {"error_0.01", "error_0.001"}
        for point in family.values():
            assert {"hit_rate", "error_rate", "llm_calls"} <= set(point)
    # cosine: only thresholds above 0.985 (refined by 0.0025) make no error; none hits
    best = data["headline"]["cosine"]["error_0.01"]
    assert best == {
        "hit_rate": 0.0,
        "error_rate": 0.0,
        "llm_calls": 6,
        "knob": pytest.approx(0.985),
        "verifications": 0,
        "within_budget": True,
    }
    # the numbers guard: from cos>=0.70 no wrong hit, p1 and p4 served
    guarded = data["headline"]["cosine+numbers"]["error_0.001"]
    assert (guarded["hit_rate"], guarded["error_rate"]) == (pytest.approx(2 / 6), 0.0)
    # threshold: the shipped cache without a budget (its guards, numbers among them, and
    # answer support) serves what cosine+numbers serves here: p1 and p4
    shipped = data["headline"]["threshold"]["error_0.001"]
    assert (shipped["hit_rate"], shipped["error_rate"]) == (pytest.approx(2 / 6), 0.0)
    assert "shipped threshold>=0.850 [" in captured.err
    # default: the error budget, one run per budget; six gets teach it too little to
    # serve anything (every LLM call is an observation, none is a verification)
    default = data["headline"]["default"]
    for budget in (0.01, 0.001):
        point = default[f"error_{budget}"]
        assert (point["llm_calls"], point["error_rate"], point["knob"]) == (6, 0.0, budget)
        assert point["verifications"] == 0
    assert len(data["rules"]["default"]) == 2


def test_cli_refuses_protocol_on_pairs_and_pair_options_on_clusters(
    tmp_path: Path, static_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pairs = _write(tmp_path / "p.csv", ["text_a", "text_b", "label"], [("a", "b", "1")])
    assert main(["eval", str(pairs), "--protocol", "static", "--embedder", "hashing"]) != 0
    assert "is a pair file" in capsys.readouterr().err
    assert main(["eval", str(pairs), "--per-cluster", "3", "--embedder", "hashing"]) != 0
    assert "is a pair file" in capsys.readouterr().err
    code = main(["eval", str(static_csv), "--verifier", "v.json", "--embedder", "hashing"])
    assert code != 0
    assert "--verifier apply to pair files only" in capsys.readouterr().err
    code = main(["eval", str(static_csv), "--protocol", "stream", "--per-cluster", "3"])
    assert code != 0
    assert "--per-cluster applies to the static replay only" in capsys.readouterr().err
    code = main(["eval", str(static_csv), "--per-cluster", "0", "--embedder", "hashing"])
    assert code != 0
    assert "--per-cluster must be >= 1" in capsys.readouterr().err


def test_the_stream_sweep_goes_below_its_grid_when_the_lowest_is_within(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Our own sweep logic (a fake run: error rate 0.02 x (0.65 - t), none above 0.65):
    the grid's lowest (0.7) is within both budgets, so the sweep steps down by 0.02 until
    a threshold is over (0.001: 0.58) and bisects, or reaches the floor (0.01: 0.5)."""
    from semcache.quality import _cluster_commands as commands

    def fake_run(data: object, make: Any, *, label: str, **kwargs: object) -> StreamPoint:
        with make() as cache:
            t = cache.similarity_threshold
        wrong = round(max(0.0, 0.65 - t) * 0.02 * 100_000)
        return StreamPoint(label, t, (), 100_000, 0, wrong, 0, 0, 0.5, wrong / 100_000, 1.0)

    monkeypatch.setattr(commands, "_stream_run", fake_run)
    points = commands._sweep(None, (0.7, 0.8), (), None)  # type: ignore[arg-type]
    ran = [p.min_similarity for p in points]
    assert ran[:8] == [0.5, 0.52, 0.54, 0.56, 0.58, 0.59, 0.595, 0.5975]  # (0.59-: bisected)
    assert {0.6, 0.62, 0.64, 0.66, 0.68, 0.7, 0.8} <= set(ran)
    assert commands._best(points, 0.01).min_similarity == 0.5  # type: ignore[union-attr]
    best = commands._best(points, 0.001)
    assert best is not None
    assert best.min_similarity == 0.6
    assert best.error_rate <= 0.001
