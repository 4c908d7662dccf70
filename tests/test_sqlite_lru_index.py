"""Recency indexes exist only once a limit needs them (they cost every put)."""

from __future__ import annotations

from pathlib import Path

import apsw

from semcache import SemanticCache


def indexes(path: Path) -> set[str]:
    conn = apsw.Connection(str(path))
    try:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall()
        return {str(name) for (name,) in rows if not str(name).startswith("sqlite_")}
    finally:
        conn.close()


def test_lru_indexes_are_created_by_the_first_limited_put(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    with SemanticCache(str(path)) as cache:
        cache.put_many([f"q{i}" for i in range(50)], ["r"] * 50)
    # (the schema's own: expiry, and the error budget's outcome log by namespace)
    assert indexes(path) == {"entries_expiry", "entries_ns_expiry", "quality_outcomes_ns"}
    with SemanticCache(str(path), namespace_quotas={"default": 40}) as cache:
        cache.put("one more", "r")
        assert cache.stats()["total_entries"] == 40
    assert "entries_ns_lru" in indexes(path)
    assert "entries_lru" not in indexes(path)
    with SemanticCache(str(path), max_entries=10) as cache:
        cache.put("and another", "r")
        assert cache.stats()["total_entries"] == 10
        assert cache.get("and another") is not None
    assert {"entries_lru", "entries_ns_lru"} <= indexes(path)
