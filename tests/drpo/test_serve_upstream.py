"""`serve`'s lean OpenAI-compatible engine (drpo/serve_upstream.py) behaves as the SDK engine does.

The same hostile servers as tests/hostile (a valid reply, every kind of garbage in a 200, every
refusal and error status, a reset, a cut reply, a hang past the timeout) answer one call from each
engine; a user relies on getting the same result or the same fault (type, kind, status, the wait
a 429 asked for) from `serve` as from every other command, and on the key never showing. The
bodies both engines send for the same request are the same JSON.
"""

from __future__ import annotations

import json
from email.utils import formatdate
from typing import Any

import pytest

from backends.errors import EngineFault
from backends.openai_compat import OpenAICompatEngine
from backends.protocol import Layer
from drpo.serve_upstream import LeanOpenAIEngine, build_serve_engine
from schemas.config import BackendConfig
from schemas.errors import ProjectError
from schemas.llm import LLMRequest, Message, Sampling
from schemas.outputs import RewriteOutput
from tests.hostile.calls import KEY, KEY_ENV, call, chat_request, text_request
from tests.hostile.servers import chat, cut, error, hang, reset, response, send, serving, text_completion
from tests.hostile.test_replies import body_garbage, content_garbage
from tests.hostile.test_statuses import REFUSALS

pytestmark = [pytest.mark.anyio, pytest.mark.real_engine]


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)


def statuses() -> dict[str, Any]:
    later = formatdate(timeval=None, usegmt=True)
    cases = {f"refusal_{name}": send(status, body) for name, (status, body, _) in REFUSALS.items()}
    return {**cases,
            "400_context": send(400, error(f"context length exceeded; key {KEY}")),
            "413": send(413, error("too large")), "422": send(422, error("unprocessable")),
            "500": send(500, error("boom")), "503_html": send(503, "<html>down</html>", content_type="text/html"),
            "408": send(408, error("timeout")), "409": send(409, error("conflict")),
            "429_seconds": send(429, error("slow down"), headers={"Retry-After": "7"}),
            "429_ms": send(429, error("slow down"), headers={"retry-after-ms": "1500"}),
            "429_date": send(429, error("slow down"), headers={"Retry-After": later}),
            "system_rejected": send(500, error("System role not supported"))}


def transport(endpoint: str) -> dict[str, Any]:
    reply = chat("ok") if endpoint == "chat" else text_completion("ok")
    return {"reset": reset, "cut_in_the_body": cut(response(200, reply), keep=90), "hang": hang}


def valid(endpoint: str) -> dict[str, Any]:
    reply = chat if endpoint == "chat" else text_completion
    return {"one": send(200, reply("the answer")), "two_choices": send(200, reply("both", n=2)),
            "more_choices_than_asked": send(200, reply("many", n=5)),
            "surrogate_in_text": send(200, json.dumps(reply("a\ud800b"))),
            "no_usage": send(200, {k: v for k, v in reply("x").items() if k != "usage"}),
            "finish_length": send(200, chat("cut", finish_reason="length") if endpoint == "chat" else reply("x"))}


def behaviours(endpoint: str) -> dict[str, Any]:
    return {**valid(endpoint), **body_garbage(), **content_garbage(endpoint), **statuses(), **transport(endpoint)}


CASES = [(endpoint, name) for endpoint in ("chat", "completions") for name in behaviours(endpoint)]


def ask(endpoint: str) -> LLMRequest:
    request = chat_request() if endpoint == "chat" else text_request()
    return request.model_copy(update={"sampling": request.sampling.model_copy(update={"n": 2, "seed": 3,
                                                                                      "stop": ["<END>"]})})


async def outcome(engine: OpenAICompatEngine, request: LLMRequest) -> tuple[Any, ...]:
    """What a caller can tell apart: the choices, usage and model, or the fault's type, kind,
    status and the wait it asks for."""
    try:
        result = await call(engine, request)
    except (EngineFault, ProjectError) as fault:
        assert KEY not in str(fault)
        wait = getattr(fault, "retry_after_s", None)
        return (type(fault).__name__, getattr(fault, "kind", None), getattr(fault, "status", None),
                None if wait is None else round(wait))
    finally:
        await engine.aclose()
    return ("ok", [(c.text, c.finish_reason) for c in result.choices], result.usage.tokens_in,
            result.usage.tokens_out, result.model)


@pytest.mark.parametrize(("endpoint", "name"), CASES, ids=[f"{e}-{n}" for e, n in CASES])
async def test_the_lean_engine_gives_what_the_sdk_engine_gives(endpoint, name):
    got = []
    for kind in (OpenAICompatEngine, LeanOpenAIEngine):
        async with serving(behaviours(endpoint)[name], hold_s=3.0) as server:
            got.append(await outcome(kind("m", base_url=server.url, api_key_env=KEY_ENV, timeout_s=1.0), ask(endpoint)))
            bodies = [hit.json() for hit in server.hits]
            headers = [hit.headers for hit in server.hits]
        assert all(h["authorization"] == f"Bearer {KEY}" for h in headers)
        got.append(bodies)
    sdk, sdk_bodies, lean, lean_bodies = got
    assert lean == sdk
    assert lean_bodies == sdk_bodies  # the same JSON, field for field


async def test_a_folded_system_message_and_a_structured_request_go_as_through_the_sdk():
    """The base class's two one-way switches hold: a template that rejects the system role gets it
    folded into the first user turn; a `json_schema` request goes through the SDK, as before."""
    system_rejected = send(500, error("System role not supported"))
    async with serving(lambda hit, writer: (system_rejected if hit.index == 0 else send(200, chat("ok")))(hit, writer)
                       ) as server:
        engine = LeanOpenAIEngine("m", base_url=server.url, api_key_env=KEY_ENV, timeout_s=2.0)
        try:
            result = await call(engine, chat_request(system="Be brief."))
            structured = LLMRequest(role="criteria", messages=[Message(role="user", content="Pick")],
                                    sampling=Sampling(max_tokens=16), schema_name="prompt_rewrite",
                                    output_type=RewriteOutput)
            await call(engine, structured)
        finally:
            await engine.aclose()
    first, folded, schema = (hit.json() for hit in server.hits)
    assert [m["role"] for m in first["messages"]] == ["system", "user"] and result.choices[0].text == "ok"
    assert folded["messages"] == [{"role": "user", "content": "Be brief.\n\nHi?"}] and engine.folds_system
    assert schema["response_format"]["type"] == "json_schema"


def test_serve_builds_the_lean_engine_for_openai_backends_and_the_registrys_otherwise(tmp_path):
    single = build_serve_engine(BackendConfig(kind="openai", model="m", base_url="http://127.0.0.1:9/v1"), "m")
    routed = build_serve_engine(BackendConfig(kind="openai", model="m", base_urls=["http://127.0.0.1:9/v1",
                                                                                   "http://127.0.0.1:10/v1"]), "m")
    assert type(single) is LeanOpenAIEngine
    assert [type(e) for e in routed.engines] == [LeanOpenAIEngine, LeanOpenAIEngine]  # type: ignore[attr-defined]
    assert not isinstance(single, Layer)
