"""The OpenAI-compatible engine's error mapping (backends/openai_errors.py), against a scripted
stdlib HTTP server on loopback.

No model runs here: a `ThreadingHTTPServer` answers each POST with whatever the test's responder
returns, and records every request it saw (body and arrival time).
"""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest
from pydantic import BaseModel, Field

from backends.errors import CallFailed, EngineConfigError
from backends.ledger import Ledger
from backends.openai_compat import OpenAICompatEngine
from backends.protocol import Engine
from schemas.llm import LLMRequest, Message, Sampling
from tests.backends.stub_server import SCHEMA_REJECTION, Reply, completion
from tests.stacks import stack, with_output

pytestmark = [pytest.mark.anyio, pytest.mark.real_engine]  # OpenAICompatEngine against the loopback stub


def backend_for(url: str, monkeypatch: pytest.MonkeyPatch, **options: Any) -> tuple[Engine, OpenAICompatEngine, Ledger]:
    monkeypatch.setenv("DRPO_TEST_OPENAI_KEY", "dummy")
    engine = OpenAICompatEngine("m", base_url=url, api_key_env="DRPO_TEST_OPENAI_KEY", timeout_s=10)
    ledger = Ledger()
    return stack(engine, name="stub:m", ledger=ledger, **options), engine, ledger


def ask(role: str = "policy", **sampling: Any) -> LLMRequest:
    return LLMRequest(
        role=role, messages=[Message(role="user", content="Hello?")], sampling=Sampling(max_tokens=16, **sampling)
    )


class Verdict(BaseModel):
    answer: str
    confidence: int = Field(json_schema_extra={"enum": [1, 2, 3, 4, 5]})


async def test_a_429_is_retried_after_the_servers_retry_after(stub, monkeypatch):
    replies = iter([(429, {"Retry-After": "0.2"}, {"error": {"message": "slow down"}}), (200, {}, completion("fine"))])
    stub.responder = lambda body: next(replies)
    # A long backoff: were Retry-After ignored, the retry would come 2.5 s or more after the 429.
    backend, _, ledger = backend_for(stub.url, monkeypatch, max_attempts=3, backoff_s=5.0)
    try:
        result = await backend.complete(ask())
    finally:
        await backend.aclose()
    assert [c.text for c in result.choices] == ["fine"]
    assert len(stub.seen) == 2
    waited = stub.seen[1].at - stub.seen[0].at
    assert 0.2 <= waited < 2.0
    account = ledger.by_role()["policy"]
    assert account.faults == {"rate_limited": 1}
    assert account.usage.calls == 1  # only the attempt that returned output is a recorded call
    assert account.failed_calls == 0


def reject_json_schema(body: dict[str, Any]) -> Reply:
    if (body.get("response_format") or {}).get("type") == "json_schema":
        return 500, {}, SCHEMA_REJECTION
    return 200, {}, completion('{"answer": "yes", "confidence": 4}')


async def test_a_server_rejecting_json_schema_is_switched_to_json_object(stub, monkeypatch):
    stub.responder = reject_json_schema
    backend, engine, ledger = backend_for(stub.url, monkeypatch, max_attempts=1)
    assert engine.schema_mode == "json_schema"
    try:
        structured = await backend.complete(with_output(ask("judge"), Verdict))
        again = await backend.complete(with_output(ask("judge"), Verdict))
    finally:
        await backend.aclose()
    assert structured.parsed == [Verdict(answer="yes", confidence=4)]
    assert again.parsed == structured.parsed
    assert engine.schema_mode == "json_object"
    assert stub.response_format_types() == ["json_schema", "json_object", "json_object"]  # switched once, for good
    assert stub.seen[1].body["response_format"]["schema"] == Verdict.model_json_schema(by_alias=True)
    account = ledger.by_role()["judge"]
    assert account.faults == {}  # the switch happens inside the engine, not as a retried fault
    assert account.usage.calls == 2


async def test_concurrent_calls_rejected_before_the_switch_both_fall_back(stub, monkeypatch):
    """Two json_schema requests in flight together: the second rejection must not surface as a fault."""
    both_in = threading.Barrier(2, timeout=5)

    def responder(body: dict[str, Any]) -> Reply:
        if (body.get("response_format") or {}).get("type") == "json_schema":
            both_in.wait()  # hold each rejection until both requests have arrived
        return reject_json_schema(body)

    stub.responder = responder
    backend, engine, ledger = backend_for(stub.url, monkeypatch, max_attempts=1)
    results: list = []

    async def one() -> None:
        results.append(await backend.complete(with_output(ask("criteria"), Verdict)))

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(one)
            tg.start_soon(one)
    finally:
        await backend.aclose()
    assert len(results) == 2
    assert sorted(stub.response_format_types()) == ["json_object", "json_object", "json_schema", "json_schema"]
    assert engine.schema_mode == "json_object"
    assert ledger.by_role()["criteria"].faults == {}


async def test_a_401_is_a_configuration_error_and_is_not_retried(stub, monkeypatch):
    stub.responder = lambda body: (401, {}, {"error": {"message": "bad key"}})
    backend, _, _ = backend_for(stub.url, monkeypatch, max_attempts=4, backoff_s=0.01)
    try:
        with pytest.raises(EngineConfigError, match="401"):
            await backend.complete(ask())
    finally:
        await backend.aclose()
    assert len(stub.seen) == 1


async def test_a_503_on_every_attempt_ends_in_call_failed(stub, monkeypatch):
    stub.responder = lambda body: (503, {}, {"error": {"message": "overloaded"}})
    backend, _, ledger = backend_for(stub.url, monkeypatch, max_attempts=3, backoff_s=0.01)
    try:
        with pytest.raises(CallFailed) as failed:
            await backend.complete(ask())
    finally:
        await backend.aclose()
    assert failed.value.faults == ["transport"] * 3
    assert failed.value.last.status == 503
    assert len(stub.seen) == 3
    # Each retry draws another sample: the seed moves on, and a greedy request gets some temperature.
    assert [s.body["seed"] for s in stub.seen] == [0, 1000, 2000]
    account = ledger.by_role()["policy"]
    assert account.faults == {"transport": 3}
    assert account.failed_calls == 1
    assert account.usage.calls == 0

