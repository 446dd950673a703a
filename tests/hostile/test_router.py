"""Several endpoints for one model (`base_urls`), one of them misbehaving.

What a user relies on: the healthy endpoints carry the run. A retry after a bad reply goes to
another endpoint, not back to the one that just failed; a hung or dead endpoint sits out its
cooldown; only when every endpoint is down does the run stop (`EngineUnavailable`).
"""

from __future__ import annotations

import socket

import pytest

from backends.errors import CallFailed, EngineUnavailable
from backends.openai_compat import build
from schemas.config import BackendConfig
from tests.hostile.calls import KEY_ENV, call, chat_request
from tests.hostile.servers import chat, hang, send, serving
from tests.stacks import stack

pytestmark = [pytest.mark.anyio, pytest.mark.real_engine]


def routed(*urls: str, **options):  # type: ignore[no-untyped-def]
    config = BackendConfig(kind="openai", model="m", api_key_env=KEY_ENV, base_urls=list(urls), timeout_s=0.4,
                           endpoint_cooldown_s=30)
    return stack(build(config, "m"), **options)


BAD_ENDPOINTS = {
    "html": send(200, "<html>maintenance</html>", content_type="text/html"),
    "empty_object": send(200, {}),
    "rejects_400": send(400, {"error": {"message": "this replica is misconfigured"}}),
    "hangs": hang,
    "answers_500": send(500, {"error": {"message": "replica crashed"}}),
}


@pytest.mark.parametrize("name", list(BAD_ENDPOINTS))
async def test_a_misbehaving_endpoint_does_not_fail_the_calls_a_healthy_one_can_answer(name):
    async with serving(BAD_ENDPOINTS[name]) as bad, serving(send(200, chat("healthy"))) as good:
        engine = routed(bad.url, good.url, max_attempts=2)
        try:
            answers = [(await call(engine, chat_request())).choices[0].text for _ in range(6)]
        finally:
            await engine.aclose()
    assert answers == ["healthy"] * 6
    assert len(good.hits) == 6
    assert 1 <= len(bad.hits) <= 6  # tried, but never twice for one call


async def test_when_every_endpoint_is_down_the_run_stops():
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    engine = routed(*(f"http://127.0.0.1:{port}/v1" for port in ports), max_attempts=2)
    outcomes = []
    try:
        for _ in range(3):
            try:
                await call(engine, chat_request())
            except (CallFailed, EngineUnavailable) as lost:
                outcomes.append(type(lost))
    finally:
        await engine.aclose()
    assert outcomes == [CallFailed, CallFailed, EngineUnavailable]
