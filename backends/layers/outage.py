"""An engine that is down stops the run instead of failing every candidate one by one.

Calls lost to transport faults only (`down_after` in a row, no success between) mean the engine
is unreachable: `EngineUnavailable` ends the run at its last checkpoint, and `--resume`
continues once the engine is back. A call lost to bad output is not an outage.
"""

from __future__ import annotations

from backends.errors import TRANSPORT_KINDS, CallFailed, EngineUnavailable
from backends.protocol import Engine, Layer
from schemas.llm import LLMRequest, LLMResult


class OutageLayer(Layer):
    def __init__(self, inner: Engine, *, name: str, down_after: int = 3) -> None:
        super().__init__(inner)
        self.name = name
        self.down_after = down_after
        self._lost_in_a_row = 0

    async def complete(self, request: LLMRequest) -> LLMResult:
        try:
            result = await self.inner.complete(request)
        except CallFailed as failure:
            if failure.faults and set(failure.faults) <= TRANSPORT_KINDS:
                self._lost_in_a_row += 1
                if self._lost_in_a_row >= self.down_after:
                    raise EngineUnavailable(
                        f"{self.name} failed {self._lost_in_a_row} calls in a row at the transport level "
                        f"({', '.join(sorted(set(failure.faults)))}: {str(failure.last)[:160]}); is the engine up?"
                    ) from failure
            raise
        self._lost_in_a_row = 0
        return result
