"""Several endpoints serving one model (vLLM replicas, data-parallel ranks, a gateway's backends)
behind one engine: each request goes to the healthy endpoint with the fewest requests in flight,
and an endpoint that fails at the transport level sits out for `cooldown_s`. Among endpoints
equally busy, one whose last reply was bad (garbage, a rejection) comes after the others, so the
retry of a call it failed goes elsewhere instead of back to it; ties go to the one sent fewer."""

from __future__ import annotations

import time
from collections.abc import Sequence

import anyio

from backends.errors import EngineConfigError, EngineFault, RateLimited, RequestRejected, TransportFault
from backends.protocol import Engine
from schemas.llm import LLMRequest, LLMResult
from telemetry.logs import get_logger

log = get_logger("drpo.router")


class RoutedEngine:
    def __init__(self, engines: Sequence[Engine], *, names: Sequence[str] | None = None, cooldown_s: float = 30.0,
                 per_endpoint: int | None = None, clock=time.monotonic) -> None:  # type: ignore[no-untyped-def]
        if not engines:
            raise ValueError("a router needs at least one endpoint")
        self.engines = list(engines)
        self.names = list(names or (f"endpoint-{i}" for i in range(len(engines))))
        self.model = self.engines[0].model
        self.identity = "router:" + ",".join(getattr(e, "identity", name) for e, name in zip(self.engines, self.names))
        self.native_n = all(e.native_n for e in self.engines)
        self.in_flight = [0] * len(engines)
        self.served = [0] * len(engines)
        self.sent = [0] * len(engines)
        self.bad_in_a_row = [0] * len(engines)
        """Replies in a row from each endpoint that were faults other than transport ones."""
        self._down_until = [0.0] * len(engines)
        self._cooldown_s = cooldown_s
        self._clock = clock
        bound = per_endpoint or 1_000_000
        self.limiters = [anyio.CapacityLimiter(bound) for _ in engines]
        """Caps requests in flight per endpoint; queued requests count as in flight when picking."""

    def pick(self) -> int:
        """The least busy healthy endpoint; if all are cooling down, the one back soonest."""
        now = self._clock()
        healthy = [i for i in range(len(self.engines)) if self._down_until[i] <= now]
        if not healthy:
            return min(range(len(self.engines)), key=lambda i: self._down_until[i])
        return min(healthy, key=lambda i: (self.in_flight[i], self.bad_in_a_row[i], self.sent[i]))

    async def complete(self, request: LLMRequest) -> LLMResult:
        i = self.pick()
        self.in_flight[i] += 1
        self.sent[i] += 1
        try:
            async with self.limiters[i]:
                result = await self.engines[i].complete(request)
        except TransportFault as fault:
            if not isinstance(fault, RateLimited):
                self._down_until[i] = self._clock() + self._cooldown_s
                log.warning("endpoint.down", endpoint=self.names[i], cooldown_s=self._cooldown_s, error=str(fault)[:120])
            raise
        except EngineFault as fault:
            self.bad_in_a_row[i] += 1
            if isinstance(fault, RequestRejected) and len(self.engines) > 1:
                fault.elsewhere = True  # the retry goes to another endpoint first (`pick`)
            raise
        finally:
            self.in_flight[i] -= 1
        self.served[i] += 1
        self.bad_in_a_row[i] = 0
        return result

    async def probe(self) -> None:
        """At least one endpoint must answer; the others start out cooling down."""
        errors = []
        for i, engine in enumerate(self.engines):
            probe = getattr(engine, "probe", None)
            try:
                if probe is not None:
                    await probe()
            except EngineConfigError as exc:
                errors.append(str(exc))
                self._down_until[i] = self._clock() + self._cooldown_s
                log.warning("endpoint.down", endpoint=self.names[i], error=str(exc)[:160])
        if len(errors) == len(self.engines):
            raise EngineConfigError(f"no endpoint answers: {errors[0]}")

    async def aclose(self) -> None:
        for engine in self.engines:
            await engine.aclose()
