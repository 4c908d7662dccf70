"""``semcache eval`` and ``semcache calibrate`` end to end, with the hashing embedder on
synthetic pairs (the real figures are in docs/quality.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from test_quality_fixtures import synthetic_pairs, write_csv

from semcache._cli import main
from semcache.embedders import HashingEmbedder
from semcache.quality import EmbeddingFile, Verifier


@pytest.fixture
def pairs_csv(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "pairs.csv", synthetic_pairs(repeats=6))


def test_eval_sweep_prints_tables_and_writes_json(
    pairs_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "eval.json"
    code = main(
        [
            "eval",
            str(pairs_csv),
            "--embedder",
            "hashing",
            "--sweep",
            "--guards",
            "all",
            "--timing-sample",
            "20",
            "--json",
            str(out),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "cos>=0.850 (semcache default)" in captured.out
    assert "redisvl default" in captured.out
    assert "precision >= 0.95" in captured.out
    assert "+numbers+negation+order" in captured.out
    assert "WARNING" not in captured.out
    assert "replay [" in captured.err  # the progress bar (semcache.ProgressBar)
    assert "100% 384/384" in captured.err
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["gets"] == len(synthetic_pairs(repeats=6))
    assert [r["min_similarity"] for r in data["rows"]][:2] == [0.6, 0.7]
    assert all(r["p50_get_ms"] > 0 for r in data["rows"])
    assert data["timing_mismatches"] == 0
    assert set(data["headline"]["cosine"]) == {"0.95", "0.99"}
    # the shipped default guards (numbers and negation) are a family of their own
    assert set(data["headline"]) == {"cosine", "default", "cosine+numbers+negation+order"}
    for target in ("0.95", "0.99"):
        assert data["headline"]["default"][target]["guards"] == ["default"]
    assert "default (shipped guards)" in captured.out
    assert set(data["curves"]) == {"cosine", "default"}
    assert data["false_hits"] == {}


def test_eval_prints_a_sample_of_false_hits(
    pairs_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "eval.json"
    args = ["eval", str(pairs_csv), "--embedder", "hashing", "--threshold", "0.5"]
    args += ["--timing-sample", "0", "--false-hits", "4", "--json", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    data = json.loads(out.read_text(encoding="utf-8"))
    labels = list(data["false_hits"])
    assert labels[0].startswith("cos>=0.500")  # the --threshold, then the 0.95 headline
    assert all(label.startswith("cos>=") for label in labels)
    assert data["false_hits"][labels[0]]  # the hashing embedder errs at 0.5
    for label, hits in data["false_hits"].items():
        assert len(hits) <= 4
        assert f"false hits at {label}: {len(hits)} sampled (seed 0)" in printed
        for fh in hits:
            assert f"asked:  {fh['query']}" in printed
            assert f"served: {fh['served']}" in printed
    assert main([*args[:-2], "--false-hits", "0"]) == 0
    assert "false hits at" not in capsys.readouterr().out


def test_calibrate_then_eval_on_the_held_out_part(
    pairs_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vfile = tmp_path / "verifier.json"
    cache = tmp_path / "vectors.npz"
    args = ["--embedder", "hashing", "--embedding-cache", str(cache), "--quiet"]
    code = main(
        [
            "calibrate",
            str(pairs_csv),
            "--target-precision",
            "0.9",
            "--out",
            str(vfile),
            "--min-similarity",
            "0.3",
            "--trees",
            "20",
            *args,
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "held out" in captured.out
    assert vfile.stat().st_size < 200_000
    v = Verifier.load(vfile)
    assert v.info["split"]["holdout"] == 0.5
    assert len(EmbeddingFile(HashingEmbedder(), cache)) > 0
    code = main(["eval", str(pairs_csv), "--verifier", str(vfile), "--heldout", *args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "verifier>=" in captured.out
    assert f"{v.info['split']['holdout_pairs']} gets" in captured.out


def test_eval_errors(pairs_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["eval", str(pairs_csv), "--embedder", "hashing", "--quiet"]
    assert main([*base, "--heldout"]) == 1
    assert "--heldout needs --verifier" in capsys.readouterr().err
    assert main([*base, "--guards", "colour"]) == 1
    assert "unknown guard" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "missing.csv"), "--embedder", "hashing"]) == 1
    assert "error" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base, "--threshold", "2"])


def test_plot_without_matplotlib_names_the_extra(
    pairs_csv: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails
    code = main(
        [
            "eval",
            str(pairs_csv),
            "--embedder",
            "hashing",
            "--quiet",
            "--timing-sample",
            "0",
            "--plot",
            str(tmp_path / "curves.png"),
        ]
    )
    assert code == 1
    assert "semcache-engine[plot]" in capsys.readouterr().err


def test_an_embedding_file_refuses_another_embedder(tmp_path: Path) -> None:
    path = tmp_path / "v.npz"
    f = EmbeddingFile(HashingEmbedder(), path)
    first = f.embed(["a b", "c d", "a  B"])
    f.save()
    again = EmbeddingFile(HashingEmbedder(), path)
    assert len(again) == 2
    assert (again.embed(["A b"]) == first[:1]).all()
    from semcache import ConfigurationError

    with pytest.raises(ConfigurationError, match="holds vectors"):
        EmbeddingFile(HashingEmbedder(dim=64), path)
