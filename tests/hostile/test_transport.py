"""Servers that fail at the connection: they hang, drip, cut replies short, reset, or are gone.

What a user relies on: each such attempt is a `transport` fault within `timeout_s` (a server
that drips bytes cannot stretch a call past it); three calls in a row lost that way stop the run
with `EngineUnavailable` (a success in between resets the count); and a request that hangs shows
on the console as an `engine.stalled` warning from `BackendPool.watch` long before any timeout.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import anyio
import pytest

from backends.errors import CallFailed, EngineUnavailable, TransportFault
from backends.ledger import Ledger
from backends.registry import BackendPool
from schemas.config import BackendConfig, RunConfig
from tests.hostile.calls import ENDPOINTS, KEY_ENV, call, chat_request, stacked
from tests.hostile.servers import chat, cut, drip, hang, in_turn, reset, response, send, serving

pytestmark = [pytest.mark.anyio, pytest.mark.real_engine]

TIMEOUT_S = 0.4
GOOD = response(200, chat("ok"))


def transport_failures() -> dict[str, Any]:
    return {
        "never_answers": hang,
        "drips_past_the_deadline": drip(GOOD, chunk=16, every_s=0.05),  # each read quick, the reply ~2 s
        "closes_mid_body": cut(response(200, chat("a longer answer than we will send")), keep=len(GOOD) - 40),
        "closes_mid_headers": cut(GOOD, keep=20),
        "promises_more_than_it_sends": cut(response(200, chat("ok"), length=len(GOOD) + 500), keep=len(GOOD) + 60),
        "resets_the_connection": reset,
        "garbles_the_gzip": send(200, b"this is not gzip", headers={"Content-Encoding": "gzip"}),
        "redirects_in_a_loop": send(307, b"", headers={"Location": "/v1/chat/completions"}),
        "not_http_at_all": cut(b"SSH-2.0-OpenSSH_9.6\r\n" * 3, keep=200),
    }


@pytest.mark.parametrize("name", list(transport_failures()))
async def test_a_transport_failure_is_retried_within_the_timeout_then_call_failed(name):
    async with serving(transport_failures()[name]) as server, \
            stacked(server.url, timeout_s=TIMEOUT_S, max_attempts=2) as (engine, ledger):
        started = time.monotonic()
        with pytest.raises(CallFailed) as failed:
            await call(engine, chat_request())
        elapsed = time.monotonic() - started
    assert failed.value.faults == ["transport", "transport"]
    assert isinstance(failed.value.last, TransportFault) and "\n" not in str(failed.value)
    assert elapsed < 2 * TIMEOUT_S + 1.5  # two attempts, each bounded by the deadline
    assert len(server.hits) >= 2  # the redirect loop counts every hop
    assert ledger.by_role()["policy"].faults == {"transport": 2}


@pytest.mark.parametrize("name", ["never_answers", "drips_past_the_deadline", "closes_mid_body"])
async def test_a_transport_failure_then_a_good_reply_is_one_retry(name):
    behaviour = in_turn(transport_failures()[name], send(200, chat("recovered")))
    async with serving(behaviour) as server, \
            stacked(server.url, timeout_s=TIMEOUT_S, max_attempts=2) as (engine, ledger):
        result = await call(engine, chat_request())
    assert result.choices[0].text == "recovered"
    assert ledger.by_role()["policy"].faults == {"transport": 1}


async def test_the_completions_endpoint_times_out_the_same_way():
    ask, _, path = ENDPOINTS["completions"]
    async with serving(hang) as server, stacked(server.url, timeout_s=TIMEOUT_S, max_attempts=1) as (engine, _):
        with pytest.raises(CallFailed) as failed:
            await call(engine, ask())
    assert failed.value.faults == ["transport"]
    assert f"timeout_s={TIMEOUT_S:g}" in str(failed.value) or "timed out" in str(failed.value).lower()
    assert server.paths == [path]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed when the block ends: nothing listens there


@pytest.mark.parametrize("name", ["nothing_listens", "never_answers", "closes_mid_body", "resets_the_connection"])
async def test_three_calls_in_a_row_lost_at_the_transport_stop_the_run(name):
    async def lose_three(url: str) -> tuple[list[BaseException], Ledger]:
        async with stacked(url, timeout_s=TIMEOUT_S, max_attempts=2) as (engine, ledger):
            outcomes: list[BaseException] = []
            for _ in range(3):
                try:
                    await call(engine, chat_request())
                except (CallFailed, EngineUnavailable) as lost:
                    outcomes.append(lost)
            return outcomes, ledger

    if name == "nothing_listens":
        outcomes, ledger = await lose_three(f"http://127.0.0.1:{closed_port()}/v1")
    else:
        async with serving(transport_failures()[name]) as server:
            outcomes, ledger = await lose_three(server.url)
        assert len(server.hits) == 6
    assert [type(o) for o in outcomes] == [CallFailed, CallFailed, EngineUnavailable]
    down = outcomes[-1]
    assert down.exit_code == 1 and "in a row" in str(down) and "\n" not in str(down)
    assert ledger.by_role()["policy"].faults == {"transport": 6}


async def test_a_success_between_transport_losses_means_the_engine_is_up():
    behaviour = in_turn(hang, hang, hang, hang, send(200, chat("up")), hang)
    async with serving(behaviour) as server, \
            stacked(server.url, timeout_s=TIMEOUT_S, max_attempts=2) as (engine, _):
        outcomes = []
        for _ in range(4):
            try:
                outcomes.append((await call(engine, chat_request())).choices[0].text)
            except CallFailed as lost:
                outcomes.append(lost.faults)
    # lost, lost, answered (on the first try of the third call), lost: never three in a row
    assert outcomes == [["transport"] * 2, ["transport"] * 2, "up", ["transport"] * 2]
    assert len(server.hits) == 7


async def test_a_redirect_to_another_origin_never_carries_the_key():
    async with serving(send(200, chat("from elsewhere"))) as elsewhere:
        port = elsewhere.url.split(":")[2].split("/")[0]
        target = f"http://localhost:{port}/v1/chat/completions"
        async with serving(send(307, b"", headers={"Location": target})) as server, \
                stacked(server.url, max_attempts=1) as (engine, _):
            await call(engine, chat_request())
    assert server.hits[0].headers.get("authorization", "").startswith("Bearer ")
    assert [hit.headers.get("authorization") for hit in elsewhere.hits] == [None]


async def test_a_hung_request_shows_as_engine_stalled_long_before_its_timeout(log_lines):
    config = RunConfig(backends={"default": BackendConfig(kind="openai", model="m", api_key_env=KEY_ENV,
                                                          timeout_s=3.0, max_attempts=1)})
    async with serving(hang) as server:
        config.backends["default"].base_url = server.url
        pool = BackendPool(config, Ledger())
        engine = pool.for_role("policy")

        async def hung_call() -> None:
            with pytest.raises(CallFailed):
                await engine.complete(chat_request())

        try:
            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(hung_call)
                    tg.start_soon(lambda: pool.watch(every_s=0.05, stall_after_s=0.3))
                    while not any(line["event"] == "engine.stalled" for line in log_lines):
                        await anyio.sleep(0.02)
                    tg.cancel_scope.cancel()
        finally:
            await pool.aclose()
    stalled = next(line for line in log_lines if line["event"] == "engine.stalled")
    assert stalled["backend"] == "default:m" and stalled["in_flight"] == 1
    assert stalled.get("severity", stalled.get("log_level")) == "warning"
    assert len(server.hits) == 1
