"""The sampling layer: n choices from engines that return one per request or ignore n."""

import pytest

from backends.errors import TransportFault
from backends.ledger import Ledger
from backends.scripted import ScriptedEngine
from schemas.llm import LLMRequest, Sampling
from tests.stacks import stack

pytestmark = pytest.mark.anyio


def req(n: int, seed: int | None = 0) -> LLMRequest:
    return LLMRequest(role="rewriter", prompt="hi", sampling=Sampling(n=n, seed=seed))


class OneAtATime(ScriptedEngine):
    native_n = False


async def test_engines_without_n_get_one_request_per_sample_with_distinct_seeds():
    engine = OneAtATime(lambda r: f"seed {r.sampling.seed}")
    result = await stack(engine).complete(req(n=3, seed=10))
    assert sorted(c.text for c in result.choices) == ["seed 10", "seed 11", "seed 12"]
    assert all(r.sampling.n == 1 for r in engine.requests)


async def test_a_server_that_ignores_n_is_topped_up():
    ledger = Ledger()
    result = await stack(ScriptedEngine(lambda r: ["only one"]), ledger=ledger).complete(req(n=3))
    assert len(result.choices) == 3
    assert ledger.by_role()["rewriter"].usage.calls == 3


async def test_one_lost_sample_is_dropped_not_the_whole_request():
    engine = OneAtATime(lambda r: TransportFault("x") if r.sampling.seed == 1 else "ok")
    result = await stack(engine, max_attempts=1).complete(req(n=3, seed=0))
    assert len(result.choices) == 2
