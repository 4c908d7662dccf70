"""The guards, as :mod:`semcache.quality` exports them. They live in
:mod:`semcache._guards`: the cache applies two of them by default, so they belong to
the serving path, which never imports this package (its replay tools import the
cache)."""

from __future__ import annotations

from .._guards import all_of, default_guards, negation_agrees, numbers_agree, word_order_agrees

__all__ = ["all_of", "default_guards", "negation_agrees", "numbers_agree", "word_order_agrees"]
