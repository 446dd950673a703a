"""Concurrency helpers for nodes: everything independent is in flight at once."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

import anyio

from backends.errors import CallFailed
from schemas.errors import first_of


async def gather(*coros: Coroutine[Any, Any, Any]) -> tuple[Any, ...]:
    """`anyio.gather`, but a failed call surfaces as itself, not wrapped in an ExceptionGroup:
    callers catch `CallFailed` to drop one candidate, the way they would for a single call."""
    try:
        return await anyio.gather(*coros)
    except* CallFailed as group:
        raise first_of(group, CallFailed) from None
