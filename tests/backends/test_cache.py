"""The response cache: a request answered before is not sent again, across runs and processes."""

import pytest

from backends.cache import ResponseCache, request_key
from backends.ledger import Ledger
from backends.scripted import ScriptedEngine
from schemas.llm import LLMRequest, Message, Sampling
from tests.stacks import stack

pytestmark = pytest.mark.anyio


def ask(**sampling) -> LLMRequest:  # type: ignore[no-untyped-def]
    return LLMRequest(role="judge", messages=[Message(role="user", content="hi")], sampling=Sampling(**sampling))


async def test_a_second_backend_on_the_same_file_answers_from_the_cache(tmp_path):
    engine = ScriptedEngine(lambda r: f"answer {len(engine.requests)}")
    first = stack(engine, name="b", ledger=Ledger(), caches=[ResponseCache(tmp_path / "r.sqlite")])
    original = await first.complete(ask())
    ledger = Ledger()
    second = stack(engine, name="b", ledger=ledger, caches=[ResponseCache(tmp_path / "r.sqlite")])
    again = await second.complete(ask())
    assert again.choices == original.choices
    assert len(engine.requests) == 1
    account = ledger.by_role()["judge"]
    assert (account.cache_hits, account.usage.calls) == (1, 0)


def test_the_key_covers_what_determines_an_answer():
    base = ask(seed=1)
    keys = {
        request_key("m", base),
        request_key("other-model", base),
        request_key("m", ask(seed=2)),
        request_key("m", ask(seed=1, temperature=0.5)),
        request_key("m", base.model_copy(update={"json_schema": {"type": "object"}})),
        request_key("m", base.model_copy(update={"sample": 1})),
    }
    assert len(keys) == 6
    assert request_key("m", base) == request_key("m", base.model_copy(update={"role": "policy"}))


async def test_unseeded_samples_of_one_request_are_cached_apart(tmp_path):
    class OneAtATime(ScriptedEngine):
        native_n = False

    engine = OneAtATime(lambda r: f"sample {len(engine.requests)}")
    backend = stack(engine, name="b", ledger=Ledger(), caches=[ResponseCache(tmp_path / "r.sqlite")])
    result = await backend.complete(ask(n=3, seed=None))
    assert len({c.text for c in result.choices}) == 3


def test_two_connections_interleave_writes_safely(tmp_path):
    a, b = ResponseCache(tmp_path / "r.sqlite"), ResponseCache(tmp_path / "r.sqlite")
    from schemas.llm import Choice, LLMResult
    from schemas.usage import Usage

    for i in range(50):
        (a if i % 2 else b).put(f"k{i}", LLMResult(choices=[Choice(text=str(i))], usage=Usage(), model="m"))
    assert all(a.get(f"k{i}").choices[0].text == str(i) for i in range(50))
