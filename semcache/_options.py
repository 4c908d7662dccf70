"""The constructor's arguments, checked once into :class:`Options`.

:func:`parameters` is the one definition of the constructor's parameters (names,
kinds, defaults, annotations). ``SemanticCache`` and ``AsyncSemanticCache`` spell the
same signature out for readers and type checkers, and a test checks both against this
one; both hand their arguments to :meth:`Options.check`. Every argument is checked
before the store is opened or created: a bad one raises a semcache error naming it and
leaves no file behind.
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, cast

import numpy as np

from ._checks import (
    check_callable,
    check_choice,
    check_count,
    check_flag,
    check_number,
    check_threshold,
    check_ttl,
    show,
)
from ._deadline import check_timeout
from ._errors import ConfigurationError, InvalidNamespaceError
from ._guards import all_of, negation_agrees, numbers_agree
from ._index import IndexFactory, backend_names, check_index_options
from ._metrics import MetricsHook
from ._progress import ProgressCallback
from ._store import Store
from ._text import check_namespace
from ._types import Hit
from .embedders import Embedder, is_async_embedder

__all__ = ["ConfidenceFn", "Options", "SameAnswer", "Validator", "parameters"]

ConfidenceFn = Callable[[str, Hit], float]
Validator = Callable[[str, Hit], bool]
#: ``same_answer(stored, fresh) -> bool``: whether two answers are the same.
SameAnswer = Callable[[str, str], bool]

_VECTOR_DTYPES: Final = ("float32", "float16")
_MODES: Final = ("single", "shared")


def _reference(
    path: str | os.PathLike[str] | None = None,
    embedder: Embedder | None = None,
    *,
    store: Store | None = None,
    similarity_threshold: float = 0.85,
    default_ttl: float | None = None,
    max_entries: int | None = None,
    namespace_quotas: Mapping[str, int] | None = None,
    confidence_fn: ConfidenceFn | None = None,
    min_confidence: float = 0.5,
    validator: Validator | None = None,
    metrics_hook: MetricsHook | None = None,
    normalize: bool = True,
    index_backend: str | IndexFactory = "auto",
    index_options: Mapping[str, Any] | None = None,
    vector_dtype: Literal["float32", "float16"] = "float32",
    multi_process_mode: Literal["single", "shared"] = "single",
    stale_check_interval: float = 0.0,
    max_query_bytes: int = 32768,
    max_response_bytes: int = 4 * 1048576,
    max_metadata_bytes: int = 65536,
    embed_timeout: float | None = None,
    clock: Callable[[], float] = time.time,
    progress: ProgressCallback | None = None,
    guards: Validator | Literal["default"] | None = "default",
    error_budget: float | None = None,
    same_answer: SameAnswer | None = None,
    answer_similarity: float | None = None,
    answer_support: bool = True,
    answer_model: bool = True,
) -> None:
    """The constructor's parameters (the body is never run)."""


def parameters() -> list[inspect.Parameter]:
    """The cache constructor's parameters, as both caches must declare them."""
    return list(inspect.signature(_reference).parameters.values())


_NAMES: Final = tuple(p.name for p in parameters())


@dataclass(frozen=True, slots=True)
class Options:
    """Every constructor argument, checked (see :meth:`check`); the names are the
    parameters' where the value is the same, else what the check made of it."""

    path: str | os.PathLike[str] | None
    embedder: Embedder | None
    store: Store | None
    similarity_threshold: float
    default_ttl: float | None
    max_entries: int | None
    namespace_quotas: dict[str, int]
    confidence_fn: ConfidenceFn | None
    min_confidence: float
    validator: Validator | None
    metrics_hook: MetricsHook | None
    normalize: bool
    index_backend: str | IndexFactory
    index_options: Mapping[str, Any]
    dtype: np.dtype[Any]
    multi_process_mode: Literal["single", "shared"]
    stale_check_interval: float
    max_query_bytes: int
    max_response_bytes: int
    max_metadata_bytes: int
    embed_timeout: float | None
    clock: Callable[[], float]
    progress: ProgressCallback | None
    guards: Validator | None
    error_budget: float | None
    same_answer: SameAnswer | None
    answer_similarity: float | None
    answer_support: bool
    answer_model: bool

    @property
    def shared(self) -> bool:
        return self.multi_process_mode == "shared"

    @property
    def store_search(self) -> bool:
        """``index_backend="store"``: the store answers Layer 2 itself."""
        return self.index_backend == "store"

    @classmethod
    def from_call(cls, arguments: Mapping[str, Any], *, async_embedder: bool) -> Options:
        """:meth:`check` the constructor's arguments as ``locals()`` holds them."""
        return cls.check(async_embedder=async_embedder, **{n: arguments[n] for n in _NAMES})

    @classmethod
    def check(cls, *, async_embedder: bool = False, **args: Any) -> Options:
        """Check the constructor's arguments (``async_embedder``: whether an
        AsyncEmbedder is allowed: only the async cache may drive one).

        Raises:
            The constructor's errors for bad arguments (see ``SemanticCache``).
        """
        a = {p.name: p.default for p in parameters()}
        a.update(args)
        path, store, embedder = a["path"], a["store"], a["embedder"]
        _check_path(path)
        if store is not None and not isinstance(store, Store):
            raise ConfigurationError(f"store must be a semcache Store, got {show(store)}")
        if path is not None and store is not None:
            raise ConfigurationError("pass either path or store, not both")
        if is_async_embedder(embedder) and not async_embedder:
            raise ConfigurationError(
                "this embedder's embed is a coroutine function; use AsyncSemanticCache"
            )
        embed_timeout = check_timeout(a["embed_timeout"])
        if embedder is not None and not isinstance(embedder, Embedder):
            raise ConfigurationError(
                "embedder must have dim, fingerprint and embed(texts) (see semcache.embedders)"
            )
        threshold = check_threshold(a["similarity_threshold"])
        default_ttl = check_ttl(a["default_ttl"], "default_ttl")
        max_entries = a["max_entries"]
        if max_entries is not None:
            max_entries = check_count(max_entries, "max_entries")
        quotas = _check_quotas(a["namespace_quotas"])
        for name in ("confidence_fn", "validator", "metrics_hook", "progress", "same_answer"):
            check_callable(a[name], name)
        min_confidence = check_number(a["min_confidence"], "min_confidence", ConfigurationError)
        normalize = check_flag(a["normalize"], "normalize", ConfigurationError)
        check_choice(a["vector_dtype"], "vector_dtype", _VECTOR_DTYPES)
        check_choice(a["multi_process_mode"], "multi_process_mode", _MODES)
        interval = check_number(
            a["stale_check_interval"], "stale_check_interval", ConfigurationError
        )
        if interval < 0.0:
            raise ConfigurationError(
                f"stale_check_interval must be seconds >= 0, got {show(a['stale_check_interval'])}"
            )
        max_query = check_count(a["max_query_bytes"], "max_query_bytes")
        max_response = check_count(a["max_response_bytes"], "max_response_bytes")
        max_metadata = check_count(a["max_metadata_bytes"], "max_metadata_bytes")
        clock = a["clock"]
        if not callable(clock):
            raise ConfigurationError(
                f"clock must be a callable returning seconds, got {show(clock)}"
            )
        backend, index_options = _check_index_config(
            a["index_backend"], a["index_options"], a["vector_dtype"]
        )
        return cls(
            path=path,
            embedder=embedder,
            store=store,
            similarity_threshold=threshold,
            default_ttl=default_ttl,
            max_entries=max_entries,
            namespace_quotas=quotas,
            confidence_fn=a["confidence_fn"],
            min_confidence=min_confidence,
            validator=a["validator"],
            metrics_hook=a["metrics_hook"],
            normalize=normalize,
            index_backend=backend,
            index_options=index_options,
            dtype=np.dtype(a["vector_dtype"]),
            multi_process_mode=a["multi_process_mode"],
            stale_check_interval=interval,
            max_query_bytes=max_query,
            max_response_bytes=max_response,
            max_metadata_bytes=max_metadata,
            embed_timeout=embed_timeout,
            clock=clock,
            progress=a["progress"],
            guards=_resolve_guards(a["guards"]),
            error_budget=_check_budget(a["error_budget"]),
            same_answer=a["same_answer"],
            answer_similarity=_check_answer_similarity(a),
            answer_support=check_flag(a["answer_support"], "answer_support", ConfigurationError),
            answer_model=check_flag(a["answer_model"], "answer_model", ConfigurationError),
        )


def _check_path(path: object) -> None:
    if path is None:
        return
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigurationError(f"path must be a str or os.PathLike, got {show(path)}")
    name = os.fspath(path)
    if not isinstance(name, str) or "\x00" in name:
        raise ConfigurationError(f"path must be a file name without NUL, got {show(path)}")


def _check_budget(budget: object) -> float | None:
    """``error_budget``: None, or wrong answers per get in (0, 1)."""
    if budget is None:
        return None
    value = check_number(budget, "error_budget", ConfigurationError)
    if not 0.0 < value < 1.0:
        raise ConfigurationError(f"error_budget must be in (0, 1), got {show(budget)}")
    return value


def _check_answer_similarity(a: Mapping[str, Any]) -> float | None:
    """``answer_similarity``: None, or a cosine in (0, 1] with an embedder to make the
    answers' embeddings, an error budget to compare them for, and no ``same_answer``."""
    value = a["answer_similarity"]
    if value is None:
        return None
    similar = check_number(value, "answer_similarity", ConfigurationError)
    if not 0.0 < similar <= 1.0:
        raise ConfigurationError(f"answer_similarity must be in (0, 1], got {show(value)}")
    if a["same_answer"] is not None:
        raise ConfigurationError(
            "answer_similarity and same_answer both say how answers are compared; pass one"
        )
    if a["embedder"] is None:
        raise ConfigurationError(
            "answer_similarity compares answers by their embeddings and needs an embedder"
        )
    if a["error_budget"] is None:
        raise ConfigurationError(
            "answer_similarity compares answers for the error budget; pass error_budget too"
        )
    return similar


def _check_quotas(quotas: object) -> dict[str, int]:
    if quotas is None:
        return {}
    if not isinstance(quotas, Mapping):
        raise ConfigurationError(
            f"namespace_quotas must be a mapping of namespace to count, got {show(quotas)}"
        )
    out = {}
    for ns, n in quotas.items():
        try:
            name = check_namespace(ns)
        except InvalidNamespaceError as exc:
            raise InvalidNamespaceError(f"namespace_quotas: {exc}") from None
        out[name] = check_count(n, f"namespace_quotas[{name!r}]")
    return out


def _check_index_config(
    backend: object, options: object, dtype: str
) -> tuple[str | IndexFactory, dict[str, Any]]:
    """``index_backend`` and ``index_options``, checked before anything is opened: the
    dimension may not be known yet (see :func:`check_index_options`)."""
    if not callable(backend) and (
        not isinstance(backend, str) or backend not in (*backend_names(), "store")
    ):
        raise ConfigurationError(
            f"unknown index_backend {show(backend)}; expected one of {backend_names()}, "
            '"store" or a factory'
        )
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise ConfigurationError(f"index_options must be a mapping, got {show(options)}")
    opts = dict(options)
    check_index_options(backend, np.dtype(dtype), opts)
    return cast("str | IndexFactory", backend), opts


def _resolve_guards(guards: object) -> Validator | None:
    """The ``guards`` argument as a validator (None: no guards)."""
    if guards is None:
        return None
    if isinstance(guards, str) and guards == "default":
        return all_of(numbers_agree, negation_agrees)
    if isinstance(guards, str) or not callable(guards):
        raise ConfigurationError(
            f"guards must be 'default', None or a callable, got {show(guards)}"
        )
    return cast(Validator, guards)
