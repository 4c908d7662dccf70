"""The ``semcache serve`` command line (the proxy itself is in :mod:`.server`, imported
only when the command runs)."""

from __future__ import annotations

import argparse
from typing import Any, TextIO
from urllib.parse import urlsplit

from .. import _argtypes as argtypes
from .._errors import ConfigurationError

__all__ = ["add_serve_parser", "run_serve"]


def _upstream(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(
            f"not an http(s) URL: {text!r} (e.g. https://api.openai.com/v1)"
        )
    return text


def _budget(text: str) -> float:
    value = argtypes.number(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError("an error budget in (0, 1), e.g. 0.01")
    return value


def _answer_similarity(text: str) -> float:
    value = argtypes.number(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError("a cosine in (0, 1], e.g. 0.95")
    return value


def add_serve_parser(sub: Any) -> None:
    """Register ``semcache serve`` on the subcommands ``sub``."""
    serve = sub.add_parser(
        "serve",
        help="run an OpenAI-compatible caching proxy in front of an LLM API",
        description=(
            "Serve /v1/chat/completions from the cache and forward everything else to "
            "--upstream (see docs/integrations.md). The API key is forwarded, never stored."
        ),
    )
    serve.add_argument(
        "--upstream",
        required=True,
        type=_upstream,
        help="the API base to forward to, e.g. https://api.openai.com/v1",
    )
    serve.add_argument("--path", help="the cache file (default: in memory)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=argtypes.port, default=8000, help="port to listen on")
    serve.add_argument(
        "--threshold",
        type=argtypes.similarity,
        default=0.85,
        help="cosine similarity a paraphrase needs to be served (default 0.85)",
    )
    serve.add_argument(
        "--tenant-header",
        metavar="HEADER",
        help="keep callers apart by this request header (hashed), e.g. authorization",
    )
    serve.add_argument(
        "--max-temperature",
        type=argtypes.number,
        default=0.5,
        help="cache requests up to this temperature (unset counts as 1.0; default 0.5)",
    )
    serve.add_argument(
        "--cache-tool-calls", action="store_true", help="also store answers that call tools"
    )
    serve.add_argument(
        "--ttl", type=argtypes.number, help="seconds an answer is kept (default: forever)"
    )
    serve.add_argument(
        "--error-budget",
        type=_budget,
        metavar="RATE",
        help=(
            "wrong answers per request allowed (e.g. 0.01): the cache verifies and learns "
            "instead of a fixed --threshold (see docs/quality.md)"
        ),
    )
    serve.add_argument(
        "--answer-similarity",
        type=_answer_similarity,
        metavar="COSINE",
        help=(
            "with --error-budget: compare answers by the cosine of their embeddings "
            "(made at put) instead of their text, e.g. 0.95 (see docs/quality.md)"
        ),
    )
    serve.add_argument(
        "--exact-only",
        action="store_true",
        help="no embedding model: serve exact repeats only",
    )


def run_serve(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Run the proxy until interrupted.

    Raises:
        MissingDependencyError: the ``serve`` extra (or, without --exact-only, an
            embedding model) is not installed.
        ConfigurationError: --answer-similarity without --error-budget or with
            --exact-only.
    """
    if args.answer_similarity is not None and (args.error_budget is None or args.exact_only):
        raise ConfigurationError(
            "--answer-similarity needs --error-budget and an embedding model (not --exact-only)"
        )
    from .._async import AsyncSemanticCache
    from ._flow import core_of
    from .chat import ChatPolicy
    from .server import create_app, run

    embedder = None
    if not args.exact_only:
        from ..embedders import default_embedder

        embedder = default_embedder()
    policy = ChatPolicy(
        max_temperature=args.max_temperature, cache_tool_calls=args.cache_tool_calls
    )
    cache = AsyncSemanticCache(
        args.path,
        embedder,
        similarity_threshold=args.threshold,
        error_budget=args.error_budget,
        answer_similarity=args.answer_similarity,
    )
    try:
        app = create_app(
            cache, args.upstream, policy=policy, tenant_header=args.tenant_header, ttl=args.ttl
        )
        out.write(f"semcache: proxy for {args.upstream} on http://{args.host}:{args.port}/v1\n")
        out.flush()
        run(app, host=args.host, port=args.port)
    finally:
        core_of(cache).close()
    return 0
