"""Shared fixtures: anyio on asyncio, a private criteria cache per test, quiet logging."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Each test gets its own criteria cache, so no test sees another's selections."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("DRPO_CACHE_DIR", str(cache))
    return cache
