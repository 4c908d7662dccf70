"""Doors into the cache from the stacks people already use.

* :mod:`semcache.integrations.chat`: what an OpenAI-style chat request means to the
  cache (the matched text, the namespace, whether it may be cached); no dependencies.
* :mod:`semcache.integrations.openai`: httpx transports for the ``openai`` SDK and any
  httpx-based OpenAI-compatible client (extra ``openai``).
* :mod:`semcache.integrations.server`: ``semcache serve``, an OpenAI-compatible caching
  proxy (extra ``serve``).
* :mod:`semcache.integrations.langchain`: a LangChain ``BaseCache`` (extra ``langchain``).
* :mod:`semcache.integrations.litellm`: cached ``completion`` / ``acompletion``
  (extra ``litellm``).

Each adapter module imports its library when it is imported itself; a missing one raises
:class:`~semcache.MissingDependencyError` naming the extra to install. ``import semcache``
never imports any of them. See docs/integrations.md.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .._dist import install_hint
from .._errors import MissingDependencyError
from .chat import ChatKey, ChatPolicy, Uncacheable, chat_key, tenant_of

__all__ = ["ChatKey", "ChatPolicy", "Uncacheable", "chat_key", "require", "tenant_of"]


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import ``module`` for ``what``.

    Raises:
        MissingDependencyError: it is not installed; the message names the extra.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{what} needs the {module!r} package: {install_hint(extra)}"
        ) from exc
