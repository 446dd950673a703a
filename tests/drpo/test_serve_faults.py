"""`serve` in production: the bearer token, the body and concurrency caps, upstream faults as
OpenAI-style errors with the right status (never a traceback, never a secret), and one trace line
per request."""

from __future__ import annotations

import gzip
import json
import socket
from collections.abc import AsyncIterator

import aiohttp
import anyio
import openai
import pytest
from anyio.abc import SocketStream

from drpo.serve_wire import ServeLimits
from telemetry.logs import run_logs
from telemetry.redact import Redactor
from tests.backends.stub_server import stub
from tests.drpo.test_serve import (
    QUERY,
    WORLD_KEY,
    aligned_server,
    artifacts,
    client,
    read,
    sent,
    world,
    world_backend,
)
from tests.drpo_world import DRPOWorld

pytestmark = [pytest.mark.anyio, pytest.mark.real_engine]
__all__ = ["artifacts", "stub", "world"]  # fixtures

TOKEN = "serve-token-7c1e9a3f5b2d4e6a8c0f"
MESSAGES = [{"role": "user", "content": QUERY}]


def name_of(artifacts) -> str:  # type: ignore[no-untyped-def]
    return f"drpo-{read(artifacts['chat']).run_id}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def no_secret_or_traceback(text: str, *also: str) -> bool:
    return all(s not in text for s in (WORLD_KEY, TOKEN, "Traceback", 'File "', *also))


async def test_with_a_token_only_its_bearer_is_answered_and_health_stays_open(artifacts, world, tmp_path):
    async with aligned_server(artifacts["chat"], world_backend(world), tmp_path, auth_token=TOKEN) as (url, _):
        async with client(url, TOKEN) as good, client(url, "wrong-token") as bad:
            reply = await good.chat.completions.create(model=name_of(artifacts), messages=MESSAGES)
            with pytest.raises(openai.AuthenticationError) as refused:
                await bad.chat.completions.create(model=name_of(artifacts), messages=MESSAGES)
            with pytest.raises(openai.AuthenticationError):
                await bad.models.list()
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{url}/v1/chat/completions", json={"messages": MESSAGES}) as anonymous:
                body, challenge = await anonymous.json(), anonymous.headers.get("WWW-Authenticate")
            async with session.get(f"{url}/health") as health:
                health_status = health.status
    assert reply.choices[0].message.content.startswith("ANSWER[")
    assert anonymous.status == 401 and challenge == "Bearer" and body["error"]["code"] == "invalid_api_key"
    assert refused.value.status_code == 401 and TOKEN not in str(refused.value.body)
    assert health_status == 200 and len(sent(world)) == 1


async def test_without_a_token_any_key_is_answered(artifacts, world, tmp_path):
    async with aligned_server(artifacts["chat"], world_backend(world), tmp_path) as (url, _), client(url, "x") as c:
        reply = await c.chat.completions.create(model=name_of(artifacts), messages=MESSAGES)
    assert reply.choices[0].message.content.startswith("ANSWER[")


async def test_an_upstream_500_is_a_502_that_shows_no_secret_no_url_and_no_traceback(artifacts, stub, tmp_path,
                                                                                   monkeypatch):
    monkeypatch.setenv("WORLD_KEY", WORLD_KEY)
    stub.responder = lambda body: (500, {}, {"error": {"message": f"boom with {WORLD_KEY} and {TOKEN}"}})
    redactor = Redactor([WORLD_KEY, TOKEN])
    server = aligned_server(artifacts["chat"], world_backend(stub.url), tmp_path, redactor=redactor)
    async with server as (url, _), client(url) as c:
        with pytest.raises(openai.InternalServerError) as failed:
            await c.chat.completions.create(model=name_of(artifacts), messages=MESSAGES)
    error = failed.value
    assert error.status_code == 502 and error.body["code"] == "upstream_error" and error.body["type"] == "server_error"
    assert no_secret_or_traceback(error.response.text, stub.url.rsplit(":", 1)[0] + ":")
    assert error.response.headers["x-request-id"] in error.body["message"]


async def test_an_upstream_that_rejects_the_request_is_a_400_with_its_reason_scrubbed(artifacts, stub, tmp_path,
                                                                                    monkeypatch):
    monkeypatch.setenv("WORLD_KEY", WORLD_KEY)
    stub.responder = lambda body: (400, {}, {"error": {"message": f"context length exceeded ({TOKEN})"}})
    redactor = Redactor([WORLD_KEY, TOKEN])
    backend = world_backend(stub.url, max_attempts=4)  # the default: retries for what a retry can cure
    server = aligned_server(artifacts["chat"], backend, tmp_path, redactor=redactor)
    async with server as (url, _), client(url) as c:
        with pytest.raises(openai.BadRequestError, match="context length exceeded") as rejected:
            await c.chat.completions.create(model=name_of(artifacts), messages=MESSAGES)
    assert rejected.value.body["code"] == "upstream_rejected" and "***" in rejected.value.body["message"]
    assert no_secret_or_traceback(rejected.value.response.text)
    assert len([s for s in stub.seen if s.path.endswith("/chat/completions")]) == 1  # answered at once, not retried


async def test_an_upstream_that_is_down_is_a_502_then_a_503_with_retry_after(artifacts, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_KEY", WORLD_KEY)
    down = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    async with aligned_server(artifacts["chat"], world_backend(down), tmp_path) as (url, _), client(url) as c:
        statuses, bodies = [], []
        for _ in range(3):  # the outage layer calls an engine down after three calls lost in a row
            with pytest.raises(openai.InternalServerError) as failed:
                await c.chat.completions.create(model=name_of(artifacts), messages=MESSAGES)
            statuses.append(failed.value.status_code)
            bodies.append(failed.value.body)
    assert statuses == [502, 502, 503]
    assert [b["code"] for b in bodies] == ["upstream_error", "upstream_error", "engine_unavailable"]
    assert failed.value.response.headers["Retry-After"] == "1"
    assert all(no_secret_or_traceback(json.dumps(b), down) for b in bodies)


async def test_a_body_over_the_cap_is_a_413_announced_or_chunked(artifacts, world, tmp_path):
    limits = ServeLimits(max_body_bytes=4096)
    big = [{"role": "user", "content": "x" * 10_000}]
    async with aligned_server(artifacts["chat"], world_backend(world), tmp_path, limits=limits) as (url, _):
        async with client(url) as c:
            with pytest.raises(openai.APIStatusError) as too_large:
                await c.chat.completions.create(model=name_of(artifacts), messages=big)
            small = await c.chat.completions.create(model=name_of(artifacts), messages=MESSAGES)

        async def chunked() -> AsyncIterator[bytes]:
            yield json.dumps({"messages": big})[:5000].encode()
            yield b"x" * 5000

        async with aiohttp.ClientSession() as session, session.post(f"{url}/v1/chat/completions",
                                                                    data=chunked()) as raw:
            raw_status, raw_body = raw.status, await raw.json()
    assert too_large.value.status_code == 413 and too_large.value.body["code"] == "request_too_large"
    assert raw_status == 413 and raw_body["error"]["code"] == "request_too_large"
    assert small.choices[0].message.content.startswith("ANSWER[") and len(sent(world)) == 1


async def test_beyond_the_concurrency_cap_a_request_gets_429_with_retry_after_and_the_others_finish(artifacts, tmp_path,
                                                                                                  monkeypatch):
    monkeypatch.setenv("WORLD_KEY", WORLD_KEY)
    slow = DRPOWorld(delay_s=0.6)
    limits = ServeLimits(max_concurrent=2)
    with slow.serving():
        serve = aligned_server(artifacts["chat"], world_backend(slow), tmp_path, limits=limits)
        async with serve as (url, server), client(url) as c:
            answers: list[str] = []

            async def ask() -> None:
                reply = await c.chat.completions.create(model=name_of(artifacts), messages=MESSAGES)
                answers.append(reply.choices[0].message.content)

            async with anyio.create_task_group() as tg:
                tg.start_soon(ask)
                tg.start_soon(ask)
                with anyio.fail_after(10):
                    while len(slow.received) < 2:
                        await anyio.sleep(0.01)
                busy = server.in_flight
                with pytest.raises(openai.RateLimitError) as refused:
                    await c.chat.completions.create(model=name_of(artifacts), messages=MESSAGES)
    assert busy == 2 and refused.value.response.headers["Retry-After"] == "1"
    assert refused.value.body["code"] == "rate_limit_exceeded"
    assert len(answers) == 2 and len(slow.received) == 2


async def test_malformed_bodies_unknown_routes_and_methods_get_openai_error_bodies(artifacts, world, tmp_path):
    server = aligned_server(artifacts["chat"], world_backend(world), tmp_path)
    async with server as (url, _), aiohttp.ClientSession() as session:
        results = []
        for method, path, data in [("POST", "/v1/chat/completions", b"{not json"),
                                   ("POST", "/v1/completions", b"[1, 2]"),
                                   ("POST", "/v1/chat/completions", b'{"messages": [{"content": "\\ud800"}]}'),
                                   ("POST", "/v1/chat/completions", b'{"temperature": 1e309}'),
                                   ("POST", "/v1/embeddings", b"{}"), ("GET", "/v1/chat/completions", None)]:
            async with session.request(method, f"{url}{path}", data=data) as response:
                results.append((response.status, (await response.json())["error"]))
    assert [status for status, _ in results] == [400, 400, 400, 400, 404, 405]
    assert "surrogate" in results[2][1]["message"] and "infinity" in results[3][1]["message"]
    assert "not valid JSON" in results[0][1]["message"] and "JSON object" in results[1][1]["message"]
    assert "line 1 column 2" in results[0][1]["message"]  # where it breaks
    assert all(set(error) == {"message", "type", "param", "code"} for _, error in results)
    assert sent(world) == []


async def test_every_request_leaves_one_trace_line_with_its_id_latency_tokens_and_examples(artifacts, world, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    redactor = Redactor([TOKEN])
    with run_logs(logs, redactor):
        server = aligned_server(artifacts["chat"], world_backend(world), tmp_path, auth_token=TOKEN, redactor=redactor)
        async with server as (url, s), client(url, TOKEN) as c:
            ok = await c.chat.completions.with_raw_response.create(model=name_of(artifacts), messages=MESSAGES)
            with pytest.raises(openai.BadRequestError) as bad:
                await c.chat.completions.create(model=name_of(artifacts), messages=[{"role": "assistant",
                                                                                      "content": QUERY}])
            examples = [s.model.pool.examples.index(e) for e in s.model.request(QUERY).examples]
    text = (logs / "trace.jsonl").read_text()
    lines = [json.loads(line) for line in text.splitlines() if '"serve.request"' in line]
    assert [line["request_id"] for line in lines] == [ok.headers["x-request-id"],
                                                       bad.value.response.headers["x-request-id"]]
    good, refused = lines
    assert good["status"] == 200 and good["latency_ms"] > 0 and good["examples"] == examples
    assert (good["tokens_in"], good["tokens_out"], good["engine_calls"]) == (10, 5, 1)
    assert refused["status"] == 400 and refused["error"] == "invalid_request_error"
    assert QUERY not in text and TOKEN not in text  # what users asked is not logged; nor the token


async def test_a_client_that_leaves_is_traced_as_gone_never_as_an_internal_error(artifacts, tmp_path, monkeypatch):
    """A client that closes its connection mid-body, or while the engine answers its streaming
    request, is not a server bug: no `serve.failed` warning, no 500 `internal_error` in the trace."""
    monkeypatch.setenv("WORLD_KEY", WORLD_KEY)
    logs = tmp_path / "logs"
    logs.mkdir()
    slow = DRPOWorld(delay_s=0.3)
    streamed = json.dumps({"stream": True, "messages": MESSAGES}).encode()
    with slow.serving(), run_logs(logs, Redactor([WORLD_KEY])):
        async with aligned_server(artifacts["chat"], world_backend(slow), tmp_path) as (url, _):
            host, port = url.removeprefix("http://").rsplit(":", 1)
            for head, body in [(b"Content-Length: 100", b'{"messages": [{"ro'),
                               (f"Content-Length: {len(streamed)}".encode(), streamed)]:
                stream = await anyio.connect_tcp(host, int(port))
                await stream.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n\r\n" + body)
                await anyio.sleep(0.1)
                await stream.aclose()
            with anyio.fail_after(10):
                while "client_gone" not in ((logs / "trace.jsonl").read_text()):
                    await anyio.sleep(0.05)
    lines = [json.loads(line) for line in (logs / "trace.jsonl").read_text().splitlines()]
    cut_short, left = [line for line in lines if line["event"] == "serve.request"]
    assert cut_short["status"] == 499 and cut_short["error"] == "client_closed_request"
    assert left["status"] == 200 and left["client_gone"] is True and left["stream"] is True
    assert "serve.failed" not in (logs / "run.log").read_text()


async def test_a_request_that_is_no_http_is_refused_and_logged_as_an_event_not_an_error(artifacts, world, tmp_path,
                                                                                        caplog):
    """A header past aiohttp's limit gets its plain 400 before any handler runs. Its logger wrote
    an ERROR line for it (any client could fill the console with them); now it is one info event."""
    logs = tmp_path / "logs"
    logs.mkdir()
    with run_logs(logs, Redactor([WORLD_KEY])):
        async with aligned_server(artifacts["chat"], world_backend(world), tmp_path) as (url, _):
            host, port = url.removeprefix("http://").rsplit(":", 1)
            async with await anyio.connect_tcp(host, int(port)) as stream:
                await stream.send(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Junk: " + b"a" * 9000 + b"\r\n\r\n")
                with anyio.fail_after(10):
                    reply = await stream.receive()
    assert reply.startswith(b"HTTP/1.") and b" 400 " in reply.split(b"\r\n", 1)[0]
    events = [json.loads(line) for line in (logs / "run.log").read_text().splitlines()]
    refused = [e for e in events if e["event"] == "serve.connection_error"]
    assert len(refused) == 1 and refused[0]["severity"] == "info" and "LineTooLong" in refused[0]["error"]
    assert not [r for r in caplog.records if r.levelno >= 40], [r.getMessage() for r in caplog.records]


async def _send_headers_and_part_of_the_body(url: str) -> SocketStream:
    """A client that announces a body of 1,000 bytes, sends 12 of them, and then nothing."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    stream = await anyio.connect_tcp(host, int(port))
    await stream.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 1000\r\n\r\n{\"messages\":")
    return stream


async def test_a_client_still_sending_its_body_takes_no_slot_from_the_others(artifacts, world, tmp_path):
    """Counted from its headers, a request whose body never came held its slot for as long as its
    connection stayed open: with the cap's worth of them, every other client got 429."""
    limits = ServeLimits(max_concurrent=1)
    serve = aligned_server(artifacts["chat"], world_backend(world), tmp_path, limits=limits)
    async with serve as (url, server), await _send_headers_and_part_of_the_body(url), client(url) as c:
        with anyio.fail_after(10):
            while not server._handlers:  # the middleware is reading its body
                await anyio.sleep(0.01)
        busy = server.in_flight
        reply = await c.chat.completions.create(model=name_of(artifacts), messages=MESSAGES)
    assert busy == 0 and reply.choices[0].message.content.startswith("ANSWER[")


async def test_a_body_that_does_not_arrive_in_time_is_a_408(artifacts, world, tmp_path):
    limits = ServeLimits(body_timeout_s=0.2)
    serve = aligned_server(artifacts["chat"], world_backend(world), tmp_path, limits=limits)
    async with serve as (url, _), await _send_headers_and_part_of_the_body(url) as stream:
        with anyio.fail_after(10):
            reply = await stream.receive()
    head, _, body = reply.partition(b"\r\n\r\n")
    assert b" 408 " in head.split(b"\r\n", 1)[0]
    assert json.loads(body)["error"]["code"] == "request_timeout" and sent(world) == []


async def test_a_compressed_body_is_refused_unread_with_a_415(artifacts, world, tmp_path):
    """aiohttp inflated compressed bodies: a small gzip body refused for its inflated size was then
    inflated whole (500 MB for 486 KB) while the connection was drained, on the event loop."""
    packed = gzip.compress(json.dumps({"model": name_of(artifacts), "messages": MESSAGES}).encode())
    headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    serve = aligned_server(artifacts["chat"], world_backend(world), tmp_path)
    async with serve as (url, _), aiohttp.ClientSession() as session, session.post(
            f"{url}/v1/chat/completions", data=packed, headers=headers) as refused:
        status, error = refused.status, (await refused.json())["error"]
    assert status == 415 and error["code"] == "unsupported_content_encoding" and "Content-Encoding" in error["message"]
    assert sent(world) == []


async def test_an_error_quotes_what_the_client_sent_cut_short(artifacts, world, tmp_path):
    """A 404 for a `model` of 1 MB quoted it whole: a 1 MB error body, per request, to any client."""
    huge = "m" * 1_000_000
    bodies = [({"model": huge, "messages": MESSAGES}, 404, "model"),
              ({"messages": [{"role": huge, "content": QUERY}]}, 400, "messages.0.role")]
    serve = aligned_server(artifacts["chat"], world_backend(world), tmp_path)
    async with serve as (url, _), aiohttp.ClientSession() as session:
        answers = []
        for body, _, _ in bodies:
            async with session.post(f"{url}/v1/chat/completions", json=body) as response:
                answers.append((response.status, await response.read()))
        async with session.get(f"{url}/v1/models/{'x' * 7000}") as response:
            unknown = response.status, await response.read()
    for (status, raw), (_, expected, param) in zip(answers, bodies, strict=True):
        error = json.loads(raw)["error"]
        assert status == expected and error["param"] == param and len(raw) < 500 and "mmm…" in error["message"]
    assert "this server serves 'drpo-" in json.loads(answers[0][1])["error"]["message"]
    assert unknown[0] == 404 and len(unknown[1]) < 500
    assert sent(world) == []
