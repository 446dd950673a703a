"""How much is in flight: a concurrency bound per backend, optional requests and tokens per
minute, and a concurrency that halves on a 429 and grows back one step at a time (AIMD).

The bound is per backend (every role that shares an engine shares it), never per graph: the
graph puts everything independent in flight and this layer decides what reaches the engine.
"""

from __future__ import annotations

import anyio

from backends.errors import RateLimited
from backends.limits import AdaptiveConcurrency, MinuteWindow
from backends.protocol import Engine, Layer
from schemas.llm import LLMRequest, LLMResult


class LimitsLayer(Layer):
    def __init__(self, inner: Engine, *, name: str, max_concurrency: int,
                 requests_per_minute: int | None = None, tokens_per_minute: int | None = None) -> None:
        super().__init__(inner)
        self.limiter = anyio.CapacityLimiter(max_concurrency)
        self._adaptive = AdaptiveConcurrency(self.limiter, max_concurrency, name)
        self._requests = MinuteWindow(requests_per_minute) if requests_per_minute else None
        self._tokens = MinuteWindow(tokens_per_minute) if tokens_per_minute else None

    async def complete(self, request: LLMRequest) -> LLMResult:
        if self._requests is not None:
            await self._requests.acquire(1)
        if self._tokens is not None:
            await self._tokens.acquire(0)
        try:  # a free slot is taken at once: `acquire` would also yield to the loop, a second wake-up per call
            self.limiter.acquire_nowait()
        except anyio.WouldBlock:
            await self.limiter.acquire()
        try:
            result = await self.inner.complete(request)
        except RateLimited:
            self._adaptive.on_rate_limited()
            raise
        finally:
            self.limiter.release()
        self._adaptive.on_success()
        if self._tokens is not None:
            self._tokens.spend(result.usage.tokens_in + result.usage.tokens_out)
        return result
