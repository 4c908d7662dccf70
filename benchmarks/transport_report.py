"""What the openai-SDK door costs, measured in one run: the official ``openai`` client
with no cache against a canned in-process response (the SDK alone), against the local
test upstream (a real HTTP round trip), and through ``CachingTransport`` for an exact hit
and for a paraphrase (semantic hit; the default ONNX model embeds it each time).

Run:  PYTHONPATH=. .venv/bin/python benchmarks/transport_report.py --calls 300
(needs the ``openai`` and ``onnx`` extras; uses tests/chat_upstream.py, no network)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import openai

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from chat_upstream import running_upstream

from semcache import OnnxEmbedder, SemanticCache
from semcache.integrations.openai import CachingTransport

Q = "What is the capital of France?"
PARAPHRASE = "What's the capital city of France?"


def _timed(call: Callable[[], object], n: int) -> str:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    times.sort()
    p99 = times[max(0, int(len(times) * 0.99) - 1)]
    return f"{statistics.median(times) * 1e3:.2f} ms | {p99 * 1e3:.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=300)
    n = parser.parse_args().calls
    canned = json.dumps(
        {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "hi"},
                    "finish_reason": "stop",
                }
            ],
        }
    ).encode()

    def reply(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=canned, headers={"content-type": "application/json"})

    def ask(client: openai.OpenAI, text: str) -> object:
        return client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": text}], temperature=0
        )

    rows = []
    sdk = openai.OpenAI(
        base_url="http://sdk.invalid/v1",
        api_key="k",
        http_client=httpx.Client(transport=httpx.MockTransport(reply)),
    )
    rows.append(("openai SDK alone (canned response)", _timed(lambda: ask(sdk, Q), n)))
    with running_upstream() as upstream, SemanticCache(embedder=OnnxEmbedder(threads=1)) as cache:
        plain = openai.OpenAI(base_url=upstream.url, api_key="k", max_retries=0)
        rows.append(("no cache: local HTTP upstream", _timed(lambda: ask(plain, Q), n)))
        cached = openai.OpenAI(
            base_url=upstream.url,
            api_key="k",
            max_retries=0,
            http_client=httpx.Client(transport=CachingTransport(cache)),
        )
        ask(cached, Q)
        calls = upstream.chat_calls
        rows.append(("CachingTransport, exact hit", _timed(lambda: ask(cached, Q), n)))
        rows.append(
            ("CachingTransport, paraphrase (embeds)", _timed(lambda: ask(cached, PARAPHRASE), n))
        )
        assert upstream.chat_calls == calls, "a hit reached the upstream"
    print("| call | p50 | p99 |\n|---|---|---|")
    for name, cells in rows:
        print(f"| {name} | {cells} |")


if __name__ == "__main__":
    main()
