"""Counting calls that are in flight at once, for concurrency tests."""

from __future__ import annotations

import anyio


class InFlight:
    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    async def hold(self, seconds: float) -> None:
        """Count this call as in flight for `seconds`."""
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            await anyio.sleep(seconds)
        finally:
            self.now -= 1
