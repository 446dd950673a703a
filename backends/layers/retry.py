"""Retries with backoff for every `EngineFault`, each attempt a fresh sample.

A deterministic engine would repeat the same bad output, so a retry reseeds (and lifts a
temperature of 0 a little). Waits grow exponentially with jitter; a server's Retry-After is
honoured up to `max_wait_s` (a longer request is capped, and the cap is logged). Every failed
attempt is counted in the ledger and logged as `engine.fault` with the call's ids and the wait
before the next attempt (`retry_in_s`, so a server-requested wait is always shown); after
`max_attempts` the call raises `CallFailed`, which the graph turns into a dropped candidate. A
refusal (`EngineRefused`) is counted as a `refused` fault and raised at once: no retry helps. A
rejected request (`RequestRejected`: 400, 413, 422, such as a prompt past the context) is counted
and fails the call at once, unless another endpoint may take it (a router's): the same server would
reject it again (the `openai` SDK does not retry these either), and retrying it kept a served
client waiting seconds for its 400.
"""

from __future__ import annotations

import random

import anyio

from backends.errors import (
    CallFailed,
    EmptyOutput,
    EngineFault,
    EngineRefused,
    InvalidOutput,
    RateLimited,
    RequestRejected,
)
from backends.ledger import Ledger
from backends.protocol import Engine, Layer
from schemas.llm import LLMRequest, LLMResult
from schemas.usage import Usage
from telemetry.logs import get_logger

log = get_logger("drpo.backend")

REFUSED = "refused"
"""The fault kind of a request the engine refused (credentials or model): counted, not retried."""


class RetryLayer(Layer):
    def __init__(self, inner: Engine, *, name: str, ledger: Ledger, max_attempts: int = 4,
                 backoff_s: float = 0.5, max_wait_s: float = 60.0) -> None:
        super().__init__(inner)
        self.name = name
        self.ledger = ledger
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_wait_s = max_wait_s
        self._jitter = random.Random()

    async def complete(self, request: LLMRequest) -> LLMResult:
        faults: list[str] = []
        spent = Usage()
        for attempt in range(self.max_attempts):
            try:
                result = await self.inner.complete(request if attempt == 0 else reseeded(request, attempt))
            except EngineRefused:
                self.ledger.fault(request.role, REFUSED)  # sent, answered with a refusal: never retried
                raise
            except EngineFault as fault:
                spent = spent + getattr(fault, "usage", Usage())
                faults.append(fault.kind)
                self.ledger.fault(request.role, fault.kind)
                last = attempt + 1 == self.max_attempts or (isinstance(fault, RequestRejected) and not fault.elsewhere)
                wait = 0.0 if last else self.delay(attempt, fault)
                log.warning("engine.fault", agent=request.role, backend=self.name, kind=fault.kind,
                            attempt=attempt + 1, error=str(fault)[:200],
                            **({} if last else {"retry_in_s": round(wait, 3)}))
                if last:
                    self.ledger.failed(request.role)
                    raise CallFailed(request.role, faults, fault) from fault
                await anyio.sleep(wait)
                continue
            if spent.calls:
                result.usage = spent + result.usage
            return result
        raise AssertionError("unreachable")

    def delay(self, attempt: int, fault: EngineFault) -> float:
        if isinstance(fault, RateLimited) and fault.retry_after_s is not None:
            if not fault.retry_after_s <= self.max_wait_s:  # nan and inf included
                log.warning("engine.retry_after_capped", backend=self.name, asked_s=fault.retry_after_s,
                            waiting_s=self.max_wait_s, hint="max_retry_wait_s sets the longest wait")
                return self.max_wait_s
            return max(0.0, fault.retry_after_s)
        if isinstance(fault, InvalidOutput | EmptyOutput | RequestRejected):
            return 0.0  # the engine is healthy (or, for a rejection, another endpoint is): try again at once
        return min(self.max_wait_s, self.backoff_s * (2**attempt) * self._jitter.uniform(0.5, 1.5))


def reseeded(request: LLMRequest, attempt: int) -> LLMRequest:
    """A retry draws another sample: a deterministic engine would repeat the same bad output."""
    seed = request.sampling.seed
    update: dict = {"seed": (seed or 0) + 1000 * attempt}
    if request.sampling.temperature == 0.0:
        update["temperature"] = 0.3
    return request.model_copy(update={"sampling": request.sampling.model_copy(update=update)})
