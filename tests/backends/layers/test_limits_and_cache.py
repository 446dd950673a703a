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
