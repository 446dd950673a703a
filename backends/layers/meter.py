"""What each request cost: one call, its tokens, and the engine's own latency (measured inside
the concurrency bound, so waiting for a slot is not counted), recorded per role and backend.

It also knows what is in flight right now, so a stalled engine can be reported (`oldest_s`)
long before any timeout fires."""

from __future__ import annotations

import itertools
import time

from backends.ledger import Ledger
from backends.protocol import Engine, Layer
from schemas.llm import LLMRequest, LLMResult


class MeterLayer(Layer):
    def __init__(self, inner: Engine, *, name: str, ledger: Ledger) -> None:
        super().__init__(inner)
        self.name = name
        self.ledger = ledger
        self._started: dict[int, float] = {}
        self._tickets = itertools.count()

    async def complete(self, request: LLMRequest) -> LLMResult:
        ticket = next(self._tickets)
        started = self._started[ticket] = time.perf_counter()
        try:
            result = await self.inner.complete(request)
        finally:
            del self._started[ticket]
        result.usage = result.usage.model_copy(update={"calls": 1, "latency_s": time.perf_counter() - started})
        self.ledger.record(request.role, self.name, result.usage)
        return result

    def in_flight(self) -> tuple[int, float]:
        """Requests at the engine now, and how long the oldest has waited (seconds)."""
        if not self._started:
            return 0, 0.0
        return len(self._started), time.perf_counter() - min(self._started.values())
