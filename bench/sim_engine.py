"""A simulated batching GPU engine behind an OpenAI-compatible HTTP API, on loopback only.

    python -m bench.sim_engine [--port 0] [--ttft-s 0.02] [--decode-step-s 0.004] ...   # prints {"port": N}

Endpoints: `POST /v1/chat/completions`, `POST /v1/completions`, `GET /v1/models`, and for the
benchmark `GET /_sim/log` (every request so far, with the parameters), `POST /_sim/reset` (clear the
log) and `POST /_sim/params` (change parameters, e.g. to zero latency, between runs).

Latency model (every parameter in `SimParams`; all zero = a zero-latency engine):

- a request waits `ttft_s + prefill_s_per_token * prompt_tokens` (time to first token and prefill;
  prefill is per request, not batched), then decodes;
- decoding is continuous batching: one engine-wide clock ticks one decode step at a time, and every
  sequence in flight gains one token per tick. A tick lasts
  `decode_step_s * (1 + sequences_in_flight / step_growth)`, so the step grows slowly with the batch;
- a request with `n` > 1 puts n sequences into the batch side by side (as vLLM does): its latency
  is set by its longest sample, its `completion_tokens` is the sum over samples;
- prompt tokens are estimated as characters / `chars_per_token` (4).

Answers: a request that asks for structured output gets a valid instance of the schema as its
content: `response_format` `{"type": "json_schema", "json_schema": {"schema": ...}}`,
`{"type": "json_object", "schema": ...}`, or a top-level `structured_outputs.json` / `guided_json`
(what the `openai` SDK's `extra_body` sends). The instance has every property; an enum gives its
first value (an array of enum items gives distinct values in order); an integer gives 3 when 3 is
allowed, else its minimum (or the enum's first value); a string gives text of `string_tokens`
tokens (within minLength/maxLength) that carries the request and sample number, so the `n` samples
of one request differ; an array gives `minItems` items (1 when unset). Other requests get text of
`text_tokens` tokens (capped by `max_tokens`, then `finish_reason` is "length").

Every request is logged (start and end on the wall clock `time.time()`, requests and sequences in
flight at start and end, prompt and completion tokens, n, schema name). It serves 1,000 and more
concurrent requests: the decode clock is one task whatever the batch, and requests wait on futures.

Run it in-process with `SimServer(params).start()` (a background thread with its own event loop)
or as a subprocess with `SimProcess(params)` (a context manager; the benchmark uses this so that the
simulator's CPU work does not take the optimizer's GIL).
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import itertools
import json
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Self

try:
    import orjson

    def _dumps(value: Any) -> bytes:
        return orjson.dumps(value)

    _loads = orjson.loads
except ImportError:  # pragma: no cover - orjson is installed with langgraph
    def _dumps(value: Any) -> bytes:
        return json.dumps(value).encode()

    _loads = json.loads

HOST = "127.0.0.1"
_WORDS = (
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima",
    "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango", "uniform", "victor", "whiskey",
    "xray", "yankee", "zulu"
)


@dataclass
class SimParams:
    ttft_s: float = 0.02
    """Time to first token, per request."""
    prefill_s_per_token: float = 0.00002
    """Prefill time per prompt token, per request."""
    decode_step_s: float = 0.004
    """One decode step with an empty batch."""
    step_growth: float = 256.0
    """A step lasts decode_step_s * (1 + sequences in flight / step_growth)."""
    text_tokens: int = 200
    """Output tokens of a plain-text answer (capped by max_tokens)."""
    string_tokens: int = 40
    """Tokens of every string in a structured answer."""
    chars_per_token: int = 4
    model: str = "sim"

    @classmethod
    def zero(cls, **overrides: Any) -> SimParams:
        """A zero-latency engine (answers as fast as the HTTP stack allows)."""
        return cls(**{"ttft_s": 0.0, "prefill_s_per_token": 0.0, "decode_step_s": 0.0, **overrides})

    def update(self, values: dict[str, Any]) -> None:
        known = {f.name: f.type for f in fields(self)}
        for key, value in values.items():
            if key not in known:
                raise ValueError(f"unknown simulator parameter {key!r}")
            setattr(self, key, type(getattr(self, key))(value))


# --- answers ----------------------------------------------------------------------------------


def filler_text(chars: int, salt: str = "") -> str:
    """Words of text, exactly `chars` characters long (at least 1), starting with `salt`."""
    chars = max(1, chars)
    text, words = salt, itertools.cycle(_WORDS)
    while len(text) < chars:
        text = f"{text} {next(words)}" if text else next(words)
    text = text[:chars]
    return text[:-1] + "x" if text.endswith(" ") else text


def schema_instance(schema: dict[str, Any], *, string_chars: int = 160, salt: str = "",
                    root: dict[str, Any] | None = None, path: str = "") -> Any:
    """A valid instance of a JSON schema with every property present (see the module docstring)."""
    root = root if root is not None else schema
    if "$ref" in schema:
        ref = schema["$ref"]
        target: Any = root
        for part in ref.lstrip("#/").split("/"):
            if part:
                target = target[part]
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return schema_instance(merged, string_chars=string_chars, salt=salt, root=root, path=path)
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [o for o in schema[key] if o.get("type") != "null"] or schema[key]
            return schema_instance(options[0], string_chars=string_chars, salt=salt, root=root, path=path)
    if "allOf" in schema:
        merged = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            merged.update(part)
        return schema_instance(merged, string_chars=string_chars, salt=salt, root=root, path=path)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if "enum" in schema:
        values = schema["enum"]
        if kind == "integer" and 3 in values:
            return 3
        return values[0]
    if kind is None:
        kind = "object" if "properties" in schema else "string"
    if kind == "object":
        props = schema.get("properties", {})
        return {
            key: schema_instance(sub, string_chars=string_chars, salt=salt, root=root, path=f"{path}.{key}")
            for key, sub in props.items()
        }
    if kind == "array":
        count = schema.get("minItems", 1)
        if "maxItems" in schema:
            count = min(count, schema["maxItems"])
        items = schema.get("items", {"type": "string"})
        if "$ref" not in items and "enum" in items and len(items["enum"]) >= count:
            return list(items["enum"][:count])
        return [schema_instance(items, string_chars=string_chars, salt=salt, root=root, path=f"{path}[{i}]")
                for i in range(count)]
    if kind == "integer":
        low, high = schema.get("minimum"), schema.get("maximum")
        if low is None:
            value = 3 if high is None or high >= 3 else int(high)
        else:
            value = int(low)
        return value
    if kind == "number":
        return float(schema.get("minimum", 3.0))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    length = max(schema.get("minLength", 1), string_chars)
    if "maxLength" in schema:
        length = min(length, schema["maxLength"])
    return filler_text(length, salt)


def requested_schema(body: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """The JSON schema a request asks its output to follow, and its name; (None, None) for text."""
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema") or {}
        return spec.get("schema") or {"type": "object"}, spec.get("name")
    if fmt.get("type") == "json_object":
        return fmt.get("schema") or {"type": "object", "properties": {"answer": {"type": "string"}}}, "json_object"
    structured = body.get("structured_outputs") or {}
    if isinstance(structured, dict) and structured.get("json") is not None:
        schema = structured["json"]
        return (json.loads(schema) if isinstance(schema, str) else schema), "structured_outputs"
    if body.get("guided_json") is not None:
        schema = body["guided_json"]
        return (json.loads(schema) if isinstance(schema, str) else schema), "guided_json"
    return None, None


def _prompt_chars(body: dict[str, Any], chat: bool) -> int:
    if chat:
        total = 0
        for message in body.get("messages") or []:
            content = message.get("content")
            if isinstance(content, str):
                total += len(content)
            elif isinstance(content, list):
                total += sum(len(part.get("text", "")) for part in content if isinstance(part, dict))
        return total
    prompt = body.get("prompt") or ""
    return sum(len(p) for p in prompt) if isinstance(prompt, list) else len(prompt)


# --- the engine -------------------------------------------------------------------------------


class _Pending:
    __slots__ = ("future", "remaining")

    def __init__(self, remaining: int, future: asyncio.Future) -> None:
        self.remaining = remaining
        self.future = future


class DecodeClock:
    """Continuous batching: one clock; each tick, every sequence in flight gains one token."""

    def __init__(self, params: SimParams) -> None:
        self.params = params
        self.tick = 0
        self.sequences = 0
        self._heap: list[tuple[int, int, _Pending]] = []
        self._ids = itertools.count()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    async def decode(self, lengths: list[int]) -> None:
        """Return when every sequence (one per sample, `lengths` tokens each) has decoded."""
        if self.params.decode_step_s <= 0 or not lengths:
            return
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._run())
        pending = _Pending(len(lengths), loop.create_future())
        for length in lengths:
            heapq.heappush(self._heap, (self.tick + max(1, length), next(self._ids), pending))
            self.sequences += 1
        self._wake.set()  # type: ignore[union-attr]
        await pending.future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            if not self._heap:
                self._wake.clear()  # type: ignore[union-attr]
                await self._wake.wait()  # type: ignore[union-attr]
                deadline = loop.time()
                continue
            step = self.params.decode_step_s * (1 + self.sequences / self.params.step_growth)
            now = loop.time()
            deadline = max(deadline + step, now - step)  # a starved loop does not race to catch up
            await asyncio.sleep(max(0.0, deadline - now))  # always yields, even with a zero step
            self.tick += 1
            while self._heap and self._heap[0][0] <= self.tick:
                _, _, pending = heapq.heappop(self._heap)
                self.sequences -= 1
                pending.remaining -= 1
                if pending.remaining == 0 and not pending.future.done():
                    pending.future.set_result(None)


@dataclass
class SimEngine:
    """The engine behind the HTTP app: latency, answers and the request log."""

    params: SimParams = field(default_factory=SimParams)
    log: list[dict[str, Any]] = field(default_factory=list)
    in_flight: int = 0
    peak_in_flight: int = 0
    _counter: Any = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        self.clock = DecodeClock(self.params)

    def reset(self) -> None:
        self.log = []
        self.peak_in_flight = self.in_flight

    async def handle(self, body: dict[str, Any], *, chat: bool) -> dict[str, Any]:
        p = self.params
        request_id = next(self._counter)
        started = time.time()
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        record: dict[str, Any] = {"id": request_id, "endpoint": "chat" if chat else "completions",
                                  "start": started, "in_flight_start": self.in_flight,
                                  "sequences_start": self.clock.sequences}
        try:
            n = max(1, int(body.get("n") or 1))
            max_tokens = int(body.get("max_completion_tokens") or body.get("max_tokens") or 1 << 30)
            prompt_tokens = -(-_prompt_chars(body, chat) // p.chars_per_token)
            schema, schema_name = requested_schema(body)
            texts, lengths, finish = [], [], []
            for i in range(n):
                if schema is not None:
                    value = schema_instance(schema, string_chars=p.string_tokens * p.chars_per_token,
                                            salt=f"r{request_id}s{i}")
                    text = json.dumps(value)
                    tokens = -(-len(text) // p.chars_per_token)
                    reason = "stop"
                else:
                    tokens = min(p.text_tokens, max_tokens)
                    text = filler_text(tokens * p.chars_per_token, f"r{request_id}s{i}")
                    reason = "length" if tokens < p.text_tokens else "stop"
                texts.append(text)
                lengths.append(tokens)
                finish.append(reason)
            wait = p.ttft_s + p.prefill_s_per_token * prompt_tokens
            if wait > 0:
                await asyncio.sleep(wait)
            await self.clock.decode(lengths)
            completion_tokens = sum(lengths)
            record.update(n=n, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                          schema=schema_name, status=200)
            return _response(chat, request_id, p.model, texts, finish, prompt_tokens, completion_tokens)
        except asyncio.CancelledError:
            record["status"] = 499
            raise
        finally:
            self.in_flight -= 1
            record.update(end=time.time(), in_flight_end=self.in_flight + 1)
            record["latency_s"] = record["end"] - started
            self.log.append(record)


def _response(chat: bool, request_id: int, model: str, texts: list[str], finish: list[str],
              prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    if chat:
        choices = [{"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": f, "logprobs": None}
                   for i, (t, f) in enumerate(zip(texts, finish))]
        kind = "chat.completion"
    else:
        choices = [{"index": i, "text": t, "finish_reason": f, "logprobs": None}
                   for i, (t, f) in enumerate(zip(texts, finish))]
        kind = "text_completion"
    return {
        "id": f"sim-{request_id}", "object": kind, "created": int(time.time()), "model": model, "choices": choices,
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def build_app(engine: SimEngine):  # type: ignore[no-untyped-def]
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    def reply(value: Any, status: int = 200) -> Response:
        return Response(_dumps(value), status_code=status, media_type="application/json")

    async def body_of(request: Request) -> dict[str, Any] | Response:
        try:
            body = _loads(await request.body())
        except ValueError:
            return reply({"error": {"message": "malformed JSON body", "type": "invalid_request_error"}}, 400)
        if not isinstance(body, dict):
            return reply({"error": {"message": "the body must be a JSON object", "type": "invalid_request_error"}}, 400)
        return body

    async def chat(request: Request) -> Response:
        body = await body_of(request)
        return body if isinstance(body, Response) else reply(await engine.handle(body, chat=True))

    async def completions(request: Request) -> Response:
        body = await body_of(request)
        return body if isinstance(body, Response) else reply(await engine.handle(body, chat=False))

    async def models(request: Request) -> Response:
        return reply({"object": "list", "data": [{"id": engine.params.model, "object": "model", "owned_by": "sim"}]})

    async def get_log(request: Request) -> Response:
        return reply({"params": asdict(engine.params), "requests": engine.log, "in_flight": engine.in_flight,
                      "peak_in_flight": engine.peak_in_flight})

    async def reset(request: Request) -> Response:
        engine.reset()
        return reply({"ok": True})

    async def set_params(request: Request) -> Response:
        body = await body_of(request)
        if isinstance(body, Response):
            return body
        try:
            engine.params.update(body)
        except (ValueError, TypeError) as exc:
            return reply({"error": {"message": str(exc)}}, 400)
        return reply(asdict(engine.params))

    return Starlette(routes=[
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/_sim/log", get_log, methods=["GET"]),
        Route("/_sim/reset", reset, methods=["POST"]),
        Route("/_sim/params", set_params, methods=["POST"]),
    ])


def _bind(port: int) -> socket.socket:
    # proto IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted sockets only when the listening
    # socket says it is TCP; without it, Nagle plus delayed ACKs add ~40 ms to every response.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((HOST, port))  # loopback only
    sock.listen(4096)
    sock.set_inheritable(True)
    return sock


def _uvicorn_server(engine: SimEngine):  # type: ignore[no-untyped-def]
    import uvicorn

    config = uvicorn.Config(build_app(engine), host=HOST, log_level="warning", access_log=False, lifespan="off",
                            backlog=4096, timeout_keep_alive=60, loop="asyncio", http="h11")
    return uvicorn.Server(config)


class SimServer:
    """The simulator in a background thread of this process (tests; light use)."""

    def __init__(self, params: SimParams | None = None, port: int = 0) -> None:
        self.engine = SimEngine(params or SimParams())
        self._sock = _bind(port)
        self.port = self._sock.getsockname()[1]
        self.base_url = f"http://{HOST}:{self.port}/v1"
        self._server = _uvicorn_server(self.engine)
        self._thread = threading.Thread(target=self._serve, name="sim-engine", daemon=True)

    def _serve(self) -> None:
        asyncio.run(self._server.serve(sockets=[self._sock]))

    def start(self) -> SimServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the simulator did not start")
            time.sleep(0.01)
        return self

    @property
    def log(self) -> list[dict[str, Any]]:
        return list(self.engine.log)

    def reset(self) -> None:
        self.engine.reset()

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SimProcess:
    """The simulator as a child process (`python -m bench.sim_engine`), driven over HTTP."""

    def __init__(self, params: SimParams | None = None) -> None:
        self.params = params or SimParams()
        self._proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.base_url = ""

    def start(self) -> SimProcess:
        args = [sys.executable, "-m", "bench.sim_engine", "--port", "0", "--params", json.dumps(asdict(self.params))]
        self._proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent)
        line = self._proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError("the simulator process exited before it listened")
        self.port = json.loads(line)["port"]
        self.base_url = f"http://{HOST}:{self.port}/v1"
        return self

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        import httpx

        response = httpx.request(method, f"http://{HOST}:{self.port}{path}", json=body, timeout=60)
        response.raise_for_status()
        return response.json()

    @property
    def log(self) -> list[dict[str, Any]]:
        return self._call("GET", "/_sim/log")["requests"]

    def reset(self) -> None:
        self._call("POST", "/_sim/reset")

    def set_params(self, **values: Any) -> dict[str, Any]:
        self.params.update(values)
        return self._call("POST", "/_sim/params", values)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port; it binds 127.0.0.1 only")
    parser.add_argument("--params", default="{}", help="SimParams fields as a JSON object")
    for f in fields(SimParams):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=None)
    args = parser.parse_args(argv)
    params = SimParams()
    params.update(json.loads(args.params))
    params.update({f.name: getattr(args, f.name) for f in fields(SimParams) if getattr(args, f.name) is not None})
    engine = SimEngine(params)
    sock = _bind(args.port)
    server = _uvicorn_server(engine)

    async def serve() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        print(json.dumps({"port": sock.getsockname()[1]}), flush=True)
        await task

    asyncio.run(serve())


if __name__ == "__main__":
    main()
