"""Misbehaving OpenAI-compatible servers on loopback, one small behaviour each.

A `HostileServer` is a raw asyncio server on 127.0.0.1 (stdlib only, so a behaviour can do what
no well-behaved framework would: close mid-body, never answer, lie about its content type). It
parses each HTTP request, records it (`Hit`), and hands it to the test's `Behaviour`, which
writes whatever bytes it likes. Every response says `Connection: close`, so each request is a
fresh connection and a behaviour owns its socket.

Bounds, so no test can hang on a server: at most `max_requests` requests are served (later ones
are closed unanswered), a behaviour that holds a connection is cancelled after `hold_s`, and the
whole server stops after `lifetime_s` by itself and when its `async with` block ends.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

STATUS_TEXT = {200: "OK", 204: "No Content", 302: "Found", 307: "Temporary Redirect", 400: "Bad Request",
               401: "Unauthorized", 402: "Payment Required", 403: "Forbidden", 404: "Not Found",
               405: "Method Not Allowed", 413: "Payload Too Large", 422: "Unprocessable Entity",
               429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
               503: "Service Unavailable"}


@dataclass
class Hit:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    index: int
    """0 for the first request this server saw, 1 for the next, ..."""

    def json(self) -> Any:
        return json.loads(self.body or b"{}")


Behaviour = Callable[[Hit, asyncio.StreamWriter], Awaitable[None]]
"""Answers one request by writing to the connection (it is closed after the behaviour returns)."""


def response(status: int, body: bytes | str | Any = b"", *, content_type: str = "application/json",
             headers: dict[str, str] | None = None, length: int | None = None) -> bytes:
    """The bytes of one HTTP/1.1 response; `body` that is not bytes or str is sent as JSON, and
    `length` overrides the Content-Length header (to promise more than is sent)."""
    if not isinstance(body, bytes | str):
        body = json.dumps(body)
    data = body.encode() if isinstance(body, str) else body
    lines = [f"HTTP/1.1 {status} {STATUS_TEXT.get(status, 'Whatever')}",
             f"Content-Length: {len(data) if length is None else length}", "Connection: close"]
    if content_type:
        lines.append(f"Content-Type: {content_type}")
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


def send(status: int, body: bytes | str | Any = b"", **options: Any) -> Behaviour:
    """A behaviour that always answers the same response."""
    raw = response(status, body, **options)

    async def behaviour(hit: Hit, writer: asyncio.StreamWriter) -> None:
        writer.write(raw)
        await writer.drain()

    return behaviour


def in_turn(*behaviours: Behaviour) -> Behaviour:
    """The first request gets the first behaviour, and so on; the last one repeats."""

    async def behaviour(hit: Hit, writer: asyncio.StreamWriter) -> None:
        await behaviours[min(hit.index, len(behaviours) - 1)](hit, writer)

    return behaviour


@dataclass
class HostileServer:
    behaviour: Behaviour
    max_requests: int = 40
    hold_s: float = 10.0
    url: str = ""
    hits: list[Hit] = field(default_factory=list)
    handlers: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def paths(self) -> list[str]:
        return [hit.path for hit in self.hits]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.handlers.add(task)
            task.add_done_callback(self.handlers.discard)
        try:
            async with asyncio.timeout(self.hold_s):
                hit = await self._read(reader)
                if hit is not None and hit.index < self.max_requests:
                    await self.behaviour(hit, writer)
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                asyncio.CancelledError):
            pass  # the client left, the hold ran out, or the server is stopping: nothing to answer
        finally:
            writer.close()
            with suppress(Exception):
                await writer.wait_closed()

    async def _read(self, reader: asyncio.StreamReader) -> Hit | None:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, path, _ = request_line.split(" ", 2)
        headers = {}
        for line in header_lines:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length") or 0))
        hit = Hit(method, path, headers, body, time.monotonic(), len(self.hits))
        self.hits.append(hit)
        return hit


@asynccontextmanager
async def serving(behaviour: Behaviour, *, max_requests: int = 40, hold_s: float = 10.0,
                  lifetime_s: float = 30.0) -> AsyncIterator[HostileServer]:
    """`behaviour` served on a free 127.0.0.1 port; yields the server (its `/v1` URL in `url`)."""
    state = HostileServer(behaviour, max_requests=max_requests, hold_s=hold_s)
    server = await asyncio.start_server(state._serve, "127.0.0.1", 0)
    state.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
    stop = asyncio.get_running_loop().call_later(lifetime_s, server.close)
    try:
        yield state
    finally:
        stop.cancel()
        server.close()
        for task in list(state.handlers):  # a behaviour still holding a connection stops now
            task.cancel()
        if state.handlers:
            await asyncio.wait(list(state.handlers), timeout=5)
        with suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 5)


def chat(content: Any = "ok", *, n: int = 1, finish_reason: str | None = "stop") -> dict[str, Any]:
    """A chat completion whose every choice holds `content` (any JSON value: hostile ones too)."""
    return {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": i, "message": {"role": "assistant", "content": content},
                         "finish_reason": finish_reason} for i in range(n)],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}


def text_completion(text: Any = "ok", *, n: int = 1) -> dict[str, Any]:
    """A `/v1/completions` reply whose every choice holds `text`."""
    return {"id": "x", "object": "text_completion", "created": 0, "model": "m",
            "choices": [{"index": i, "text": text, "finish_reason": "stop", "logprobs": None} for i in range(n)],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}


def error(message: str, **fields: Any) -> dict[str, Any]:
    return {"error": {"message": message, **fields}}


# --- behaviours that misbehave at the transport level -------------------------------------------


async def hang(hit: Hit, writer: asyncio.StreamWriter) -> None:
    """Accept the request and never answer (until the server's `hold_s` runs out)."""
    await asyncio.Event().wait()


def drip(raw: bytes, *, chunk: int, every_s: float) -> Behaviour:
    """Send `raw` a few bytes at a time: each read is quick, the whole reply is not."""

    async def behaviour(hit: Hit, writer: asyncio.StreamWriter) -> None:
        for start in range(0, len(raw), chunk):
            writer.write(raw[start : start + chunk])
            await writer.drain()
            await asyncio.sleep(every_s)

    return behaviour


def cut(raw: bytes, *, keep: int) -> Behaviour:
    """Send the first `keep` bytes of `raw`, then close the connection."""

    async def behaviour(hit: Hit, writer: asyncio.StreamWriter) -> None:
        writer.write(raw[:keep])
        await writer.drain()

    return behaviour


async def reset(hit: Hit, writer: asyncio.StreamWriter) -> None:
    """Drop the connection without a byte of reply."""
    writer.transport.abort()
