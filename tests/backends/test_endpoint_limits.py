"""Limits against a real HTTP server on loopback that records what is in flight."""

import socket
import threading
import time

import anyio
import pytest

from backends.ledger import Ledger
from backends.openai_compat import OpenAICompatEngine
from backends.registry import build_engine
from schemas.config import BackendConfig
from schemas.llm import LLMRequest, Message, Sampling
from tests.backends.stub_server import completion
from tests.stacks import stack

pytestmark = [pytest.mark.anyio, pytest.mark.real_engine]  # OpenAICompatEngine against the loopback stub


def ask() -> LLMRequest:
    return LLMRequest(role="judge", messages=[Message(role="user", content="hi")], sampling=Sampling(max_tokens=4))


def counting(state: dict):  # type: ignore[no-untyped-def]
    lock = threading.Lock()

    def responder(body):  # type: ignore[no-untyped-def]
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        time.sleep(0.05)
        with lock:
            state["now"] -= 1
        return 200, {}, completion("ok")

    return responder


async def test_max_concurrency_caps_requests_in_flight_at_the_server(stub, monkeypatch):
    state = {"now": 0, "peak": 0}
    stub.responder = counting(state)
    monkeypatch.setenv("STUB_KEY", "dummy")
    engine = OpenAICompatEngine("m", base_url=stub.url, api_key_env="STUB_KEY")
    backend = stack(engine, name="stub", ledger=Ledger(), max_concurrency=3)
    await anyio.gather(*(backend.complete(ask()) for _ in range(15)))
    await backend.aclose()
    assert state["peak"] == 3
    assert len(stub.seen) == 15


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


async def test_a_backend_with_several_base_urls_skips_the_dead_one(stub, monkeypatch):
    monkeypatch.setenv("STUB_KEY", "dummy")
    config = BackendConfig(kind="openai", model="m", api_key_env="STUB_KEY", base_urls=[closed_port_url(), stub.url])
    ledger = Ledger()
    backend = stack(build_engine(config, "m"), name="many", ledger=ledger, backoff_s=0.001, max_concurrency=4)
    for _ in range(6):
        assert (await backend.complete(ask())).choices[0].text == "ok"
    await backend.aclose()
    assert len(stub.seen) == 6
    assert ledger.by_role()["judge"].faults == {"transport": 1}
