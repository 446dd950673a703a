"""Many endpoints for one model: least-busy routing, dead endpoints sit out."""

import anyio
import pytest

from backends.errors import TransportFault
from backends.ledger import Ledger
from backends.router import RoutedEngine
from backends.scripted import ScriptedEngine
from schemas.llm import LLMRequest, Sampling
from tests.in_flight import InFlight
from tests.stacks import stack

pytestmark = pytest.mark.anyio


def slow_engine(name: str, fail: bool = False) -> ScriptedEngine:
    async def answer(request):  # type: ignore[no-untyped-def]
        await anyio.sleep(0.02)
        return TransportFault("connection refused") if fail else name

    return ScriptedEngine(answer, model="m")


def ask() -> LLMRequest:
    return LLMRequest(role="policy", prompt="p", sampling=Sampling())


async def test_load_spreads_over_the_endpoints():
    engines = [slow_engine(f"e{i}") for i in range(3)]
    backend = stack(RoutedEngine(engines), name="r", ledger=Ledger(), max_concurrency=30)
    results = await anyio.gather(*(backend.complete(ask()) for _ in range(30)))
    counts = {f"e{i}": sum(r.choices[0].text == f"e{i}" for r in results) for i in range(3)}
    assert counts == {"e0": 10, "e1": 10, "e2": 10}


async def test_a_dead_endpoint_is_skipped_and_its_requests_retried_elsewhere():
    clock = [0.0]
    router = RoutedEngine([slow_engine("dead", fail=True), slow_engine("alive")], cooldown_s=30, clock=lambda: clock[0])
    ledger = Ledger()
    backend = stack(router, name="r", ledger=ledger, backoff_s=0.001)
    results = [await backend.complete(ask()) for _ in range(5)]
    assert {r.choices[0].text for r in results} == {"alive"}
    assert ledger.by_role()["policy"].faults == {"transport": 1}  # one try, then it sat out
    clock[0] = 31.0  # the cooldown is over: the endpoint is tried again
    assert router.pick() == 0


async def test_per_endpoint_cap_holds_when_an_endpoint_is_down():
    in_flight = InFlight()

    async def counted(request):  # type: ignore[no-untyped-def]
        await in_flight.hold(0.02)
        return "ok"

    clock = [0.0]
    router = RoutedEngine([ScriptedEngine(counted), slow_engine("dead", fail=True)], per_endpoint=2,
                          clock=lambda: clock[0])
    router._down_until[1] = 100.0  # already out
    backend = stack(router, name="r", ledger=Ledger(), max_concurrency=4)
    await anyio.gather(*(backend.complete(ask()) for _ in range(12)))
    assert in_flight.peak == 2
