"""One async protocol for every engine, and the `Backend` that adds what all engines share.

An `Engine` only translates: our `LLMRequest` in, an `LLMResult` out, and its SDK's exceptions
mapped to `backends.errors`. Everything engines have in common is written once, in `Backend`:

- a concurrency bound (`anyio.CapacityLimiter`) per backend, not per graph;
- `n` samples for engines that return one choice per request (separate requests, seeds s, s+1, ...);
- retries with exponential backoff and jitter for every `EngineFault`, honouring Retry-After;
- structured output: the engine constrains decoding to the schema, and `Backend` re-validates
  every choice with pydantic, drops invalid choices and retries when none is valid;
- accounting: every attempt's usage and every fault go to the run's `Ledger`, and budgets are
  enforced before each request;
- limits: optional requests and tokens per minute; concurrency halves on a 429 and grows back;
- response caches (backends/cache.py): a request answered before is not sent again; the run's
  own journal makes a resumed run replay its finished calls instead of repeating them.

Invariants: a result always carries `usage`; a call either returns valid output or raises
`CallFailed` (never a partial or default value that could be mistaken for a score). When calls
keep failing at the transport level (`down_after` in a row, no success between), the engine is
down: `EngineUnavailable` stops the run, which `--resume` continues later.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar, runtime_checkable

import anyio
import structlog
from pydantic import BaseModel, ValidationError

from backends.errors import (
    TRANSPORT_KINDS,
    CallFailed,
    EmptyOutput,
    EngineFault,
    EngineUnavailable,
    InvalidOutput,
    RateLimited,
    TruncatedOutput,
)
from backends.cache import ResponseCache, request_key
from backends.ledger import BudgetExhausted, Ledger
from backends.limits import AdaptiveConcurrency, MinuteWindow
from schemas.llm import Choice, LLMRequest, LLMResult
from schemas.usage import Usage

T = TypeVar("T", bound=BaseModel)
log = structlog.get_logger("drpo.backend")


@runtime_checkable
class Engine(Protocol):
    """A model behind some API. Implementations: llamacpp.py, openai_compat.py, scripted.py."""

    model: str
    native_n: bool
    """True when one request can return `n` choices."""

    async def complete(self, request: LLMRequest) -> LLMResult:
        """Run one request. Raise an `EngineFault` subclass for any failure of this call."""
        ...

    async def aclose(self) -> None: ...


class Structured(BaseModel, Generic[T]):
    values: list[T]
    """One valid instance per surviving choice (at least one)."""
    usage: Usage


_FENCE = re.compile(r"^```(?:json|JSON)?\s*|\s*```$")


def parse_json_object(text: str) -> object:
    """The JSON object in `text`: tolerates code fences and prose around the outermost braces."""
    stripped = _FENCE.sub("", text.strip())
    start, end = stripped.find("{"), stripped.rfind("}")
    if start < 0 or end < start:
        raise InvalidOutput(f"no JSON object in output: {text[:80]!r}")
    try:
        return json.loads(stripped[start : end + 1], strict=False)
    except json.JSONDecodeError as exc:
        raise InvalidOutput(f"malformed JSON ({exc.msg}) in output: {text[:80]!r}") from exc


class Backend:
    """An engine plus the behaviour every engine shares (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        *,
        name: str,
        ledger: Ledger,
        max_concurrency: int = 16,
        max_attempts: int = 4,
        backoff_s: float = 0.5,
        caches: Sequence[ResponseCache] = (),
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
        down_after: int = 3,
    ) -> None:
        self.engine = engine
        self.name = name
        self.ledger = ledger
        self.limiter = anyio.CapacityLimiter(max_concurrency)
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.caches = list(caches)
        """Looked up in order; every new answer is written to all (the run's journal, the shared cache)."""
        self._requests = MinuteWindow(requests_per_minute) if requests_per_minute else None
        self._tokens = MinuteWindow(tokens_per_minute) if tokens_per_minute else None
        self._adaptive = AdaptiveConcurrency(self.limiter, max_concurrency, name)
        self._jitter = random.Random()
        self.down_after = down_after
        self._lost_in_a_row = 0

    @property
    def model(self) -> str:
        return self.engine.model

    async def generate(self, request: LLMRequest, clean: Callable[[str], str] = str.strip) -> LLMResult:
        """All `request.sampling.n` choices, each passed through `clean`; empty output is a fault."""

        def check(choices: Sequence[Choice]) -> list[Choice]:
            cleaned = [c.model_copy(update={"text": clean(c.text)}) for c in choices]
            if not any(c.text for c in cleaned):
                raise EmptyOutput("the engine returned no text")
            return cleaned

        result, cleaned = await self._sample(request, check)
        return result.model_copy(update={"choices": cleaned})

    async def generate_structured(self, request: LLMRequest, output_type: type[T]) -> Structured[T]:
        """Valid `output_type` instances, one per choice that parsed; retries when none did."""
        if request.json_schema is None:
            request = request.model_copy(update={"json_schema": output_type.model_json_schema(by_alias=True)})

        def validate(choices: Sequence[Choice]) -> list[T]:
            values, errors = [], []
            for choice in choices:
                try:
                    values.append(output_type.model_validate(parse_json_object(choice.text)))
                except (InvalidOutput, ValidationError) as exc:
                    errors.append(str(exc).splitlines()[0])
            if not values:
                if any(c.finish_reason == "length" for c in choices):
                    raise TruncatedOutput(f"output cut off at max_tokens={request.sampling.max_tokens}")
                raise InvalidOutput("; ".join(errors) or "no choices")
            if errors:
                self.ledger.fault(request.role, InvalidOutput.kind)
            return values

        result, values = await self._sample(request, validate)
        return Structured[output_type](values=values, usage=result.usage)  # type: ignore[valid-type]

    async def _sample(self, request: LLMRequest, check):  # type: ignore[no-untyped-def]
        n = request.sampling.n
        first = 0
        outcomes: list = []
        if n == 1 or self.engine.native_n:
            result, values = await self._call_with_retries(request, check)
            if n == 1 or len(result.choices) >= n:
                return result, values
            # The server ignored `n` (llama.cpp's does): top up with one request per missing sample.
            first, outcomes = len(result.choices), [(result, values)]
        # One request per sample, all in flight; seeds s+i keep samples distinct.
        singles = [_nth_sample(request, i) for i in range(first, n)]
        outcomes += [None] * len(singles)
        offset = len(outcomes) - len(singles)

        failures: list[CallFailed] = []

        async def one(i: int) -> None:
            try:
                outcomes[offset + i] = await self._call_with_retries(singles[i], check)
            except CallFailed as failure:  # one lost sample is dropped; the others still count
                failures.append(failure)

        async with anyio.create_task_group() as tg:
            for i in range(len(singles)):
                tg.start_soon(one, i)
        survivors = [o for o in outcomes if o is not None]
        if not survivors:
            raise failures[0]
        return _combine(survivors)

    async def _call_with_retries(self, request: LLMRequest, check):  # type: ignore[no-untyped-def]
        faults: list[str] = []
        spent = Usage()
        for attempt in range(self.max_attempts):
            attempt_request = request if attempt == 0 else _reseeded(request, attempt)
            try:
                result, usage = await self._fetch(attempt_request)
                spent = spent + usage
                return _with_usage(result, spent), check(result.choices)
            except EngineFault as fault:
                faults.append(fault.kind)
                self.ledger.fault(request.role, fault.kind)
                log.warning("engine.fault", agent=request.role, backend=self.name, kind=fault.kind,
                            attempt=attempt + 1, error=str(fault)[:200])
                if attempt + 1 == self.max_attempts:
                    self.ledger.failed(request.role)
                    self._note_failure(faults)
                    raise CallFailed(request.role, faults, fault) from fault
                await anyio.sleep(self._delay(attempt, fault))
        raise AssertionError("unreachable")

    def _note_failure(self, faults: list[str]) -> None:
        """Count calls lost to transport faults in a row; past `down_after`, the engine is down."""
        if not set(faults) <= TRANSPORT_KINDS:
            return
        self._lost_in_a_row += 1
        if self._lost_in_a_row >= self.down_after:
            raise EngineUnavailable(
                f"{self.name} failed {self._lost_in_a_row} calls in a row at the transport level "
                f"({', '.join(sorted(set(faults)))}); is the engine up?"
            )

    async def _fetch(self, request: LLMRequest) -> tuple[LLMResult, Usage]:
        """One answer: from a cache, or from the engine within the limits (and then cached)."""
        key = request_key(self.model, request) if self.caches else None
        for cache in self.caches:
            if (hit := cache.get(key)) is not None:  # type: ignore[arg-type]
                self.ledger.cache_hit(request.role)
                return hit, Usage()
        try:
            self.ledger.reserve(request.role)
        except BudgetExhausted as exhausted:
            raise CallFailed(request.role, ["budget"], exhausted) from None
        if self._requests is not None:
            await self._requests.acquire(1)
        if self._tokens is not None:
            await self._tokens.acquire(0)
        async with self.limiter:
            started = time.perf_counter()  # latency is the engine's, not the wait for a slot
            try:
                result = await self.engine.complete(request)
            except RateLimited:
                self._adaptive.on_rate_limited()
                raise
        self._adaptive.on_success()
        self._lost_in_a_row = 0
        usage = result.usage.model_copy(update={"calls": 1, "latency_s": time.perf_counter() - started})
        self.ledger.record(request.role, self.name, usage)
        if self._tokens is not None:
            self._tokens.spend(usage.tokens_in + usage.tokens_out)
        for cache in self.caches:
            cache.put(key, result)  # type: ignore[arg-type]
        return result, usage

    def _delay(self, attempt: int, fault: EngineFault) -> float:
        if isinstance(fault, RateLimited) and fault.retry_after_s is not None:
            return fault.retry_after_s
        if isinstance(fault, InvalidOutput | EmptyOutput):
            return 0.0  # the engine is healthy; try again with another seed at once
        return self.backoff_s * (2**attempt) * self._jitter.uniform(0.5, 1.5)

    async def aclose(self) -> None:
        await self.engine.aclose()


def _nth_sample(request: LLMRequest, i: int) -> LLMRequest:
    seed = request.sampling.seed
    sampling = request.sampling.model_copy(update={"n": 1, "seed": None if seed is None else seed + i})
    return request.model_copy(update={"sampling": sampling, "sample": i})


def _reseeded(request: LLMRequest, attempt: int) -> LLMRequest:
    """A retry draws another sample: a deterministic engine would repeat the same bad output."""
    seed = request.sampling.seed
    sampling = request.sampling.model_copy(update={"seed": (seed or 0) + 1000 * attempt})
    if sampling.temperature == 0.0:
        sampling.temperature = 0.3
    return request.model_copy(update={"sampling": sampling})


def _with_usage(result: LLMResult, usage: Usage) -> LLMResult:
    return result.model_copy(update={"usage": usage})


def _combine(outcomes: list) -> tuple[LLMResult, list]:  # type: ignore[type-arg]
    results = [r for r, _ in outcomes]
    usage = sum((r.usage for r in results), Usage())
    merged = LLMResult(choices=[c for r in results for c in r.choices], usage=usage, model=results[0].model)
    return merged, [v for _, vs in outcomes for v in vs]
