"""A deterministic DRPO world behind a real OpenAI-compatible HTTP server on loopback.

Every answer is a function of the request's content, so two runs (or a run and its resumption)
see the same answers. This world only sees HTTP bodies: the agent's typed message
(`LLMRequest.message`, which tests/scripted.py keys on) never crosses the wire. So it keys on
the request's structure and parses no prompt text: the role is the `response_format` schema name
the agents send (criteria_selection, judgement, prompt_rewrite, answer_rewrite; the policy sends
none), the judge's aspects are its schema's properties, and the rest is a hash of the messages.

- criteria: Helpfulness and Clarity;  - policy: "ANSWER[<hash of its messages>]";
- judge: scores 2..4 from a hash of its messages (which hold the answer, so the prompt counts);
- rewriter: "Be helpful. #<hash of its messages>.<i>" per sample; curator: a hashed answer.

`fault_rate` injects faults, seeded per request: 429, 500, a dropped connection, invalid JSON,
JSON cut off at max_tokens (structured requests), empty text (plain requests). `injected` counts
them by the fault kind the client should report.
"""

from __future__ import annotations

import hashlib
import json
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any

from backends.scripted import schema_instance
from tests.backends.stub_server import serve_loopback


def _digest(*parts: str) -> int:
    return int(hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:8], 16)


def _schema(body: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """The structured output the request asks for: (schema name, schema); (None, {}) for plain text."""
    response_format = body.get("response_format") or {}
    spec = response_format.get("json_schema") or {}
    return spec.get("name"), spec.get("schema") or response_format.get("schema") or {}


class DRPOWorld:
    def __init__(self, fault_rate: float = 0.0, seed: int = 0, delay_s: float = 0.0) -> None:
        self.fault_rate = fault_rate
        self.delay_s = delay_s
        """Each answer waits this long, so a test can act while a run is still going."""
        self.seed = seed
        self.injected: Counter[str] = Counter()
        self.served = 0
        self.received: list[tuple[str, dict[str, Any]]] = []
        """Every request body as the server got it, with its path (what a test can say was sent)."""
        self.lock = threading.Lock()
        self.url = ""

    # --- answers -------------------------------------------------------------------------------

    def answer(self, body: dict[str, Any]) -> list[str]:
        """One text per requested choice."""
        contents = [m["content"] for m in body.get("messages") or []] or [body.get("prompt") or ""]
        name, schema = _schema(body)
        if name is None and body.get("response_format"):
            raise AssertionError(f"a structured request without a schema name: {body['response_format']!r:.80}")
        return [self._one(name, schema, _digest(*contents), i) for i in range(body.get("n", 1))]

    @staticmethod
    def _one(name: str | None, schema: dict[str, Any], tag: int, i: int) -> str:
        if name is None:  # the policy: the only plain-text request of a search
            return f"ANSWER[{tag:08x}]"
        if name == "criteria_selection":
            out = schema_instance(schema)
            out["aspects_selection"] = {"reasoning": "scripted", "selected_aspects": ["Helpfulness", "Clarity"]}
            return json.dumps(out)
        if name == "judgement":
            score = 2 + tag % 3
            return json.dumps({aspect: {"rationale": "scripted", "score": score} for aspect in schema["properties"]})
        if name == "prompt_rewrite":
            return json.dumps({"analysis": "a", "thought": "t", "new_system_prompt": f"Be helpful. #{tag:08x}.{i}"})
        if name == "answer_rewrite":
            return json.dumps({"analysis": "a", "thought": "t", "new_response": f"<START>\nAnswer {tag:08x}.\n<END>"})
        raise AssertionError(f"unknown structured request: schema name {name!r}")

    # --- faults --------------------------------------------------------------------------------

    def fault_for(self, body: dict[str, Any]) -> str | None:
        rng = random.Random(_digest(str(self.seed), json.dumps(body, sort_keys=True), str(self.served)))
        if rng.random() >= self.fault_rate:
            return None
        structured = body.get("response_format") is not None
        kinds = ["rate_limited", "transport_500", "transport_reset"]
        kinds += ["invalid_output", "truncated"] if structured else ["empty_output"]
        return rng.choice(kinds)

    # --- HTTP ----------------------------------------------------------------------------------

    @contextmanager
    def serving(self) -> Iterator[DRPOWorld]:
        world = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return None

            def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                self._send(200, {"object": "list", "data": [{"id": "world", "object": "model"}]})

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                raw_text = not self.path.endswith("/chat/completions")  # /v1/completions: a raw prompt
                with world.lock:
                    world.received.append((self.path, body))
                    fault = world.fault_for(body)
                    world.served += 1
                    if fault:
                        world.injected[fault.removeprefix("transport_").replace("500", "transport")
                                       .replace("reset", "transport")] += 1
                if fault == "rate_limited":
                    return self._send(429, {"error": {"message": "slow down"}}, {"Retry-After": "0"})
                if fault == "transport_500":
                    return self._send(500, {"error": {"message": "injected server error"}})
                if fault == "transport_reset":
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return None
                time.sleep(world.delay_s)
                texts, finish = world.answer(body), "stop"
                if fault == "invalid_output":
                    texts = ["this is not JSON"] * len(texts)
                elif fault == "truncated":
                    texts, finish = [t[: len(t) // 2] for t in texts], "length"
                elif fault == "empty_output":
                    texts = [""] * len(texts)
                usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
                if raw_text:
                    choices = [{"index": i, "text": t, "finish_reason": finish} for i, t in enumerate(texts)]
                    kind = "text_completion"
                else:
                    choices = [{"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": finish}
                               for i, t in enumerate(texts)]
                    kind = "chat.completion"
                self._send(200, {"id": "w", "object": kind, "created": 0, "model": "world", "choices": choices,
                                 "usage": usage})

        with serve_loopback(Handler) as url:
            self.url = url
            yield self
