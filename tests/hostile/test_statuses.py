"""HTTP error statuses, each with the outcome a user relies on.

- A refusal no retry can cure (401, 403, 404, 402, a 429 for lack of quota), even after earlier
  calls succeeded, stops the run: `EngineRefused`, exit code 2, one line saying what to fix, and
  no second request.
- A request the server rejects (400 context length, 413, 422) is a `rejected` fault, counted, and
  the call fails at once: the same server would reject it again (a router's other endpoints may
  take it: tests/hostile/test_router.py); a template that rejects a system message is handled once
  and for good (folded).
- A transient status (5xx, 408, 409) is a transport fault that a retry cures; a server that keeps
  answering 5xx is an outage (`EngineUnavailable`) after three calls in a row.
- A 429 waits what the server asks, but never longer than `max_retry_wait_s` (60 s by default),
  and the wait is shown in the fault's log line.
"""

from __future__ import annotations

import json
import time
from email.utils import formatdate
from typing import Any

import anyio
import pytest

from backends.errors import CallFailed, EngineRefused, EngineUnavailable, RequestRejected
from backends.layers.limits import LimitsLayer
from schemas.errors import ProjectError
from tests.hostile.calls import ENDPOINTS, KEY, KEY_ENV, call, chat_request, stacked
from tests.hostile.servers import Hit, chat, error, in_turn, send, serving
from tests.stacks import layer

pytestmark = [pytest.mark.anyio, pytest.mark.real_engine]

REFUSALS: dict[str, tuple[int, dict[str, Any], str]] = {
    "401": (401, error(f"Incorrect API key provided: {KEY}", code="invalid_api_key"), KEY_ENV),
    "403": (403, error("Project does not have access to this model"), KEY_ENV),
    "404": (404, error("The model `m` does not exist or you do not have access to it."), "--model"),
    "402": (402, error("Payment required: your balance is 0"), KEY_ENV),
    "429_insufficient_quota": (429, error("You exceeded your current quota, please check your plan and billing",
                                          type="insufficient_quota", code="insufficient_quota"), KEY_ENV),
}
REFUSAL_CASES = [(endpoint, name) for endpoint in ENDPOINTS for name in REFUSALS]


@pytest.mark.parametrize(("endpoint", "name"), REFUSAL_CASES, ids=[f"{e}-{n}" for e, n in REFUSAL_CASES])
async def test_a_refusal_mid_run_stops_with_one_line_that_says_what_to_fix_and_is_not_retried(endpoint, name):
    ask, reply, path = ENDPOINTS[endpoint]
    status, body, fix = REFUSALS[name]
    behaviour = in_turn(send(200, reply("one")), send(200, reply("two")), send(status, body))
    async with serving(behaviour) as server, stacked(server.url, max_attempts=4) as (engine, ledger):
        assert [(await call(engine, ask())).choices[0].text for _ in range(2)] == ["one", "two"]
        with pytest.raises(EngineRefused) as refused:
            await call(engine, ask())
    error = refused.value
    assert isinstance(error, ProjectError) and error.exit_code == 2
    message = str(error)
    assert "\n" not in message and f"HTTP {status}" in message
    assert fix in message and "resume" in message
    assert KEY not in message
    assert server.paths == [path] * 3  # nothing retried the refusal
    account = ledger.by_role()["policy"]
    assert account.faults == {"refused": 1} and account.sent == 3 and account.usage.calls == 2


async def test_a_refusal_while_topping_up_missing_samples_is_raised_as_itself():
    """A server that ignores `n` gets one request per missing sample, in flight together; a 401
    on those must stop the run as EngineRefused, not as an exception group from the task group."""
    behaviour = in_turn(send(200, chat("only one")), send(401, error("expired key")))
    async with serving(behaviour) as server, stacked(server.url, max_attempts=3) as (engine, _):
        with pytest.raises(EngineRefused, match="HTTP 401"):
            await call(engine, chat_request(n=3))
    assert len(server.hits) == 3  # the first request, then one per missing sample: none retried


REJECTIONS: dict[str, tuple[int, Any, str]] = {
    "400_context_length": (400, error("This model's maximum context length is 4096 tokens. However, you requested "
                                      "9000 tokens.", code="context_length_exceeded"), "maximum context length"),
    "413_payload_too_large": (413, "<html><head><title>413 Request Entity Too Large</title></head></html>",
                              "HTTP 413"),
    "422_unprocessable": (422, {"detail": [{"loc": ["body", "temperature"], "msg": "Input should be <= 2"}]},
                          "Input should be <= 2"),
    "400_bad_parameter": (400, error("Unrecognized request argument supplied: seed"), "Unrecognized request"),
}
REJECTION_CASES = [(endpoint, name) for endpoint in ENDPOINTS for name in REJECTIONS]


@pytest.mark.parametrize(("endpoint", "name"), REJECTION_CASES, ids=[f"{e}-{n}" for e, n in REJECTION_CASES])
async def test_a_rejected_request_is_a_counted_fault_that_ends_in_call_failed_at_once(endpoint, name):
    ask, _, path = ENDPOINTS[endpoint]
    status, body, shown = REJECTIONS[name]
    content_type = "text/html" if isinstance(body, str) else "application/json"
    async with serving(send(status, body, content_type=content_type)) as server, \
            stacked(server.url, max_attempts=4, down_after=1) as (engine, ledger):
        with pytest.raises(CallFailed) as failed:
            await call(engine, ask())  # down_after=1: a transport fault would stop the run here
    assert failed.value.faults == ["rejected"]
    assert isinstance(failed.value.last, RequestRejected) and failed.value.last.status == status
    assert shown in str(failed.value) and "\n" not in str(failed.value)
    assert server.paths == [path]  # not sent again: the same server would reject it again
    assert ledger.by_role()["policy"].faults == {"rejected": 1}
    assert ledger.by_role()["policy"].failed_calls == 1


@pytest.mark.parametrize("status", [500, 502, 503, 408, 409])
async def test_a_transient_status_then_success_is_one_retry(status):
    behaviour = in_turn(send(status, error("try again")), send(200, chat("back")))
    async with serving(behaviour) as server, stacked(server.url, max_attempts=2) as (engine, ledger):
        result = await call(engine, chat_request())
    assert result.choices[0].text == "back"
    assert len(server.hits) == 2
    assert ledger.by_role()["policy"].faults == {"transport": 1}


async def test_a_server_that_keeps_answering_503_is_an_outage_after_three_calls():
    async with serving(send(503, error("overloaded"))) as server, \
            stacked(server.url, max_attempts=2) as (engine, ledger):
        for _ in range(2):
            with pytest.raises(CallFailed):
                await call(engine, chat_request())
        with pytest.raises(EngineUnavailable) as down:
            await call(engine, chat_request())
    assert down.value.exit_code == 1 and "\n" not in str(down.value)
    assert len(server.hits) == 6
    assert ledger.by_role()["policy"].faults == {"transport": 6}


# --- rate limits --------------------------------------------------------------------------------


def rate_limited(**headers: str) -> Any:
    return send(429, error("Rate limit reached for requests"), headers=headers)


async def test_retry_after_an_hour_is_capped_at_max_retry_wait_and_shown(log_lines):
    behaviour = in_turn(rate_limited(**{"Retry-After": "3600"}), send(200, chat("served")))
    async with serving(behaviour) as server, \
            stacked(server.url, max_attempts=2, max_retry_wait_s=0.2, backoff_s=5.0) as (engine, ledger):
        result = await call(engine, chat_request())
    assert result.choices[0].text == "served"
    waited = server.hits[1].at - server.hits[0].at
    assert 0.2 <= waited < 2.0
    capped = [line for line in log_lines if line["event"] == "engine.retry_after_capped"]
    assert [(line["asked_s"], line["waiting_s"]) for line in capped] == [(3600.0, 0.2)]
    faults = [line for line in log_lines if line["event"] == "engine.fault"]
    assert [(line["kind"], line["retry_in_s"]) for line in faults] == [("rate_limited", 0.2)]
    assert ledger.by_role()["policy"].faults == {"rate_limited": 1}


async def test_by_default_a_server_requested_wait_is_capped_at_sixty_seconds(log_lines):
    """The default settings: the capped wait shows in a log line at once (the test then stops)."""
    async with serving(rate_limited(**{"Retry-After": "3600"})) as server, stacked(server.url) as (engine, _):
        with anyio.move_on_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(engine.complete, chat_request())
                while not any(line["event"] == "engine.fault" for line in log_lines):
                    await anyio.sleep(0.02)
                tg.cancel_scope.cancel()
    capped = [line for line in log_lines if line["event"] == "engine.retry_after_capped"]
    assert [(line["asked_s"], line["waiting_s"]) for line in capped] == [(3600.0, 60.0)]
    assert [line["retry_in_s"] for line in log_lines if line["event"] == "engine.fault"] == [60.0]
    assert len(server.hits) == 1


async def test_retry_after_ms_is_honoured_in_milliseconds():
    behaviour = in_turn(rate_limited(**{"retry-after-ms": "150"}), send(200, chat("ok")))
    # A long backoff: were the header ignored, the retry would come 2.5 s or more later.
    async with serving(behaviour) as server, stacked(server.url, max_attempts=2, backoff_s=5.0) as (engine, _):
        await call(engine, chat_request())
    assert 0.15 <= server.hits[1].at - server.hits[0].at < 1.5


async def test_retry_after_as_an_http_date_is_read_and_capped(log_lines):
    in_an_hour = formatdate(time.time() + 3600, usegmt=True)
    behaviour = in_turn(rate_limited(**{"Retry-After": in_an_hour}), send(200, chat("ok")))
    async with serving(behaviour) as server, \
            stacked(server.url, max_attempts=2, max_retry_wait_s=0.1, backoff_s=5.0) as (engine, _):
        await call(engine, chat_request())
    (capped,) = [line for line in log_lines if line["event"] == "engine.retry_after_capped"]
    assert 3590 < capped["asked_s"] <= 3600 and capped["waiting_s"] == 0.1


@pytest.mark.parametrize("value", ["soon", "-5", "nan", "inf", ""])
async def test_a_nonsense_retry_after_neither_crashes_nor_waits_long(value):
    behaviour = in_turn(rate_limited(**{"Retry-After": value}), send(200, chat("ok")))
    async with serving(behaviour) as server, \
            stacked(server.url, max_attempts=2, max_retry_wait_s=0.3) as (engine, ledger):
        result = await call(engine, chat_request())
    assert result.choices[0].text == "ok"
    assert server.hits[1].at - server.hits[0].at < 1.5
    assert ledger.by_role()["policy"].faults == {"rate_limited": 1}


async def test_persistent_429_ends_in_call_failed_and_halves_the_concurrency():
    async with serving(rate_limited(**{"Retry-After": "0"})) as server, \
            stacked(server.url, max_attempts=3, max_concurrency=8) as (engine, ledger):
        with pytest.raises(CallFailed) as failed:
            await call(engine, chat_request())
        assert layer(engine, LimitsLayer).limiter.total_tokens < 8
    assert failed.value.faults == ["rate_limited"] * 3
    assert len(server.hits) == 3
    assert ledger.by_role()["policy"].faults == {"rate_limited": 3}


# --- a chat template that rejects the system role ----------------------------------------------


def rejecting_system(status: int, message: str) -> Any:
    refuse, answer = send(status, error(message)), send(200, chat("folded fine"))

    async def behaviour(hit: Hit, writer: Any) -> None:
        roles = [m["role"] for m in hit.json().get("messages", [])]
        await (refuse if "system" in roles else answer)(hit, writer)

    return behaviour


TEMPLATE_REFUSALS = {
    "mistral_400_alternate": (400, "Conversation roles must alternate user/assistant/user/assistant/..."),
    "gemma_400_system": (400, "System role not supported"),
    "vllm_422_system": (422, "the system role is not supported by this model's chat template"),
    "llamacpp_500_system": (500, "System role not supported"),
}


@pytest.mark.parametrize("name", list(TEMPLATE_REFUSALS))
async def test_a_template_that_rejects_the_system_role_gets_it_folded_once_and_for_good(name):
    status, message = TEMPLATE_REFUSALS[name]
    async with serving(rejecting_system(status, message)) as server, \
            stacked(server.url, max_attempts=1) as (engine, ledger):
        first = await call(engine, chat_request(system="Be brief."))
        second = await call(engine, chat_request(system="Be brief."))
    assert [first.choices[0].text, second.choices[0].text] == ["folded fine"] * 2
    assert engine.bottom.folds_system
    assert len(server.hits) == 3  # one refusal, then every request folded from the start
    folded = server.hits[1].json()["messages"]
    assert [m["role"] for m in folded] == ["user"]
    assert folded[0]["content"].startswith("Be brief.") and folded[0]["content"].endswith("Hi?")
    assert ledger.by_role()["policy"].faults == {}  # handled inside the engine, not a retried fault


async def test_a_role_complaint_without_a_system_message_is_not_folded_but_rejected():
    body = error("Conversation roles must alternate user/assistant/user/assistant/...")
    async with serving(send(400, body)) as server, stacked(server.url, max_attempts=2) as (engine, ledger):
        with pytest.raises(CallFailed) as failed:
            await call(engine, chat_request())
    assert failed.value.faults == ["rejected"]
    assert not engine.bottom.folds_system
    assert len(server.hits) == 1
    assert all(json.loads(hit.body)["messages"][0]["role"] == "user" for hit in server.hits)
