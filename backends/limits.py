"""Per-backend request limits beyond the concurrency cap: requests and tokens per minute, and a
concurrency that halves on 429s and grows back one step at a time (AIMD)."""

from __future__ import annotations

import time
from collections import deque

import anyio

from telemetry.logs import get_logger

log = get_logger("drpo.limits")


class MinuteWindow:
    """At most `limit` units (requests or tokens) in any sliding 60 s; waits until there is room."""

    def __init__(self, limit: int, *, clock=time.monotonic) -> None:  # type: ignore[no-untyped-def]
        self.limit = limit
        self._clock = clock
        self._spent: deque[tuple[float, int]] = deque()

    def _used(self, now: float) -> int:
        while self._spent and now - self._spent[0][0] >= 60.0:
            self._spent.popleft()
        return sum(cost for _, cost in self._spent)

    def wait_s(self, cost: int) -> float:
        """Seconds until `cost` more units fit (0 when they fit now)."""
        now = self._clock()
        used = self._used(now)
        if used + cost <= self.limit or not self._spent:
            return 0.0
        freed, target = 0, used + cost - self.limit
        for stamp, spent in self._spent:
            freed += spent
            if freed >= target:
                return max(0.0, 60.0 - (now - stamp))
        return 60.0

    async def acquire(self, cost: int = 1) -> None:
        """Wait until `cost` more units fit, then spend them (cost 0: wait until under the limit)."""
        while (delay := self.wait_s(cost)) > 0:
            await anyio.sleep(delay)
        self.spend(cost)

    def spend(self, cost: int) -> None:
        if cost > 0:
            self._spent.append((self._clock(), cost))


class AdaptiveConcurrency:
    """Halve the limiter's tokens on a 429; after that many successes in a row, add one back."""

    def __init__(self, limiter: anyio.CapacityLimiter, ceiling: int, name: str) -> None:
        self.limiter = limiter
        self.ceiling = ceiling
        self.name = name
        self._streak = 0

    def on_rate_limited(self) -> None:
        before = int(self.limiter.total_tokens)
        self.limiter.total_tokens = max(1, before // 2)
        self._streak = 0
        if before != self.limiter.total_tokens:
            log.warning("concurrency.backoff", backend=self.name, limit=self.limiter.total_tokens)

    def on_success(self) -> None:
        current = int(self.limiter.total_tokens)
        if current >= self.ceiling:
            return
        self._streak += 1
        if self._streak >= current:
            self._streak = 0
            self.limiter.total_tokens = current + 1
