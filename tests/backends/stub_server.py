"""A scripted OpenAI-compatible server on loopback (stdlib ThreadingHTTPServer) for engine tests.

Each POST is answered by the test's `responder(body)`; every request is recorded with its arrival
time. Use the `stub` fixture by importing it into a test module.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

Reply = tuple[int, dict[str, str], Any]
"""Status, extra headers, JSON body."""

SCHEMA_REJECTION = {"error": {"message": "Input should be 'text' or 'json_object'"}}


def completion(content: str) -> dict[str, Any]:
    return {
        "id": "x", "object": "chat.completion", "created": 0, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }


@dataclass
class Seen:
    path: str
    body: dict[str, Any]
    at: float


@dataclass
class StubServer:
    url: str
    responder: Callable[[dict[str, Any]], Reply] = lambda body: (200, {}, completion("ok"))
    seen: list[Seen] = field(default_factory=list)

    def response_format_types(self) -> list[str | None]:
        return [(s.body.get("response_format") or {}).get("type") for s in self.seen]


@pytest.fixture
def stub() -> Iterator[StubServer]:
    state = StubServer(url="")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = json.loads(raw or b"{}")
            with lock:
                state.seen.append(Seen(self.path, body, time.monotonic()))
            status, headers, payload = state.responder(body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return None

    with serve_loopback(Handler) as url:
        state.url = url
        yield state


@contextmanager
def serve_loopback(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve `handler` on a free 127.0.0.1 port in a thread; yields the `/v1` base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


