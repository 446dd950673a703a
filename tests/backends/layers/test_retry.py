"""The retry layer: faults are retried with a fresh sample, counted, capped, and end in CallFailed."""

import time

import pytest

from backends.errors import CallFailed, InvalidOutput, RateLimited, TransportFault
from backends.ledger import Ledger
from backends.scripted import ScriptedEngine
from schemas.llm import LLMRequest, Sampling
from tests.stacks import stack

pytestmark = pytest.mark.anyio


def req(role: str = "judge") -> LLMRequest:
    return LLMRequest(role=role, prompt="hi", sampling=Sampling())


async def test_transport_faults_are_retried_then_succeed_and_are_counted():
    replies = iter([TransportFault("reset"), TransportFault("503", status=503), "fine"])
    ledger = Ledger()
    result = await stack(ScriptedEngine(lambda r: next(replies)), ledger=ledger).complete(req())
    assert result.choices[0].text == "fine"
    assert ledger.by_role()["judge"].faults == {"transport": 2}
    assert ledger.by_role()["judge"].usage.calls == 1  # only answered attempts carry usage


async def test_after_max_attempts_the_call_fails_with_every_fault_listed():
    ledger = Ledger()
    engine = stack(ScriptedEngine(lambda r: TransportFault("down")), ledger=ledger, max_attempts=3, down_after=99)
    with pytest.raises(CallFailed) as failure:
        await engine.complete(req())
    assert failure.value.faults == ["transport"] * 3
    assert ledger.by_role()["judge"].failed_calls == 1


async def test_retry_after_is_honoured():
    replies = iter([RateLimited("slow down", retry_after_s=0.2), "ok"])
    started = time.perf_counter()
    await stack(ScriptedEngine(lambda r: next(replies))).complete(req())
    assert time.perf_counter() - started >= 0.2


async def test_a_huge_retry_after_is_capped_at_the_configured_wait():
    replies = iter([RateLimited("come back in an hour", retry_after_s=3600), "ok"])
    started = time.perf_counter()
    result = await stack(ScriptedEngine(lambda r: next(replies)), max_retry_wait_s=0.1).complete(req())
    assert result.choices[0].text == "ok"
    assert time.perf_counter() - started < 5


async def test_a_retry_draws_a_new_sample():
    engine = ScriptedEngine(lambda r: InvalidOutput("bad") if len(engine.requests) == 1 else "good")
    await stack(engine).complete(req())
    first, second = engine.requests
    assert first.sampling.seed != second.sampling.seed
    assert second.sampling.temperature > 0
