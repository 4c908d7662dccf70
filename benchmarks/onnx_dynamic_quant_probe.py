"""What real int8 arithmetic would give the default embedder: onnxruntime's dynamic
quantization of the same graph (int8 MatMuls), beside the shipped model (int8 storage,
float32 arithmetic), on one thread: single-query latency and how far the vectors move.

Not part of the package: it needs the ``onnx`` package (``pip install onnx``), which
semcache does not depend on. The figures are in docs/embedders.md.

Run:  .venv/bin/python benchmarks/onnx_dynamic_quant_probe.py ../shared/data/eval/qqp.csv \
          --texts 300 [--per-tensor]
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import QuantType, quantize_dynamic

from semcache.embedders import OnnxEmbedder


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pairs", type=Path)
    ap.add_argument("--texts", type=int, default=300)
    ap.add_argument("--per-tensor", action="store_true", help="per-tensor weight scales")
    args = ap.parse_args()
    texts: list[str] = []
    with args.pairs.open(newline="") as f:
        for row in csv.DictReader(f):
            texts.append(row["text_a"])
            if len(texts) >= args.texts:
                break

    shipped = OnnxEmbedder(threads=1)
    shipped.load()
    with tempfile.TemporaryDirectory() as tmp:
        folded = Path(tmp) / "fp32.onnx"
        quantized = Path(tmp) / "q8.onnx"
        # Let onnxruntime fold the stored int8 weights back to float32, then quantize.
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(folded)
        ort.InferenceSession(str(shipped.model_path), options, providers=["CPUExecutionProvider"])
        quantize_dynamic(
            str(folded),
            str(quantized),
            weight_type=QuantType.QInt8,
            per_channel=not args.per_tensor,
        )
        q8 = session(quantized)
        tokenizer = shipped._tokenizer

        def embed_q8(text: str) -> np.ndarray:
            enc = tokenizer.encode_batch([text])
            ids = np.array([e.ids for e in enc], dtype=np.int64)
            mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            (hidden,) = q8.run(["last_hidden_state"], feed)
            pooled = (hidden * mask[:, :, None]).sum(1) / mask.sum(1, keepdims=True)
            return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)

        rows = {"shipped": [], "dynamic int8": []}
        a, b = [], []
        for text in texts:
            t = time.perf_counter()
            a.append(shipped.embed([text]))
            rows["shipped"].append(time.perf_counter() - t)
            t = time.perf_counter()
            b.append(embed_q8(text))
            rows["dynamic int8"].append(time.perf_counter() - t)
    cos = (np.concatenate(a) * np.concatenate(b)).sum(axis=1)
    for name, times in rows.items():
        ms = np.asarray(times) * 1e3
        print(f"{name:>13}: min {ms.min():.2f} ms, p50 {np.median(ms):.2f} ms")
    print(f"cosine(shipped, dynamic int8): min {cos.min():.5f}, median {np.median(cos):.5f}")


if __name__ == "__main__":
    main()
