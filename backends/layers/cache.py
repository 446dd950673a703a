"""Answers received before are not asked again: the run's journal first, then the shared cache.

Keys come from `backends.cache.request_key`: the endpoint's identity (engine kind, URL, model)
and everything that determines an answer. A hit costs no call and is counted apart; every answer
the engine gives is written to all caches (valid or not, so a re-run takes the same path through
retries). `caches` is a list the pool owns: the run's journal is put in front when the run starts.
"""

from __future__ import annotations

from backends.cache import ResponseCache, request_key
from backends.ledger import Ledger
from backends.protocol import Engine, Layer
from schemas.llm import LLMRequest, LLMResult
from schemas.usage import Usage


class CacheLayer(Layer):
    def __init__(self, inner: Engine, *, identity: str, caches: list[ResponseCache], ledger: Ledger) -> None:
        super().__init__(inner)
        self.identity = identity
        self.caches = caches
        self.ledger = ledger

    async def complete(self, request: LLMRequest) -> LLMResult:
        if not self.caches:
            return await self.inner.complete(request)
        key = request_key(self.identity, request)
        for cache in self.caches:
            if (hit := cache.get(key)) is not None:
                self.ledger.cache_hit(request.role, replayed=cache.journal)
                hit.usage = Usage()  # a fresh object from the database: no call was made for it
                return hit
        result = await self.inner.complete(request)
        for cache in self.caches:
            cache.put(key, result)
        return result
