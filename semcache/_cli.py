"""The ``semcache`` command: ``demo``, ``stats PATH``, ``ls PATH``, ``vacuum PATH``, and
for hit quality ``eval PAIRS.csv`` and ``calibrate PAIRS.csv`` (see
:mod:`semcache.quality`).

``stats`` and ``ls`` only read (:mod:`semcache._inspect`): no lock, no index, no write,
safe beside a running application. ``vacuum`` opens the file as a cache and refuses,
saying which process holds it, when an application owns it in single mode. Long work
(loading the model, an index, embedding) is drawn on stderr by one
:class:`~semcache.ProgressBar`.

``semcache demo`` shows what the cache is for: a built-in session of user questions
(repeats, paraphrases and look-alikes that mean something else) goes to a simulated LLM
through a SQLite-backed cache with the bundled all-MiniLM-L6-v2 model, and every call
is printed (exact hit, semantic hit with its similarity, or miss) with its latency,
then a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from hashlib import blake2b
from pathlib import Path
from typing import Any, Literal, TextIO

from . import _argtypes as argtypes
from ._cache import SemanticCache
from ._demo_data import ANSWERS, SESSION
from ._dist import DISTRIBUTION, VERSION
from ._errors import ConfigurationError, SemanticCacheError, StoreLockedError
from ._inspect import CacheFile, lock_holder
from ._progress import ProgressBar, ProgressCallback
from ._text import normalize_text
from ._types import MetricsEvent
from .integrations._serve_cli import add_serve_parser, run_serve
from .quality._commands import add_calibrate_parser, add_eval_parser, run_calibrate, run_eval

__all__ = ["SimulatedLLM", "main"]

_DEFAULT_LATENCY = 0.8
_NAMESPACE = "demo"
#: Seconds opening a cache (loading or rebuilding its index) takes before it is drawn.
_QUIET_OPEN = 0.5


class SimulatedLLM:
    """A stand-in for an LLM: answers the demo's questions, takes a realistic time.

    Each prompt's latency is fixed by its text (between 0.55 and 1.45 times
    ``mean_latency``), so that runs are reproducible; ``sleep`` is injected so that
    tests never wait.
    """

    def __init__(self, mean_latency: float, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.mean_latency = mean_latency
        self.calls = 0
        self._sleep = sleep
        self._intents = {normalize_text(q): intent for q, intent in SESSION}

    def intent(self, prompt: str) -> str | None:
        """The built-in intent ``prompt`` asks about, if it is one of the session's."""
        return self._intents.get(normalize_text(prompt))

    def latency(self, prompt: str) -> float:
        """Seconds a call with ``prompt`` takes."""
        digest = blake2b(normalize_text(prompt).encode(), digest_size=8).digest()
        u = int.from_bytes(digest, "big") / 2.0**64
        return self.mean_latency * (0.55 + 0.9 * u)

    def __call__(self, prompt: str) -> str:
        self.calls += 1
        delay = self.latency(prompt)
        if delay > 0:
            self._sleep(delay)
        intent = self.intent(prompt)
        if intent is not None:
            return ANSWERS[intent]
        return f"(simulated LLM) An answer to: {prompt.strip()}"


@dataclass(frozen=True)
class _Call:
    question: str
    layer: str | None  # "exact", "semantic" or None for a miss
    similarity: float | None  # of the hit, or of the best candidate of a miss
    reason: str | None
    latency: float
    avoided: float  # the LLM time a hit saved
    wrong: bool
    response: str


def _ms(seconds: float) -> str:
    ms = seconds * 1000.0
    if ms < 10:
        return f"{ms:.2f} ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    return f"{seconds:.2f} s"


def _ask(
    cache: SemanticCache,
    llm: SimulatedLLM,
    question: str,
    intent: str | None,
    events: list[MetricsEvent],
) -> _Call:
    events.clear()
    t0 = time.perf_counter()
    hit = cache.get(question, namespace=_NAMESPACE)
    if hit is None:
        response = llm(question)
        cache.put(question, response, namespace=_NAMESPACE)
    else:
        response = hit.response
    latency = time.perf_counter() - t0
    event = next((e for e in events if e.kind == "get"), None)
    if hit is not None:
        served = llm.intent(hit.query)
        wrong = intent is not None and served is not None and served != intent
        return _Call(
            question,
            hit.layer,
            hit.similarity,
            None,
            latency,
            llm.latency(question),
            wrong,
            response,
        )
    return _Call(
        question,
        None,
        None if event is None else event.similarity,
        None if event is None else event.reason,
        latency,
        0.0,
        False,
        response,
    )


def _line(n: int, call: _Call, threshold: float) -> str:
    if call.layer == "exact":
        result = "hit  exact"
    elif call.layer == "semantic":
        result = f"hit  semantic {call.similarity:.3f}"
    elif call.similarity is not None:
        result = f"miss (best {call.similarity:.3f})"
    else:
        result = "miss"
    flag = "  <-- WRONG ANSWER" if call.wrong else ""
    return f"{n:3d}  {result:<22} {_ms(call.latency):>9}  {call.question}{flag}"


def _summary(calls: Sequence[_Call], llm_calls: int, threshold: float) -> list[str]:
    hits = [c for c in calls if c.layer is not None]
    misses = [c for c in calls if c.layer is None]
    exact = sum(c.layer == "exact" for c in hits)
    n = len(calls)
    rate = len(hits) / n if n else 0.0
    lines = [
        "",
        "summary",
        f"  calls            {n}",
        f"  hits             {len(hits)} ({rate:.1%}): {exact} exact, {len(hits) - exact} semantic",
        f"  misses           {len(misses)}",
        f"  LLM calls        {llm_calls} made, {n - llm_calls} saved",
    ]
    if hits:
        lines.append(f"  latency p50 hit  {_ms(statistics.median(c.latency for c in hits))}")
    if misses:
        lines.append(f"  latency p50 miss {_ms(statistics.median(c.latency for c in misses))}")
    avoided = sum(c.avoided for c in hits)
    overhead = sum(c.latency for c in hits)
    lines.append(
        f"  time saved       {max(0.0, avoided - overhead):.1f} s "
        f"(LLM time avoided {avoided:.1f} s, cache time on hits {overhead:.2f} s)"
    )
    wrong = sum(c.wrong for c in calls)
    lines.append(f"  wrong answers    {wrong} (hits answering a different question)")
    return lines


def _demo_embedder() -> Any:
    """The demo's embedder, not loaded yet (:func:`~semcache.embedders.default_embedder`)."""
    from .embedders import default_embedder

    # One thread: the lowest and steadiest latency for one query at a time.
    return default_embedder(threads=1)


def _load_model(embedder: Any, progress: ProgressCallback) -> None:
    """Load the embedder's model now, drawing its progress (embedders without a
    ``load`` method load nothing up front)."""
    load = getattr(embedder, "load", None)
    if callable(load):
        load(progress=progress)


def _check_cache_path(path: str) -> None:
    """Refuse a ``--path`` the demo cannot use, before any model is loaded.

    Raises:
        ConfigurationError: the folder is missing or not writable, the path is a
            directory, a file that is not a semcache cache, or a cache another process
            holds.
    """
    target = Path(path)
    parent = target.absolute().parent
    if not parent.is_dir():
        raise ConfigurationError(f"--path {path}: the folder {parent} does not exist")
    if target.is_dir():
        raise ConfigurationError(
            f"--path {path} is a directory; name a file in it, e.g. {target / 'demo.sqlite'}"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigurationError(
            f"--path {path}: the folder {parent} is not writable (the cache keeps its "
            "lock file and index snapshot beside the file)"
        )
    if not target.exists():
        return
    if not target.is_file():
        raise ConfigurationError(f"--path {path} is not a regular file")
    if not os.access(target, os.R_OK | os.W_OK):
        raise ConfigurationError(f"--path {path} is not readable and writable")
    if target.stat().st_size == 0:
        return  # an empty file: SQLite makes a new database of it
    try:
        CacheFile(path)
    except (SemanticCacheError, OSError) as exc:
        raise ConfigurationError(
            f"--path {path} is not a semcache cache file ({exc}); name a new file"
        ) from exc
    holder = lock_holder(path)
    if holder is not None:  # the demo owns its file (single mode)
        raise ConfigurationError(
            f"--path {path} is open in another process: {holder.describe()}; close it "
            "or name another file"
        )


def _check_cache_embedder(path: str, embedder: Any) -> None:
    """Refuse a cache file built with another embedder before its model is loaded.

    Raises:
        ConfigurationError: the file records another embedder's fingerprint.
    """
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        return
    recorded = CacheFile(path).info(time.time()).fingerprint
    if recorded is not None and recorded != embedder.fingerprint:
        raise ConfigurationError(
            f"--path {path} was built with the embedder {recorded!r}, not the demo's "
            f"{embedder.fingerprint!r}; name another file"
        )


def _cmd_demo(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .embedders._default import default_embedder_kind

    threshold: float = args.threshold
    temp_dir = None
    if args.path is None:
        temp_dir = tempfile.TemporaryDirectory(prefix="semcache-demo-")
        path = str(Path(temp_dir.name) / "cache.sqlite")
        where = f"{path} (temporary; pass --path to keep it)"
    else:
        path = args.path
        where = path
        _check_cache_path(path)
    llm = SimulatedLLM(args.llm_latency)
    out.write("semcache demo: a semantic cache in front of a (simulated) LLM\n")
    out.write(f"  cache file  {where}\n")
    runtime = {"onnx": "int8 on onnxruntime", "st": "sentence-transformers"}
    kind = default_embedder_kind()
    out.write(
        f"  embedder    all-MiniLM-L6-v2 ({runtime[kind]}), similarity threshold {threshold}\n"
    )
    if args.llm_latency > 0:
        out.write(f"  LLM         simulated, about {args.llm_latency:g} s a call\n\n")
    else:
        out.write("  LLM         simulated, answering at once (--llm-latency 0)\n\n")
    out.flush()
    try:
        embedder = _demo_embedder()
        if args.path is not None:
            _check_cache_embedder(path, embedder)
        with ProgressBar(err) as bar:
            _load_model(embedder, bar)
        events: list[MetricsEvent] = []
        with ProgressBar(err, delay=_QUIET_OPEN) as bar:
            cache = SemanticCache(
                path,
                embedder,
                similarity_threshold=threshold,
                metrics_hook=events.append,
                progress=bar,
            )
        with cache:
            calls: list[_Call] = []
            out.write("  #  result                   latency  question\n")
            questions: Iterable[tuple[str, str | None]]
            questions = _typed_questions() if args.interactive else SESSION
            for question, intent in questions:
                call = _ask(cache, llm, question, intent, events)
                calls.append(call)
                out.write(_line(len(calls), call, threshold) + "\n")
                if args.interactive:
                    out.write(f"     {call.response}\n")
                out.flush()
            for line in _summary(calls, llm.calls, threshold):
                out.write(line + "\n")
            if args.path is not None:
                out.write(f"\nThe cache is kept in {path}: run the demo again to hit it.\n")
    finally:
        if temp_dir is not None:
            temp_dir.cleanup()
    return 0


def _typed_questions() -> Iterable[tuple[str, str | None]]:
    interactive = sys.stdin.isatty()
    if interactive:
        sys.stdout.write("Type a question (an empty line or Ctrl-D ends):\n")
    while True:
        if interactive:
            sys.stdout.write("> ")
            sys.stdout.flush()
        line = sys.stdin.readline()
        if not line or not line.strip():
            return
        yield line.strip(), None


def _cmd_stats(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    info = CacheFile(args.path).info(time.time()).to_json()
    if args.json:
        out.write(json.dumps(info, indent=2, sort_keys=True) + "\n")
        return 0
    out.write(f"cache        {args.path} ({info['file_bytes'] / 1048576:.2f} MiB)\n")
    out.write(f"entries      {info['total_entries']}\n")
    for ns, count in sorted(info["entries"].items()):
        out.write(f"  {ns:<16} {count}\n")
    if info["expired_entries"]:
        out.write(f"expired      {info['expired_entries']} (semcache vacuum removes them)\n")
    if info["dim"] is None:
        out.write("vectors      none yet\n")
    else:
        out.write(f"vectors      dim {info['dim']}, {info['vector_dtype']}\n")
    out.write(f"embedder     {info['fingerprint'] or '(none recorded)'}\n")
    snap = info["index_snapshot"]
    if snap is None:
        out.write("index        no snapshot (built from the entries when a cache opens)\n")
    else:
        out.write(
            f"index        snapshot {snap['bytes'] / 1048576:.2f} MiB, backend "
            f"{snap['backend'] or '?'}, change {snap['seq']} of {info['seq']}\n"
        )
    return 0


def _when(t: float | None) -> str:
    if t is None:
        return "-"
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _cmd_ls(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    cache = CacheFile(args.path)
    limit = None if args.limit == 0 else args.limit
    entries = cache.entries(args.namespace, limit)
    total = cache.count(args.namespace)
    now = time.time()
    if args.json:
        data = {
            "path": args.path,
            "namespace": args.namespace,
            "total": total,
            "entries": [
                {**e.to_json(), "expired": e.expires_at is not None and e.expires_at <= now}
                for e in entries
            ],
        }
        out.write(json.dumps(data, indent=2) + "\n")
        return 0
    out.write(
        f"{'id':>6}  {'namespace':<12} {'created (UTC)':<19}  {'expires (UTC)':<19}  "
        f"{'last used (UTC)':<19}  {'bytes':>8}  query\n"
    )
    for e in entries:
        query = " ".join(e.query.split())
        if len(query) > 60:
            query = query[:59] + "\u2026"
        expires = _when(e.expires_at)
        if e.expires_at is not None and e.expires_at <= now:
            expires = "expired"
        out.write(
            f"{e.id:>6}  {e.namespace[:12]:<12} {_when(e.created_at):<19}  {expires:<19}  "
            f"{_when(e.last_access):<19}  {e.size:>8}  {query}\n"
        )
    scope = "" if args.namespace is None else f" in namespace {args.namespace!r}"
    more = "" if len(entries) >= total else "; --limit N shows more, --limit 0 all"
    out.write(f"{len(entries)} of {total} entries{scope}, newest first{more}\n")
    return 0


def _locked_message(path: str, holder: str) -> str:
    return (
        f"{path} is open in another process: {holder}. A cache in single mode owns its "
        "file, so vacuum cannot run beside it: close that application and run "
        "`semcache vacuum` again, or call cache.vacuum() from inside it. Nothing was changed."
    )


def _cmd_vacuum(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    path = args.path
    CacheFile(path)  # a semcache file (read only): never turn another file into one
    holder = lock_holder(path)
    if holder is not None and holder.mode == "single":
        raise StoreLockedError(_locked_message(path, holder.describe()))
    # Shared-mode applications replay the change log: vacuum joins them in shared mode.
    mode: Literal["single", "shared"] = "shared" if holder is not None else "single"
    try:
        with ProgressBar(err, delay=_QUIET_OPEN) as bar:
            cache = SemanticCache(path, multi_process_mode=mode, progress=bar)
    except StoreLockedError as exc:  # taken between the probe and the open
        now = lock_holder(path)
        raise StoreLockedError(
            _locked_message(path, now.describe() if now is not None else "a cache holds it")
        ) from exc
    with cache:
        removed = cache.vacuum(namespace=args.namespace)
        left = cache.stats()["total_entries"]
    out.write(f"removed {removed} expired entries; {left} entries left\n")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="semcache", description="A semantic cache for LLM applications."
    )
    parser.add_argument("--version", action="version", version=f"{DISTRIBUTION} {VERSION}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        help="send a session of questions through the cache to a simulated LLM",
        description=(
            "Send a built-in session of user questions (repeats, paraphrases and "
            "look-alikes) to a simulated LLM through a SQLite cache with the bundled "
            "all-MiniLM-L6-v2 model; print every call and a summary."
        ),
    )
    demo.add_argument(
        "--path",
        help="the cache file, kept for the next run (default: a temporary one); a new "
        "file or an existing semcache cache, in a writable folder",
    )
    demo.add_argument(
        "--threshold",
        type=argtypes.similarity,
        default=0.85,
        help="cosine similarity a paraphrase needs to be served (default 0.85)",
    )
    demo.add_argument(
        "--llm-latency",
        type=argtypes.seconds,
        default=_DEFAULT_LATENCY,
        metavar="SECONDS",
        help=f"the simulated LLM's mean latency (default {_DEFAULT_LATENCY}; 0: no wait)",
    )
    demo.add_argument(
        "-i",
        "--interactive",
        action="store_true",
        help="type the questions instead of the built-in session",
    )
    stats = sub.add_parser(
        "stats",
        help="show what a cache file holds (read only)",
        description=(
            "Show a SQLite cache file's entries per namespace, expired entries, vector "
            "settings, embedder and index snapshot. Reads only: takes no lock, loads no "
            "index and writes nothing, so it is safe beside a running application."
        ),
    )
    stats.add_argument("path", help="the cache file")
    stats.add_argument("--json", action="store_true", help="print JSON")
    ls = sub.add_parser(
        "ls",
        help="list a cache file's entries (read only)",
        description=(
            "List the entries of a SQLite cache file, newest first: id, namespace, when "
            "it was created, expires and was last used (UTC), its size in bytes (query, "
            "response, metadata and vector) and its query. Reads only, like stats."
        ),
    )
    ls.add_argument("path", help="the cache file")
    ls.add_argument("--namespace", help="only this namespace")
    ls.add_argument(
        "--limit",
        type=argtypes.count,
        default=20,
        metavar="K",
        help="show at most K entries (default 20; 0: all)",
    )
    ls.add_argument("--json", action="store_true", help="print JSON (full queries)")
    vacuum = sub.add_parser(
        "vacuum",
        help="delete expired entries from a cache file",
        description=(
            "Delete the expired entries of a SQLite cache file and compact its index. "
            "The file must not be open in single mode by an application (vacuum then "
            "says which process holds it and changes nothing: close it, or call "
            "cache.vacuum() in it); beside shared-mode applications it runs in shared mode."
        ),
    )
    vacuum.add_argument("path", help="the cache file")
    vacuum.add_argument("--namespace", help="only this namespace")
    add_eval_parser(sub)
    add_calibrate_parser(sub)
    add_serve_parser(sub)
    return parser


_COMMANDS: dict[str, Callable[[argparse.Namespace, TextIO, TextIO], int]] = {
    "demo": _cmd_demo,
    "stats": _cmd_stats,
    "ls": _cmd_ls,
    "vacuum": _cmd_vacuum,
    "eval": run_eval,
    "calibrate": run_calibrate,
    "serve": run_serve,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``semcache`` command; returns the exit status (0 ok, 1 error, 2 usage)."""
    args = _parser().parse_args(argv)
    out, err = sys.stdout, sys.stderr
    try:
        return _COMMANDS[args.command](args, out, err)
    except ImportError as exc:
        err.write(f"semcache: {exc}\n")
        return 1
    except (SemanticCacheError, OSError) as exc:
        err.write(f"semcache: error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        err.write("\nsemcache: interrupted\n")
        return 130
