"""How the cosine of two texts' embeddings separates same-meaning from different-meaning
texts, for choosing ``answer_similarity`` (docs/quality.md, "Answers compared by their
embeddings"): on labelled pair files (``text_a,text_b,label``, label 1 = same meaning),
the share of pairs judged "the same" (cosine >= t), the precision of that judgement
(the share of them labelled 1) and its recall (the share of label-1 pairs judged the
same), at a few thresholds. The texts are embedded with the default embedder (int8 ONNX
MiniLM), through an embedding file so that a rerun does not embed them again.

Run:  .venv/bin/python benchmarks/answer_similarity_report.py \
          ../shared/data/eval/qqp.csv:/tmp/quality-emb/qqp-minilm.npz \
          ../shared/data/eval/paws.csv:/tmp/quality-emb/paws-minilm.npz
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from semcache.embedders import default_embedder
from semcache.quality._embedding_cache import EmbeddingFile

THRESHOLDS = (0.8, 0.85, 0.9, 0.92, 0.95, 0.97)


def pairs_of(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    with path.open(newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["text_a"].strip() and r["text_b"].strip()]
    labels = np.array([int(r["label"]) for r in rows])
    return [r["text_a"] for r in rows], [r["text_b"] for r in rows], labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", help="PAIRS.csv:EMBEDDINGS.npz")
    args = parser.parse_args()
    embedder = default_embedder()
    print("| pairs | threshold | judged same | precision | recall |")
    print("|---|---|---|---|---|")
    for spec in args.files:
        csv_path, npz = spec.rsplit(":", 1)
        a, b, labels = pairs_of(Path(csv_path))
        emb = EmbeddingFile(embedder, npz)
        va, vb = emb.embed(a), emb.embed(b)
        emb.save()
        va /= np.linalg.norm(va, axis=1, keepdims=True)
        vb /= np.linalg.norm(vb, axis=1, keepdims=True)
        cos = np.einsum("ij,ij->i", va, vb)
        positive = labels == 1
        name = f"{Path(csv_path).stem} ({len(labels)}, {positive.mean():.0%} same)"
        for t in THRESHOLDS:
            same = cos >= t
            precision = (same & positive).sum() / max(1, same.sum())
            recall = (same & positive).sum() / max(1, positive.sum())
            print(f"| {name} | {t:.2f} | {same.mean():.3f} | {precision:.3f} | {recall:.3f} |")


if __name__ == "__main__":
    main()
