"""The ``memoize`` decorator: a function's answers served through ``get_or_put``.

It knows nothing of the cache beyond the two callables it is given (``run`` for sync
functions, ``arun`` for coroutine functions), and keeps the wrapped function's
signature for type checkers (a ``ParamSpec``).
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Awaitable, Callable, Coroutine
from hashlib import blake2b
from typing import Any, ParamSpec, Protocol, overload

from ._checks import check_ttl
from ._errors import InvalidTextError

__all__ = ["AsyncMemoizer", "Memoizer", "NamespaceSpec", "memoize"]

_P = ParamSpec("_P")


class Memoizer(Protocol):
    """What ``SemanticCache.memoize(...)`` returns: a decorator that keeps the wrapped
    function's parameters; the result is the response (str), awaited for a coroutine
    function."""

    @overload
    def __call__(
        self, fn: Callable[_P, Coroutine[Any, Any, Any]]
    ) -> Callable[_P, Coroutine[Any, Any, str]]: ...

    @overload
    def __call__(self, fn: Callable[_P, Any]) -> Callable[_P, str]: ...


class AsyncMemoizer(Protocol):
    """What ``AsyncSemanticCache.memoize(...)`` returns (coroutine functions only)."""

    def __call__(
        self, fn: Callable[_P, Awaitable[Any]]
    ) -> Callable[_P, Coroutine[Any, Any, str]]: ...


NamespaceSpec = str | Callable[..., str] | None


def _namespace_fn(
    fn: Callable[..., Any], sig: inspect.Signature, prompt: str, namespace: NamespaceSpec
) -> Callable[[dict[str, Any]], str]:
    """How to get a call's namespace from its other arguments."""
    if isinstance(namespace, str):
        fixed = namespace
        return lambda others: fixed
    if namespace is None:
        base = f"{fn.__module__}.{fn.__qualname__}"
        if len(base.encode()) > 200:
            base = blake2b(base.encode(), digest_size=16).hexdigest()

        def derived(others: dict[str, Any]) -> str:
            if not others:
                return base
            try:
                text = json.dumps(others, sort_keys=True, separators=(",", ":"), allow_nan=False)
            except (TypeError, ValueError) as exc:
                names = ", ".join(sorted(others))
                raise TypeError(
                    f"memoize cannot derive a namespace from the arguments ({names}) of "
                    f"{fn.__qualname__}: {exc}; pass namespace= (a str or a callable of "
                    "those arguments)"
                ) from None
            return f"{base}:{blake2b(text.encode(), digest_size=12).hexdigest()}"

        return derived
    if not callable(namespace):
        raise TypeError(f"namespace must be a str, a callable or None, got {namespace!r}")
    wanted = inspect.signature(namespace).parameters
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in wanted.values())
    names = [n for n in sig.parameters if n != prompt]
    if not takes_all:
        unknown = [n for n in wanted if n not in names]
        if unknown:
            raise TypeError(
                f"the namespace callable takes {unknown}, which {fn.__qualname__} does not"
            )
        names = [n for n in names if n in wanted]
    chosen = frozenset(names)
    ns_fn = namespace

    def call(others: dict[str, Any]) -> str:
        return ns_fn(**{k: v for k, v in others.items() if k in chosen})

    return call


def memoize(
    fn: Callable[..., Any],
    *,
    prompt: str,
    namespace: NamespaceSpec,
    ttl: float | None,
    run: Callable[..., str] | None,
    arun: Callable[..., Awaitable[str]],
) -> Callable[..., Any]:
    """Wrap ``fn`` so that calls go through ``get_or_put`` (``run`` for a sync ``fn``,
    ``arun`` for a coroutine function); see ``SemanticCache.memoize``.

    Raises:
        TypeError: ``fn`` has no parameter ``prompt``, or is sync while only ``arun``
            is given, or the namespace callable asks for arguments ``fn`` lacks.
    """
    check_ttl(ttl)
    sig = inspect.signature(fn)
    param = sig.parameters.get(prompt)
    if param is None or param.kind in (
        inspect.Parameter.VAR_POSITIONAL,
        inspect.Parameter.VAR_KEYWORD,
    ):
        raise TypeError(f"{fn.__qualname__} has no parameter named {prompt!r} (prompt=)")
    scope = _namespace_fn(fn, sig, prompt, namespace)

    def split(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, str]:
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        others = dict(bound.arguments)
        text = others.pop(prompt)
        if not isinstance(text, str):
            raise InvalidTextError(f"argument {prompt!r} must be a str, got {type(text).__name__}")
        return text, scope(others)

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> str:
            text, ns = split(args, kwargs)
            return await arun(text, lambda: fn(*args, **kwargs), namespace=ns, ttl=ttl)

        return async_wrapper
    if run is None:
        raise TypeError(
            f"AsyncSemanticCache.memoize needs an async function; {fn.__qualname__} is not "
            "(use SemanticCache.memoize for sync functions)"
        )
    sync_run = run

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> str:
        text, ns = split(args, kwargs)
        return sync_run(text, lambda: fn(*args, **kwargs), namespace=ns, ttl=ttl)

    return wrapper
