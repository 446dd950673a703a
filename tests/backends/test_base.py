"""What every engine gets from Backend: bounds, retries, samples, validation, accounting."""

import time

import anyio
import pytest
from pydantic import BaseModel

from backends.base import Backend, parse_json_object
from backends.errors import CallFailed, EmptyOutput, InvalidOutput, RateLimited, TransportFault
from backends.ledger import Ledger
from backends.scripted import ScriptedEngine, schema_instance
from schemas.llm import LLMRequest, Sampling
from tests.in_flight import InFlight

pytestmark = pytest.mark.anyio


class Verdict(BaseModel):
    label: str
    score: int


def req(n: int = 1, seed: int | None = 0, role: str = "judge") -> LLMRequest:
    return LLMRequest(role=role, prompt="hi", sampling=Sampling(n=n, seed=seed))


def backend(engine, **kwargs) -> Backend:  # type: ignore[no-untyped-def]
    return Backend(engine, name="b", ledger=kwargs.pop("ledger", Ledger()), backoff_s=0.001, **kwargs)


async def test_transport_faults_are_retried_then_succeed_and_are_counted():
    replies = iter([TransportFault("reset"), TransportFault("503", status=503), "fine"])
    ledger = Ledger()
    result = await backend(ScriptedEngine(lambda r: next(replies)), ledger=ledger).generate(req())
    assert result.choices[0].text == "fine"
    assert ledger.by_role()["judge"].faults == {"transport": 2}
    assert ledger.by_role()["judge"].usage.calls == 1  # only answered attempts carry usage


async def test_after_max_attempts_the_call_fails_with_every_fault_listed():
    ledger = Ledger()
    b = backend(ScriptedEngine(lambda r: TransportFault("down")), ledger=ledger, max_attempts=3)
    with pytest.raises(CallFailed) as failure:
        await b.generate(req())
    assert failure.value.faults == ["transport"] * 3
    assert ledger.by_role()["judge"].failed_calls == 1


async def test_retry_after_is_honoured():
    replies = iter([RateLimited("slow down", retry_after_s=0.2), "ok"])
    started = time.perf_counter()
    await backend(ScriptedEngine(lambda r: next(replies))).generate(req())
    assert time.perf_counter() - started >= 0.2


async def test_empty_output_is_a_fault_not_an_answer():
    replies = iter(["   ", "text"])
    ledger = Ledger()
    result = await backend(ScriptedEngine(lambda r: next(replies)), ledger=ledger).generate(req())
    assert result.choices[0].text == "text"
    assert ledger.by_role()["judge"].faults == {EmptyOutput.kind: 1}


async def test_a_retry_draws_a_new_sample():
    engine = ScriptedEngine(lambda r: InvalidOutput("bad") if len(engine.requests) == 1 else {"label": "x", "score": 1})
    await backend(engine).generate_structured(req(), Verdict)
    first, second = engine.requests
    assert first.sampling.seed != second.sampling.seed
    assert second.sampling.temperature > 0


async def test_structured_output_keeps_valid_choices_and_drops_invalid_ones():
    engine = ScriptedEngine(lambda r: ['{"label": "a", "score": 1}', "not json", '```json\n{"label": "b", "score": "2"}\n```'])
    ledger = Ledger()
    result = await backend(engine, ledger=ledger).generate_structured(req(n=3), Verdict)
    assert [v.label for v in result.values] == ["a", "b"]
    assert engine.requests[0].json_schema == Verdict.model_json_schema()
    assert ledger.by_role()["judge"].faults == {"invalid_output": 1}


class OneAtATime(ScriptedEngine):
    native_n = False


async def test_engines_without_n_get_one_request_per_sample_with_distinct_seeds():
    engine = OneAtATime(lambda r: f"seed {r.sampling.seed}")
    result = await backend(engine).generate(req(n=3, seed=10))
    assert sorted(c.text for c in result.choices) == ["seed 10", "seed 11", "seed 12"]
    assert all(r.sampling.n == 1 for r in engine.requests)


async def test_a_server_that_ignores_n_is_topped_up():
    engine = ScriptedEngine(lambda r: ["only one"])  # native n, but answers one choice
    ledger = Ledger()
    result = await backend(engine, ledger=ledger).generate(req(n=3))
    assert len(result.choices) == 3
    assert ledger.by_role()["judge"].usage.calls == 3


async def test_one_lost_sample_is_dropped_not_the_whole_request():
    engine = OneAtATime(lambda r: TransportFault("x") if r.sampling.seed == 1 else "ok")
    result = await backend(engine, max_attempts=1).generate(req(n=3, seed=0))
    assert len(result.choices) == 2


async def test_concurrency_is_bounded_per_backend():
    in_flight = InFlight()

    async def slow(request):  # type: ignore[no-untyped-def]
        await in_flight.hold(0.02)
        return "x"

    b = backend(ScriptedEngine(slow), max_concurrency=3)
    await anyio.gather(*(b.generate(req()) for _ in range(12)))
    assert in_flight.peak == 3


def test_json_is_found_inside_fences_and_prose():
    assert parse_json_object('Sure! {"a": 1} Hope that helps.') == {"a": 1}
    with pytest.raises(InvalidOutput):
        parse_json_object("no braces here")


def test_schema_instance_is_valid_for_our_models():
    assert Verdict.model_validate(schema_instance(Verdict.model_json_schema()))
