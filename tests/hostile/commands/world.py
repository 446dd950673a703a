"""A loopback OpenAI-compatible server for whole commands: a deterministic world that answers every
role the five commands call, and misbehaves on the requests a test picks.

The answers are tests/drpo_world.py's (keyed on the request's structure, never on prompt text),
plus the eval judge's rubrics (`eval_multi`, `eval_safety`). A `Misbehaviour` replaces the answer
of every POST that its `when(index, body)` selects: an HTTP error, a 200 whose body is no
completion, a dropped connection. The start-up probe (`GET /models`) is answered well unless
`probe` says to misbehave there too, so a fault can arrive mid-run, after the probe passed.

The server is threaded (stdlib): `drpo.cli.main` runs its own event loop in the test's thread.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.backends.stub_server import serve_loopback
from tests.drpo_world import DRPOWorld, _schema


class CommandWorld(DRPOWorld):
    """DRPOWorld, and the eval judge: scores 2..4 per aspect from a hash of the messages."""

    @staticmethod
    def _one(name: str | None, schema: dict[str, Any], tag: int, i: int) -> str:
        if name is not None and name.startswith("eval_"):
            return json.dumps({aspect: {"reason": "scripted", "score": 2 + (tag + n) % 3}
                               for n, aspect in enumerate(schema["properties"])})
        return DRPOWorld._one(name, schema, tag, i)


Selector = Callable[[int, dict[str, Any]], bool]
"""(index of the POST, its JSON body) -> whether the misbehaviour answers it."""


def every(index: int, body: dict[str, Any]) -> bool:
    return True


def role_is(*schema_names: str | None) -> Selector:
    """Requests of these roles, by the schema name they send (None: the policy's plain requests)."""
    return lambda index, body: _schema(body)[0] in schema_names


def after(n: int) -> Selector:
    """Every POST from the n-th on (the first n are answered well)."""
    return lambda index, body: index >= n


@dataclass
class Misbehaviour:
    """What a selected request gets instead of its answer."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    drop: bool = False
    """Close the connection without a reply."""
    when: Selector = every
    probe: bool = False
    """Also answer `GET /models` (the start-up probe) this way."""


def error(status: int, message: str, **options: Any) -> Misbehaviour:
    return Misbehaviour(status=status, body=json.dumps({"error": {"message": message}}).encode(), **options)


def raw(body: bytes | str, content_type: str = "application/json", **options: Any) -> Misbehaviour:
    return Misbehaviour(body=body.encode() if isinstance(body, str) else body, content_type=content_type, **options)


def misbehaviours(key: str) -> dict[str, Misbehaviour]:
    """The engine faults every engine-calling command is tried against (mid-run: the probe passes)."""
    return {
        "401": error(401, "Incorrect API key provided."),
        "404": error(404, "The model does not exist."),
        "400": error(400, "This model's maximum context length is 8192 tokens."),
        "500": error(500, "Internal server error."),
        "html-200": raw("<html><body><h1>Bad gateway</h1></body></html>", "text/html"),
        "non-json-200": raw("this is not JSON at all"),
        "empty-object-200": raw("{}"),
        "no-choices-200": raw('{"id": "x", "object": "chat.completion", "choices": []}'),
        "dropped": Misbehaviour(drop=True),
    }


@dataclass
class Served:
    world: CommandWorld = field(default_factory=CommandWorld)
    misbehaviour: Misbehaviour | None = None
    url: str = ""
    posts: list[dict[str, Any]] = field(default_factory=list)
    gets: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def misbehaved(self) -> int:
        return sum(1 for body in self.posts if body.get("_misbehaved"))


@contextmanager
def serving(misbehaviour: Misbehaviour | None = None, world: CommandWorld | None = None) -> Iterator[Served]:
    """The world on a free 127.0.0.1 port; yields what was served (its `/v1` URL in `url`)."""
    state = Served(world=world or CommandWorld(), misbehaviour=misbehaviour)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            return None

        def handle(self) -> None:
            try:
                super().handle()
            except OSError:
                pass  # the client gave up on this connection (a refusal, a timeout): nothing to answer

        def _reply(self, status: int, data: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _misbehave(self, bad: Misbehaviour) -> None:
            if bad.drop:
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            self._reply(bad.status, bad.body, bad.content_type)

        def do_GET(self) -> None:
            with state.lock:
                state.gets += 1
            bad = state.misbehaviour
            if bad is not None and bad.probe:
                return self._misbehave(bad)
            self._reply(200, json.dumps({"object": "list", "data": [{"id": "world", "object": "model"}]}).encode())

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            with state.lock:
                index = len(state.posts)
                state.posts.append(body)
            bad = state.misbehaviour
            if bad is not None and bad.when(index, body):
                body["_misbehaved"] = True
                return self._misbehave(bad)
            texts = state.world.answer(body)
            choices = [{"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
                       for i, t in enumerate(texts)]
            if "messages" not in body:  # a completion-mode request: /v1/completions
                choices = [{"index": i, "text": t, "finish_reason": "stop"} for i, t in enumerate(texts)]
            usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
            reply = {"id": "w", "object": "chat.completion", "created": 0, "model": "world", "choices": choices,
                     "usage": usage}
            self._reply(200, json.dumps(reply).encode())

    with serve_loopback(Handler) as url:
        state.url = url
        yield state


def closed_port_url() -> str:
    """A loopback URL nothing listens on: an engine that is down."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"
