"""The aligned model behind an OpenAI-compatible HTTP API (aiohttp), for `python run.py serve`.

    POST /v1/chat/completions   a conversation -> the aligned model's answer (or a stream of it)
    POST /v1/completions        a prompt, read as the user's query
    GET  /v1/models             the one model served, `drpo-<run id>`
    GET  /health                liveness, unauthenticated

Each request retrieves the artifact's k examples for the last user message
(`AlignedModel.request`), builds the policy's engine request with agents/policy.py `policy_call`
(the one formatter, in the mode the artifact records; the client's system message by
drpo/serve_prompt.py), and sends it through the policy's engine stack (backends/stack.py, as for
runs: retries, limits, accounting). The body format is drpo/serve_wire.py, the answer's
drpo/serve_render.py, the errors' drpo/serve_faults.py.

In front of every handler, one middleware: the bearer token when `--auth-env` set one
(`hmac.compare_digest`; 401 otherwise), the request body, read whole within the body cap (413)
and its deadline (408), uncompressed (415), before the cap on requests being answered (429 with
Retry-After: a full server says so at once rather than queue without bound), every
failure as an OpenAI error body (never a traceback or a secret), and one trace line per request
(`drpo.trace.serve`: request id, status, latency, tokens, the indices of the retrieved examples;
never the query's text). `serve_until_signalled` drains on SIGTERM or Ctrl-C: it stops accepting,
lets requests in flight finish (up to `shutdown_timeout_s`) and closes the engine; a second signal
cancels what is still being answered. While it serves, what the process held before (modules, the
model, the pool) is frozen out of the garbage collector's sight (`frozen_heap`). What aiohttp
reports outside any handler (a request that is no HTTP) goes to `_ConnectionLog`.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import signal
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import orjson
import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from agents.policy import policy_call
from drpo.api import AlignedModel
from drpo.serve_faults import ApiError, bad_request, engine_error, quoted
from drpo.serve_prompt import ClientSystem, with_client_system
from drpo.serve_render import DONE, Reply, body, chunks, event, json_reply
from drpo.serve_wire import Call, ServeLimits, chat_call, completion_call
from schemas.artifact import PolicySetup
from schemas.ids import unique_id
from telemetry.logs import get_logger
from telemetry.redact import Redactor

trace = get_logger("drpo.trace.serve")
"""One line per request (a run's trace.jsonl with `--log-dir`)."""
log = get_logger("drpo.serve")
progress = get_logger("drpo.progress")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REQUEST_ID = web.RequestKey("drpo_request_id", str)
BODY = web.RequestKey("drpo_body", bytes)
"""A POST request's body, read whole by the middleware before the request takes a slot."""
NOTE = web.RequestKey("drpo_trace_note", dict)
"""What a handler adds to its request's trace line."""


@dataclass
class ServeOptions:
    name: str
    """The model id clients ask for (`drpo-<run id>`)."""
    client_system: ClientSystem = "append"
    auth_token: str | None = None
    limits: ServeLimits = field(default_factory=ServeLimits)
    redactor: Redactor = field(default_factory=Redactor)
    created: int = 0
    """When the artifact was made (seconds since the epoch), for `/v1/models`."""


class AlignedServer:
    """The HTTP application over one aligned model; `in_flight` counts requests being answered."""

    def __init__(self, model: AlignedModel, setup: PolicySetup, options: ServeOptions) -> None:
        self.model = model
        self.setup = setup
        self.options = options
        self.in_flight = 0
        self._handlers: set[asyncio.Task[Any]] = set()
        """The tasks answering requests now, so that a second signal can stop them (`stop_now`)."""
        self._token = options.auth_token.encode("utf-8", "surrogateescape") if options.auth_token else None
        self._index = {id(example): i for i, example in enumerate(model.pool.examples)}

    def app(self) -> web.Application:
        @web.middleware
        async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
            return await self._guarded(request, handler)

        app = web.Application(client_max_size=self.options.limits.max_body_bytes, middlewares=[guard])
        app.on_response_prepare.append(self._stamp)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/v1/models/{name}", self._model)
        app.router.add_get("/health", self._health)
        return app

    # --- the middleware ----------------------------------------------------------------------------

    async def _guarded(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        request[REQUEST_ID] = rid = f"req_{unique_id()}"
        request[NOTE] = note = {}
        # every line logged for this request (an engine fault's too) names it; aiohttp runs each
        # request in a task of its own (a copy of the context), so nothing needs unbinding
        structlog.contextvars.bind_contextvars(request_id=rid)
        started = time.perf_counter()
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)
        try:
            response = await self._dispatch(request, handler)
        except ApiError as error:
            response = self._error(error, note)
        except asyncio.CancelledError:  # stopped: a second signal, or the drain's time ran out; no answer goes out
            note["error"] = "cancelled"
            self._trace(request, None, started)
            raise
        except Exception as exc:  # noqa: BLE001 - the boundary: engine faults and bugs become error bodies
            error = engine_error(exc, redactor=self.options.redactor, request_id=rid,
                                 retry_after_s=self.options.limits.retry_after_s)
            log.warning("serve.failed", request_id=rid, status=error.status, code=error.code,
                        error=f"{type(exc).__name__}: {self.options.redactor.scrub_exception(exc)}"[:500])
            response = self._error(error, note)
        self._trace(request, response.status, started)
        return response

    @staticmethod
    def _trace(request: web.Request, status: int | None, started: float) -> None:
        if request.path != "/health":
            trace.info("serve.request", request_id=request[REQUEST_ID], method=request.method, path=request.path,
                       status=status, latency_ms=round(1000 * (time.perf_counter() - started), 3), **request[NOTE])

    async def _dispatch(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            self._authorize(request)
            if request.method != "POST":
                return await handler(request)
            request[BODY] = await self._body(request)
            limit = self.options.limits
            if self.in_flight >= limit.max_concurrent:
                raise ApiError(429, f"the server is answering {limit.max_concurrent} requests already; retry after "
                                    f"{limit.retry_after_s} s", type="requests", code="rate_limit_exceeded",
                               headers={"Retry-After": str(limit.retry_after_s)})
            self.in_flight += 1
            try:
                return await handler(request)
            finally:
                self.in_flight -= 1
        except web.HTTPRequestEntityTooLarge:
            raise self._too_large() from None
        except web.HTTPException as exc:  # the router's 404 and 405
            if exc.status < 400:
                raise
            raise ApiError(exc.status, f"{request.method} {request.path}: {exc.reason}", code=exc.reason.lower()
                           .replace(" ", "_")) from None

    def stop_now(self) -> None:
        """Cancel every request being answered (a second signal while draining)."""
        for task in list(self._handlers):
            task.cancel()

    def _authorize(self, request: web.Request) -> None:
        if self._token is None or request.path == "/health":
            return
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"),
                                                                 self._token):
            raise ApiError(401, "missing or wrong API key: send the header Authorization: Bearer <key>",
                           code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})

    def _too_large(self) -> ApiError:
        return ApiError(413, f"the request body is over this server's limit of {self.options.limits.max_body_bytes} "
                             "bytes", code="request_too_large")

    @staticmethod
    def _error(error: ApiError, note: dict[str, Any]) -> web.Response:
        note["error"] = error.code or error.type
        return json_reply(error.body(), status=error.status, headers=error.headers)

    @staticmethod
    async def _stamp(request: web.Request, response: web.StreamResponse) -> None:
        """Every response names its request, so a client's report can be found in the trace."""
        if REQUEST_ID in request:
            response.headers["x-request-id"] = request[REQUEST_ID]

    # --- the endpoints -----------------------------------------------------------------------------

    async def _body(self, request: web.Request) -> bytes:
        """The whole body, before the request counts as being answered: counted from its first
        byte, 64 clients that sent headers and then nothing held every slot, and every other
        client got 429, for as long as they kept their connections open. A compressed body is
        refused unread (aiohttp's decompression is off): one 486 KB gzip body that inflates to
        500 MB was refused with 413, and then inflated whole while aiohttp drained the connection
        (0.24 s of the event loop's time for each one)."""
        limits = self.options.limits
        if (request.content_length or 0) > limits.max_body_bytes:
            raise self._too_large()
        if request.headers.get("Content-Encoding", "identity").strip().lower() not in ("", "identity"):
            raise ApiError(415, "compressed request bodies are not supported; send the body without "
                                "Content-Encoding", code="unsupported_content_encoding")
        try:
            with anyio.fail_after(limits.body_timeout_s):
                return await request.read()  # aiohttp refuses past client_max_size (chunked bodies too)
        except TimeoutError:
            raise ApiError(408, f"the request body did not arrive within {limits.body_timeout_s:g} s",
                           code="request_timeout") from None
        except ConnectionError:  # the client left before its body arrived: its doing, not the server's
            raise ApiError(499, "the client closed the connection before its request body arrived",
                           code="client_closed_request") from None

    @staticmethod
    def _json(request: web.Request) -> dict[str, Any]:
        raw = request[BODY]
        try:
            data = orjson.loads(raw)  # nesting past 1,024 levels is refused, never a RecursionError
        except ValueError as exc:  # what is wrong and where (orjson quotes none of the body)
            raise bad_request(f"the request body is not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise bad_request("the request body must be a JSON object")
        return data

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        call = chat_call(self._json(request), self.model.sampling, self.options.limits)
        return await self._answer(request, call, chat=True)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        call = completion_call(self._json(request), self.model.sampling, self.options.limits)
        return await self._answer(request, call, chat=False)

    async def _answer(self, request: web.Request, call: Call, *, chat: bool) -> web.StreamResponse:
        if call.model is not None and call.model != self.options.name:
            raise ApiError(404, f"model {quoted(call.model)} is not served here; this server serves "
                                f"{self.options.name!r}", param="model", code="model_not_found")
        note = request[NOTE]
        conversation = call.conversation
        retrieved = await self.model.retrieve(conversation.query)
        note.update(examples=[self._index.get(id(e)) for e in retrieved.examples], turns=len(conversation.history),
                    client_system=conversation.system is not None, n=call.sampling.n, stream=call.stream)
        policy_request = with_client_system(retrieved, conversation.system, self.options.client_system)
        llm_request = policy_call(policy_request, sampling=call.sampling, chat=self.setup.mode == "chat",
                                  history=conversation.history)
        result = await self.model.engine.complete(llm_request)
        usage = result.usage
        note.update(tokens_in=usage.tokens_in, tokens_out=usage.tokens_out, engine_calls=usage.calls,
                    engine_ms=round(1000 * usage.latency_s, 3))
        reply = Reply.new(self.options.name, chat=chat)
        if not call.stream:
            return json_reply(body(reply, result))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        payload = b"".join(event(c) for c in chunks(reply, result, include_usage=call.include_usage)) + DONE
        try:
            await response.prepare(request)  # the client may have left while the engine answered
            await response.write(payload)
            await response.write_eof()
        except ConnectionError:  # the client left; the answer was made and is accounted for
            note["client_gone"] = True
        return response

    def _entry(self) -> dict[str, Any]:
        return {"id": self.options.name, "object": "model", "created": self.options.created, "owned_by": "drpo"}

    async def _models(self, request: web.Request) -> web.Response:
        return json_reply({"object": "list", "data": [self._entry()]})

    async def _model(self, request: web.Request) -> web.Response:
        if request.match_info["name"] != self.options.name:
            raise ApiError(404, f"model {quoted(request.match_info['name'])} is not served here; this server serves "
                                f"{self.options.name!r}", code="model_not_found")
        return json_reply(self._entry())

    async def _health(self, request: web.Request) -> web.Response:
        return json_reply({"status": "ok", "model": self.options.name, "policy_mode": self.setup.mode,
                           "in_flight": self.in_flight})


class _ConnectionLog:
    """Where aiohttp reports what goes wrong on a connection outside any handler: a request that is
    no HTTP, a header past its limit, a body that contradicts its length (answered with its own
    plain 400), or a fault while writing. Its logger wrote an ERROR line for each, so any client
    could put ERROR lines on the console at will: here a client's malformed request is an info
    event (`run.log`) and anything else a warning, without a traceback."""

    def debug(self, *args: Any, **kwargs: Any) -> None:
        """Its notes on clients that left early: nothing to report."""

    def exception(self, message: str, *args: Any, exc_info: Any = None, **kwargs: Any) -> None:
        exc = exc_info if isinstance(exc_info, BaseException) else None
        event = log.info if isinstance(exc, HttpProcessingError) else log.warning
        event("serve.connection_error", what=message % args if args else message,
              error=f"{type(exc).__name__}: {exc}"[:300] if exc is not None else None)


def _url(address: Any) -> str:
    host, port = address[0], address[1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@asynccontextmanager
async def serving(server: AlignedServer, host: str = "127.0.0.1", port: int = 0,
                  sock: socket.socket | None = None) -> AsyncIterator[str]:
    """Listen on `host:port` (0: a free port), or on `sock` when given (a worker's, bound by
    drpo/serve_workers.py), until the block ends, then drain; yields the root URL (clients use
    `<url>/v1`)."""
    runner = web.AppRunner(server.app(), access_log=None, handle_signals=False, logger=_ConnectionLog(),
                           shutdown_timeout=server.options.limits.shutdown_timeout_s, auto_decompress=False)
    await runner.setup()
    try:
        site = web.SockSite(runner, sock) if sock is not None else web.TCPSite(runner, host, port, backlog=1024)
        await site.start()
        yield _url(runner.addresses[0])
    finally:
        await runner.cleanup()


@contextmanager
def frozen_heap() -> Iterator[None]:
    """The objects alive now moved to the collector's permanent generation until the block ends
    (`gc.freeze`). A request that makes many containers (a body of 340,000 empty lists in a field
    the server ignores is 1 MiB) sets off full collections, and each one walked every object the
    process had loaded to serve: 264 ms of the event loop for one such body, 35 ms once they are
    frozen. They live as long as the server anyway; frozen, they are still freed by reference
    counting, only cycles among them wait for the block's end."""
    gc.collect()  # what is garbage now is not kept
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


async def serve_until_signalled(server: AlignedServer, host: str, port: int, *, backend: str = "",
                                sock: socket.socket | None = None, ready: Callable[[], object] | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then drain. A second signal while draining stops at once: the
    requests still in flight are cancelled (their clients' connections close) and the drain ends."""

    async def second(signals: AsyncIterator[int]) -> None:
        async for signum in signals:
            progress.info("serve.stopping_now", signal=signal.Signals(signum).name, in_flight=server.in_flight)
            server.stop_now()
            return

    # the receiver stays open while draining: a second Ctrl-C then reaches no default handler (which
    # raised KeyboardInterrupt into asyncio.run's shutdown and logged aiohttp's tasks as errors)
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals, frozen_heap():
        async with AsyncExitStack() as stack:
            url = await stack.enter_async_context(serving(server, host, port, sock))  # an OSError: cannot listen
            progress.info("serve.listening", url=f"{url}/v1", model=server.options.name, policy_mode=server.setup.mode,
                          backend=backend, auth=server.options.auth_token is not None)
            if ready is not None:
                ready()
            async for signum in signals:
                progress.info("serve.draining", signal=signal.Signals(signum).name, in_flight=server.in_flight)
                break
            async with anyio.create_task_group() as tg:
                tg.start_soon(second, signals)
                await stack.aclose()  # the drain, while a second signal may cut it short
                tg.cancel_scope.cancel()
    progress.info("serve.stopped", model=server.options.name)
