"""Concurrency is bounded per stack; answers are cached per endpoint identity."""

import anyio
import pytest

from backends.cache import ResponseCache
from backends.ledger import Ledger
from backends.scripted import ScriptedEngine
from schemas.llm import LLMRequest, Message
from tests.in_flight import InFlight
from tests.stacks import stack

pytestmark = pytest.mark.anyio


def ask() -> LLMRequest:
    return LLMRequest(role="judge", messages=[Message(role="user", content="hi")])


async def test_concurrency_is_bounded_per_stack():
    in_flight = InFlight()

    async def slow(request):  # type: ignore[no-untyped-def]
        await in_flight.hold(0.02)
        return "x"

    llm = stack(ScriptedEngine(slow), max_concurrency=3)
    await anyio.gather(*(llm.complete(ask()) for _ in range(12)))
    assert in_flight.peak == 3


class Endpoint(ScriptedEngine):
    def __init__(self, url: str) -> None:
        super().__init__(lambda r: f"answer from {url}", model="same-model")
        self.identity = f"openai:{url}:same-model"


async def test_a_cached_answer_is_never_served_for_another_endpoint(tmp_path):
    first, second = Endpoint("http://a"), Endpoint("http://b")
    cache = ResponseCache(tmp_path / "r.sqlite")
    assert (await stack(first, caches=[cache]).complete(ask())).choices[0].text == "answer from http://a"
    ledger = Ledger()
    again = await stack(second, caches=[cache], ledger=ledger).complete(ask())
    assert again.choices[0].text == "answer from http://b"
    assert ledger.by_role()["judge"].cache_hits == 0
    assert (await stack(first, caches=[cache]).complete(ask())).choices[0].text == "answer from http://a"
    assert len(first.requests) == 1  # the second ask of endpoint a was a hit


async def test_a_free_slot_is_taken_at_once_and_waiters_keep_their_turn():
    """Calls take a free slot without waiting; once the bound is reached, later calls queue behind
    earlier ones (none jumps the queue through the free-slot path) and every slot is given back."""
    order: list[int] = []
    gate = anyio.Event()

    async def held(request):  # type: ignore[no-untyped-def]
        order.append(int(request.messages[0].content))
        if len(order) <= 2:
            await gate.wait()
        return "x"

    llm = stack(ScriptedEngine(held), max_concurrency=2)

    def numbered(i: int) -> LLMRequest:
        return LLMRequest(role="judge", messages=[Message(role="user", content=str(i))])

    async with anyio.create_task_group() as tg:
        for i in range(6):
            tg.start_soon(llm.complete, numbered(i))
            await anyio.sleep(0.001)  # started in this order
        await anyio.sleep(0.02)
        assert order == [0, 1]  # the bound holds while both slots are taken
        gate.set()
    assert order == [0, 1, 2, 3, 4, 5]
    limiter = llm_limiter(llm)
    assert limiter.borrowed_tokens == 0


def llm_limiter(llm):  # type: ignore[no-untyped-def]
    """The LimitsLayer's limiter, found down the stack."""
    layer = llm
    while not hasattr(layer, "limiter"):
        layer = layer.inner
    return layer.limiter
