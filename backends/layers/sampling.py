"""`n` choices from engines that return one per request (llama.cpp) or ignore `n` (some servers).

A request for n samples on such an engine becomes one request per sample, all in flight, seeds
s, s+1, ...; a server that returned fewer choices than asked is topped up the same way. Each
sample goes through the layers below on its own (its own retries), and a sample that is lost
drops only itself: the call fails only when every sample failed. An error that stops the run
(`EngineRefused`, `EngineUnavailable`) stops the other samples and is raised as itself, never
wrapped in the task group's exception group.
"""

from __future__ import annotations

import anyio

from backends.errors import CallFailed
from backends.protocol import Engine, Layer
from schemas.errors import ProjectError, first_leaf, first_of
from schemas.llm import LLMRequest, LLMResult
from schemas.usage import Usage


class SamplingLayer(Layer):
    def __init__(self, inner: Engine) -> None:
        super().__init__(inner)
        self.native_n = True  # callers above may always ask for n

    async def complete(self, request: LLMRequest) -> LLMResult:
        n = request.sampling.n
        if n == 1:
            return await self.inner.complete(request)
        first, results = 0, []
        if self.inner.native_n:
            result = await self.inner.complete(request)
            if len(result.choices) >= n:
                return result
            first, results = len(result.choices), [result]
        singles = [nth_sample(request, i) for i in range(first, n)]
        outcomes: list[LLMResult | CallFailed | None] = [None] * len(singles)

        async def one(i: int) -> None:
            try:
                outcomes[i] = await self.inner.complete(singles[i])
            except CallFailed as failure:
                outcomes[i] = failure

        try:
            async with anyio.create_task_group() as tg:
                for i in range(len(singles)):
                    tg.start_soon(one, i)
        except BaseExceptionGroup as group:
            stop = first_of(group, ProjectError) or first_leaf(group)
            raise stop from stop.__cause__
        results += [o for o in outcomes if isinstance(o, LLMResult)]
        if not results:
            raise next(o for o in outcomes if isinstance(o, CallFailed))
        return combine(results)


def nth_sample(request: LLMRequest, i: int) -> LLMRequest:
    seed = request.sampling.seed
    sampling = request.sampling.model_copy(update={"n": 1, "seed": None if seed is None else seed + i})
    return request.model_copy(update={"sampling": sampling, "sample": i})


def combine(results: list[LLMResult]) -> LLMResult:
    return LLMResult(
        choices=[c for r in results for c in r.choices],
        usage=sum((r.usage for r in results), Usage()),
        model=results[0].model,
        parsed=[p for r in results for p in r.parsed],
    )
