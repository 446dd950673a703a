"""The OpenAI-compatible engine's own transport (backends/openai_compat.py) sends what the `openai`
SDK sent and reads error statuses as it read them.

The engine used to call through the SDK; it now posts the JSON itself. A user's server sees the
same request, field for field (the SDK, called as the engine called it, is the oracle here), with
the key as a bearer token; a fault says what it said ("HTTP 500: Error code: 500 - boom"); the
one-way switches (a folded system message, `json_object` for a server that rejects `json_schema`)
hold; and one engine keeps working when `AlignedModel.answer_sync` runs each call in a new event
loop, without a warning about a session left open. What the engine makes of every kind of
garbage, status and broken connection is in tests/hostile.
"""

from __future__ import annotations

import gc
import json
import logging
import warnings
from http.server import BaseHTTPRequestHandler
from typing import Any

import anyio
import openai
import pytest

from backends.errors import RateLimited, TransportFault
from backends.openai_compat import OpenAICompatEngine
from schemas.llm import LLMRequest, Message, Sampling
from schemas.outputs import RewriteOutput
from tests.backends.stub_server import StubServer, completion, serve_loopback, stub  # noqa: F401 - the fixture
from tests.hostile.calls import KEY, KEY_ENV, call, chat_request, text_request
from tests.hostile.servers import chat, error, send, serving, text_completion

pytestmark = [pytest.mark.anyio, pytest.mark.real_engine]


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)


def sampled(request: LLMRequest) -> LLMRequest:
    return request.model_copy(update={"sampling": request.sampling.model_copy(update={"n": 2, "seed": 3,
                                                                                      "stop": ["<END>"]})})


def structured(*, chat_mode: bool) -> LLMRequest:
    shape = {"messages": [Message(role="user", content="Pick")]} if chat_mode else {"prompt": "Pick:"}
    return LLMRequest(role="criteria", sampling=Sampling(max_tokens=16), schema_name="prompt_rewrite",
                      output_type=RewriteOutput, **shape)


REQUESTS = {"chat": sampled(chat_request(system="Be brief.")), "completions": sampled(text_request()),
            "chat_structured": structured(chat_mode=True), "completions_structured": structured(chat_mode=False)}


async def through_the_sdk(engine: OpenAICompatEngine, url: str, request: LLMRequest) -> None:
    """The call the engine made through the SDK before it posted the JSON itself."""
    client = openai.AsyncOpenAI(api_key=KEY, base_url=url, max_retries=0)
    params = engine._params(request)
    try:
        if request.messages is not None:
            if request.json_schema is not None:
                params["response_format"] = engine._response_format(request)
            await client.chat.completions.create(messages=[m.model_dump() for m in request.messages], **params)
        else:
            if request.json_schema is not None:
                params["extra_body"] = {"structured_outputs": {"json": request.json_schema}}
            await client.completions.create(prompt=request.prompt or "", **params)
    finally:
        await client.close()


@pytest.mark.parametrize("name", list(REQUESTS))
async def test_the_body_is_the_one_the_sdk_sent_and_the_key_is_a_bearer_token(name):
    request = REQUESTS[name]
    reply = chat("ok", n=2) if request.messages is not None else text_completion("ok", n=2)
    async with serving(send(200, reply)) as server:
        engine = OpenAICompatEngine("m", base_url=server.url, api_key_env=KEY_ENV, timeout_s=5.0)
        try:
            result = await call(engine, request)
            await through_the_sdk(engine, server.url, request)
        finally:
            await engine.aclose()
    ours, sdks = server.hits
    assert ours.path == sdks.path and ours.json() == sdks.json()
    assert ours.headers["authorization"] == f"Bearer {KEY}" and ours.headers["content-type"] == "application/json"
    assert [c.text for c in result.choices] == ["ok"] * request.sampling.n


@pytest.mark.parametrize(("reply", "fault", "says", "wait"), [
    (send(500, error("boom")), TransportFault, "HTTP 500: Error code: 500 - boom", None),
    (send(503, "<html><b>down</b></html>", content_type="text/html"), TransportFault, "HTTP 503: Error code: 503 -",
     None),
    (send(429, error("slow down"), headers={"Retry-After": "7"}), RateLimited, "HTTP 429: Error code: 429 - slow down",
     7.0),
    (send(502, b""), TransportFault, "HTTP 502: Error code: 502 -", None),
], ids=["json_error", "html_page", "rate_limited", "empty_body"])
async def test_an_error_status_reads_as_the_sdk_read_it(reply, fault, says, wait):
    async with serving(reply) as server:
        engine = OpenAICompatEngine("m", base_url=server.url, api_key_env=KEY_ENV, timeout_s=5.0)
        try:
            with pytest.raises(fault) as failed:
                await call(engine, chat_request())
        finally:
            await engine.aclose()
    assert str(failed.value).startswith(says) and "<" not in str(failed.value)
    assert getattr(failed.value, "retry_after_s", None) == wait


async def test_a_folded_system_message_and_a_structured_request_keep_their_switches():
    """A template that rejects the system role gets it folded into the first user turn, for good;
    a server that rejects `json_schema` gets `json_object` with the schema, for good."""
    refusals = {0: send(500, error("System role not supported")),
                2: send(500, error("Input should be 'text' or 'json_object' (response_format)"))}

    async def behaviour(hit: Any, writer: Any) -> None:
        await refusals.get(hit.index, send(200, chat('{"prompt": "p"}')))(hit, writer)

    async with serving(behaviour) as server:
        engine = OpenAICompatEngine("m", base_url=server.url, api_key_env=KEY_ENV, timeout_s=5.0)
        try:
            result = await call(engine, chat_request(system="Be brief."))
            await call(engine, structured(chat_mode=True))
        finally:
            await engine.aclose()
    first, folded, schema, json_object = (hit.json() for hit in server.hits)
    assert [m["role"] for m in first["messages"]] == ["system", "user"] and engine.folds_system
    assert folded["messages"] == [{"role": "user", "content": "Be brief.\n\nHi?"}] and result.choices[0].text
    assert schema["response_format"]["type"] == "json_schema"
    assert json_object["response_format"] == {"type": "json_object", "schema": schema["response_format"][
        "json_schema"]["schema"]} and engine.schema_mode == "json_object"


def test_one_engine_answers_from_one_event_loop_after_another_without_warnings(stub: StubServer, monkeypatch,
                                                                                caplog):
    """`AlignedModel.answer_sync` runs each call in a new loop; connections belong to the loop
    that opened them, so the engine opens new ones, and the old session is closed quietly."""
    stub.responder = lambda body: (200, {}, completion("fine"))
    engine = OpenAICompatEngine("m", base_url=stub.url, api_key_env=KEY_ENV, timeout_s=5.0)
    request = LLMRequest(role="policy", messages=[Message(role="user", content="Hi?")], sampling=Sampling(max_tokens=4))
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.DEBUG, logger="asyncio"):
        warnings.simplefilter("always")
        texts = [anyio.run(engine.complete, request).choices[0].text for _ in range(3)]
        anyio.run(engine.aclose)
        gc.collect()
    assert texts == ["fine"] * 3 and len(stub.seen) == 3
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert "Unclosed" not in caplog.text


async def test_a_remote_server_is_reached_through_the_environments_proxy_and_loopback_never_is(monkeypatch):
    seen: list[str] = []

    class Proxy(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            seen.append(self.path)  # a proxy is asked for the absolute URL
            self.rfile.read(int(self.headers["Content-Length"]))
            body = json.dumps(completion("via the proxy")).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

    monkeypatch.setenv("PROXY_TEST_KEY", "k")
    with serve_loopback(Proxy) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.removesuffix("/v1"))
        monkeypatch.delenv("NO_PROXY", raising=False)
        remote = OpenAICompatEngine("m", base_url="http://models.example/v1", api_key_env="PROXY_TEST_KEY")
        try:
            result = await remote.complete(LLMRequest(role="policy", messages=[Message(role="user", content="hi")]))
        finally:
            await remote.aclose()
        assert result.choices[0].text == "via the proxy"
        assert seen == ["http://models.example/v1/chat/completions"]
        local = OpenAICompatEngine("m", base_url=proxy, api_key_env="PROXY_TEST_KEY")  # loopback: direct
        try:
            await local.complete(LLMRequest(role="policy", messages=[Message(role="user", content="hi")]))
        finally:
            await local.aclose()
        assert seen[1] == "/v1/chat/completions"  # asked as a server, not as a proxy
