"""The retry layer: faults are retried with a fresh sample, counted, capped, and end in CallFailed."""

import time

import pytest

from backends.errors import CallFailed, EngineRefused, InvalidOutput, RateLimited, TransportFault
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


async def test_a_refusal_is_raised_at_once_and_counted_as_sent_and_refused():
    def refuse(request: LLMRequest) -> str:
        raise EngineRefused("Incorrect API key provided.", status=401)

    engine = ScriptedEngine(refuse)
    ledger = Ledger()
    with pytest.raises(EngineRefused):
        await stack(engine, ledger=ledger).complete(req())
    account = ledger.by_role()["judge"]
    assert len(engine.requests) == 1  # never retried
    assert account.sent == 1 and account.faults == {"refused": 1} and account.usage.calls == 0


async def test_every_attempt_is_sent_and_paid_for_answered_or_not():
    replies = iter([TransportFault("reset"), "", "fine"])
    ledger = Ledger()
    await stack(ScriptedEngine(lambda r: next(replies)), ledger=ledger).complete(req())
    account = ledger.by_role()["judge"]
    assert account.faults == {"transport": 1, "empty_output": 1}
    assert account.sent == 3 and account.usage.calls == 2  # the empty reply was received; the reset was not


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
