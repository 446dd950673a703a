"""An HTTP 200 that is not a valid completion is a typed, retried, counted fault — never a crash.

Each behaviour is a server that answers 200 with something a completion is not (HTML, `{}`, no
choices, a number where text belongs, a body cut short, JSON nested past any parser's limit, ...),
on the chat and on the completions endpoint. Through the real stack, a user relies on three things:
a reply of garbage followed by a good one is just a retry (the answer arrives, the fault is in the
ledger); garbage on every attempt ends in `CallFailed` with each attempt's fault listed, counted
and paid for in `sent`; and garbage is never mistaken for an outage (the run goes on).
"""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest

from backends import openai_compat
from backends.cache import ResponseCache
from backends.errors import CallFailed, EmptyOutput, EngineFault, InvalidOutput
from schemas.errors import ProjectError
from tests.hostile.calls import ENDPOINTS, call, chat_request, stacked
from tests.hostile.servers import chat, in_turn, send, serving, text_completion

pytestmark = [pytest.mark.anyio, pytest.mark.real_engine]

DEEP = "[" * 50_000 + "]" * 50_000


def body_garbage() -> dict[str, Any]:
    """Replies that are wrong whatever the endpoint: id -> the behaviour."""
    return {
        "html": send(200, "<html><body><h1>Welcome to nginx!</h1></body></html>", content_type="text/html"),
        "json_without_choices": send(200, {"id": "x", "object": "chat.completion", "model": "m"}),
        "empty_object": send(200, {}),
        "choices_empty": send(200, {"choices": []}),
        "choices_not_a_list": send(200, {"choices": "ok"}),
        "choice_not_an_object": send(200, {"choices": [7]}),
        "choice_empty_object": send(200, {"choices": [{}]}),
        "json_null": send(200, "null"),
        "json_string": send(200, '"ok"'),
        "json_list": send(200, "[1, 2]"),
        "truncated_json": send(200, json.dumps(chat("ok"))[:-7]),
        "not_json_at_all": send(200, "upstream connect error or disconnect/reset before headers"),
        "nested_past_the_parser": send(200, DEEP),
        "invalid_utf8": send(200, b'{"choices": [{"message": {"content": "\xff\xfe"}, "text": "\xff"}]}'),
        "no_content_204": send(204, b"", content_type=""),
        "event_stream_unasked": send(200, "data: " + json.dumps(chat("ok")) + "\n\ndata: [DONE]\n\n",
                                     content_type="text/event-stream"),
    }


def content_garbage(endpoint: str) -> dict[str, Any]:
    """Replies whose choices hold something other than text where the text belongs."""
    reply = chat if endpoint == "chat" else text_completion
    return {
        "content_number": send(200, reply(42)),
        "content_list": send(200, reply(["o", "k"])),
        "content_object": send(200, reply({"text": "ok"})),
        "content_true": send(200, reply(True)),
    }


GARBAGE = [(endpoint, name) for endpoint in ENDPOINTS for name in [*body_garbage(), *content_garbage(endpoint)]]


KIND = {("completions", "choice_empty_object"): "empty_output"}
"""The fault of a reply where it is not `invalid_output`: a choice without its `text` holds no text."""


def garbage(endpoint: str, name: str) -> Any:
    return {**body_garbage(), **content_garbage(endpoint)}[name]


@pytest.mark.parametrize(("endpoint", "name"), GARBAGE, ids=[f"{e}-{n}" for e, n in GARBAGE])
async def test_garbage_on_every_attempt_ends_in_call_failed_with_each_attempt_counted(endpoint, name):
    ask, _, path = ENDPOINTS[endpoint]
    async with serving(garbage(endpoint, name)) as server, stacked(server.url, max_attempts=3) as (engine, ledger):
        with pytest.raises(CallFailed) as failed:
            await call(engine, ask())
    kind = KIND.get((endpoint, name), "invalid_output")
    assert failed.value.faults == [kind] * 3
    assert isinstance(failed.value.last, InvalidOutput if kind == "invalid_output" else EmptyOutput)
    assert "\n" not in str(failed.value)  # one line, whatever the server sent
    assert server.paths == [path] * 3
    account = ledger.by_role()["policy"]
    assert account.faults == {kind: 3}
    assert account.failed_calls == 1
    assert ledger.sent("policy") == 3  # every attempt sent is paid for


@pytest.mark.parametrize(("endpoint", "name"), GARBAGE, ids=[f"{e}-{n}" for e, n in GARBAGE])
async def test_garbage_then_a_completion_is_one_retry_and_the_answer_arrives(endpoint, name):
    ask, reply, path = ENDPOINTS[endpoint]
    behaviour = in_turn(garbage(endpoint, name), send(200, reply("the answer")))
    async with serving(behaviour) as server, stacked(server.url, max_attempts=2) as (engine, ledger):
        result = await call(engine, ask())
    assert [c.text for c in result.choices] == ["the answer"]
    assert server.paths == [path] * 2
    account = ledger.by_role()["policy"]
    kind = KIND.get((endpoint, name), "invalid_output")
    assert account.faults == {kind: 1}
    assert account.failed_calls == 0
    # Recorded calls are the replies that were completions: an empty one was answered (and paid).
    assert account.usage.calls == (2 if kind == "empty_output" else 1)
    assert ledger.sent("policy") == 2


async def test_garbage_on_call_after_call_is_not_an_outage():
    """Bad output is the engine's fault, not a sign it is down: every call fails alone."""
    async with serving(send(200, {})) as server, stacked(server.url, max_attempts=1, down_after=2) as (engine, _):
        for _ in range(4):
            with pytest.raises(CallFailed):
                await call(engine, chat_request())
    assert len(server.hits) == 4


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
async def test_a_valid_completion_labelled_with_the_wrong_content_type_is_accepted(endpoint):
    ask, reply, _ = ENDPOINTS[endpoint]
    async with serving(send(200, reply("fine"), content_type="text/plain")) as server, \
            stacked(server.url, max_attempts=1) as (engine, ledger):
        result = await call(engine, ask())
    assert [c.text for c in result.choices] == ["fine"]
    assert ledger.by_role()["policy"].faults == {}


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
async def test_a_lone_surrogate_in_a_reply_is_stored_and_replayed_not_a_crash(endpoint, tmp_path):
    """JSON may carry "\\ud800", which no UTF-8 file or database can hold: the answer arrives with
    U+FFFD in its place, and the response cache stores and replays it."""
    ask, reply, _ = ENDPOINTS[endpoint]
    body = json.dumps(reply("a\ud800b"))  # json.dumps writes the surrogate as the escape \ud800
    cache = ResponseCache(tmp_path / "cache.sqlite")
    try:
        async with serving(send(200, body)) as server, \
                stacked(server.url, max_attempts=1, caches=[cache]) as (engine, ledger):
            first = await call(engine, ask())
            again = await call(engine, ask())
    finally:
        cache.close()
    assert [c.text for c in first.choices] == ["a\ufffdb"]
    assert [c.text for c in again.choices] == ["a\ufffdb"]
    assert len(server.hits) == 1  # the second answer came from the cache
    assert ledger.by_role()["policy"].cache_hits == 1


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
async def test_a_reply_with_empty_text_is_an_empty_output_fault(endpoint):
    ask, reply, _ = ENDPOINTS[endpoint]
    async with serving(in_turn(send(200, reply(None)), send(200, reply("  ")), send(200, reply("ok")))) as server, \
            stacked(server.url, max_attempts=3) as (engine, ledger):
        result = await call(engine, ask())
    assert [c.text for c in result.choices] == ["ok"]
    assert ledger.by_role()["policy"].faults == {"empty_output": 2}


async def test_a_non_string_finish_reason_is_invalid_output_not_a_validation_crash():
    async with serving(in_turn(send(200, chat("ok", finish_reason=123)), send(200, chat("ok")))) as server, \
            stacked(server.url, max_attempts=2) as (engine, ledger):
        result = await call(engine, chat_request())
    assert result.choices[0].finish_reason == "stop"
    assert ledger.by_role()["policy"].faults == {"invalid_output": 1}


async def test_no_foreign_exception_leaves_the_stack_for_any_garbage():
    """One request per behaviour, on one engine: only our types come out (or an answer)."""
    behaviours = [*body_garbage().values(), *content_garbage("chat").values()]
    async with serving(in_turn(*behaviours)) as server, stacked(server.url, max_attempts=1) as (engine, _):
        outcomes = []
        for _ in behaviours:
            try:
                outcomes.append(await call(engine, chat_request()))
            except (CallFailed, ProjectError) as known:
                outcomes.append(known)
    assert all(isinstance(o, CallFailed) and isinstance(o.last, EngineFault) for o in outcomes)
    assert len(server.hits) == len(behaviours)


@pytest.mark.parametrize(("endpoint", "n"), [("chat", 1), ("chat", 2), ("completions", 1), ("completions", 3)])
async def test_more_choices_than_asked_are_not_taken_as_more_samples(endpoint, n):
    """A server that answers 5 choices to n: only n come back (more would weigh an average)."""
    ask, reply, _ = ENDPOINTS[endpoint]
    async with serving(send(200, reply("same", n=5))) as server, stacked(server.url, max_attempts=1) as (engine, _):
        result = await call(engine, ask(n=n))
    assert len(result.choices) == n
    assert len(server.hits) == 1


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
async def test_an_empty_choice_among_good_ones_is_dropped_counted_and_topped_up(endpoint):
    """An empty sample is never an answer (it could be scored): it is dropped, counted, and the
    missing sample asked for again on its own."""
    ask, reply, _ = ENDPOINTS[endpoint]
    body = reply("kept", n=3)
    body["choices"][0][("message" if endpoint == "chat" else "text")] = (
        {"role": "assistant", "content": "   "} if endpoint == "chat" else "")
    async with serving(in_turn(send(200, body), send(200, reply("topped up")))) as server, \
            stacked(server.url, max_attempts=1) as (engine, ledger):
        result = await call(engine, ask(n=3))
    assert [c.text for c in result.choices] == ["kept", "kept", "topped up"]
    assert ledger.by_role()["policy"].faults == {"empty_output": 1}
    assert [hit.json()["n"] for hit in server.hits] == [3, 1]


def chunked(body: bytes, *, headers: dict[str, str] | None = None) -> bytes:
    """A 200 with no Content-Length: the body in 1 KiB chunks, as a streaming proxy sends it."""
    lines = ["HTTP/1.1 200 OK", "Transfer-Encoding: chunked", "Content-Type: application/json", "Connection: close",
             *(f"{name}: {value}" for name, value in (headers or {}).items())]
    parts = [body[i:i + 1024] for i in range(0, len(body), 1024)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + b"".join(
        f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in parts) + b"0\r\n\r\n"


def oversized(limit: int) -> dict[str, Any]:
    """Completions past `limit` bytes, however the server frames them."""
    big = json.dumps(chat("x" * 2 * limit)).encode()
    return {
        "declared_length": send(200, big),
        "chunked": send_raw(chunked(big)),
        "gzip_that_inflates_past_it": send(200, gzip.compress(big), headers={"Content-Encoding": "gzip"}),
    }


def send_raw(raw: bytes) -> Any:
    async def behaviour(hit: Any, writer: Any) -> None:
        writer.write(raw)
        await writer.drain()

    return behaviour


@pytest.mark.parametrize("name", list(oversized(1)))
async def test_a_reply_past_the_size_limit_is_invalid_output_and_never_read_whole(name, monkeypatch):
    """A server that sends without end (or a small gzip that inflates to gigabytes) was read whole
    into memory; past `MAX_REPLY_BYTES` it is unusable output, retried like any other garbage."""
    limit = 4096
    monkeypatch.setattr(openai_compat, "MAX_REPLY_BYTES", limit)
    async with serving(oversized(limit)[name]) as server, stacked(server.url, max_attempts=2) as (engine, ledger):
        with pytest.raises(CallFailed) as failed:
            await call(engine, chat_request())
    assert failed.value.faults == ["invalid_output"] * 2 and f"over {limit} bytes" in str(failed.value.last)
    assert len(server.hits) == 2 and ledger.by_role()["policy"].faults == {"invalid_output": 2}


@pytest.mark.parametrize("framing", ["chunked", "gzip"])
async def test_a_reply_within_the_limit_is_read_however_it_is_framed(framing, monkeypatch):
    monkeypatch.setattr(openai_compat, "MAX_REPLY_BYTES", 4096)
    body = json.dumps(chat("y" * 1500)).encode()
    behaviour = (send_raw(chunked(body)) if framing == "chunked"
                 else send(200, gzip.compress(body), headers={"Content-Encoding": "gzip"}))
    async with serving(behaviour) as server, stacked(server.url) as (engine, _):
        result = await call(engine, chat_request())
    assert [c.text for c in result.choices] == ["y" * 1500]
